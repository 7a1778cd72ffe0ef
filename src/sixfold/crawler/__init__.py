"""Web crawler: a polite, trap-proof crawl (frontier, fetchers, robots, extractor, dedup) and its local test site."""
