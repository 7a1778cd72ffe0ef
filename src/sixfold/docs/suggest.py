"""Suggestions for the editor, as the course lists them: word completion and spelling corrections.

The model is word frequency (wordfreq's English list): the most frequent N words made of a-z and
apostrophes, loaded once per process. Completion bisects a sorted copy for the words starting with
the prefix and keeps the most frequent. Spelling is Norvig's corrector: a known word is correct;
otherwise the known words one edit away (delete, transpose, replace, insert), or if there are none
the known words two edits away (for words of at most 12 letters: beyond, the ~(54n)^2 strings
cost seconds), most frequent first.
"""

from __future__ import annotations

import heapq
import re
from bisect import bisect_left
from collections.abc import Iterable

LETTERS = "abcdefghijklmnopqrstuvwxyz'"
WORD = re.compile(r"^[a-z']+$")
MAX_TWO_EDITS = 12  # two edits of a word of n letters are ~(54n)^2 strings: searched only up to this length


def edits1(word: str) -> set[str]:
    """Every string one delete, adjacent transpose, replace or insert away from `word` (Norvig's)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    deletes = [a + b[1:] for a, b in splits if b]
    transposes = [a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1]
    replaces = [a + c + b[1:] for a, b in splits if b for c in LETTERS]
    inserts = [a + c + b for a, b in splits for c in LETTERS]
    return set(deletes + transposes + replaces + inserts)


class Vocabulary:
    def __init__(self, frequencies: Iterable[tuple[str, float]]) -> None:
        self.frequency: dict[str, float] = {}
        for word, freq in frequencies:
            if WORD.match(word) and word not in self.frequency:
                self.frequency[word] = freq
        self.sorted = sorted(self.frequency)

    @classmethod
    def english(cls, size: int = 50_000) -> "Vocabulary":
        from wordfreq import top_n_list, word_frequency

        return cls((w, word_frequency(w, "en")) for w in top_n_list("en", size))

    def _ranked(self, words: Iterable[str], limit: int) -> list[tuple[str, float]]:
        return [(w, self.frequency[w]) for w in heapq.nsmallest(limit, words, key=lambda w: (-self.frequency[w], w))]

    def complete(self, prefix: str, limit: int = 10) -> list[tuple[str, float]]:
        """The `limit` most frequent known words starting with `prefix` (case-insensitive), most frequent first."""
        prefix = prefix.strip().lower()
        if not prefix:
            return []
        start = bisect_left(self.sorted, prefix)
        end = bisect_left(self.sorted, prefix + "\U0010ffff", lo=start)
        return self._ranked(self.sorted[start:end], limit)

    def known(self, words: Iterable[str]) -> set[str]:
        return {w for w in words if w in self.frequency}

    def correct(self, word: str, limit: int = 10) -> tuple[bool, list[tuple[str, float, int]]]:
        """(is it a known word, the corrections of an unknown one): known words one edit away, or if none
        two edits away, most frequent first, with their distance."""
        word = word.strip().lower()
        if word in self.frequency:
            return True, []
        near = edits1(word)
        found, distance = self.known(near), 1
        if not found and len(word) <= MAX_TWO_EDITS:
            found, distance = {w for e in near for w in edits1(e) if w in self.frequency}, 2
        return False, [(w, f, distance) for w, f in self._ranked(found, limit)]
