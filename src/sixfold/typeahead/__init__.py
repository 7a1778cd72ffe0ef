"""Typeahead: from search logs to suggestions (collection, aggregation, trie build, serving)."""
