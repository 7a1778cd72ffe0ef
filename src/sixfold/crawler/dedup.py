"""Duplicate elimination: exact (sha256 of the body) and near (64-bit SimHash, banded index).

SimHash (Charikar): every 2-word shingle of the visible text votes on 64 bits with its own hash
(blake2b), weighted by how often it occurs; the sign of each bit's tally is the fingerprint bit.
Pages that share most of their shingles differ in few bits. Why word pairs: single words make
unrelated pages look alike (texts drawn from one language share their frequent words; on the test
site unrelated pages came within 2 bits), while each extra word per shingle adds changed features
per edited word, so a one-word edit moves more bits (with 3-word shingles one edit in 1,500 words
moved 4 bits; with pairs, at most 3 over 24 edited test-site pages, and unrelated pages stay 16+
bits apart). Two pages are near duplicates when their fingerprints are within
`distance` bits (Hamming). The index splits the 64 bits into `distance + 1` bands (at least 3):
by pigeonhole two fingerprints within `distance` bits agree exactly on at least one band, so a
lookup only compares against pages sharing a band value, never all pairs.

A duplicate is recorded pointing to its original; only originals are registered, so a chain of
edits never drifts away from the first page.

Shared by partitioned workers (`shared=True`), the state in memory is not the whole truth: a
checksum is registered with the store's insert-if-absent (the loser of a race is an exact
duplicate of the winner), and a fingerprint's bands are read from the store before the lookup.
Two near duplicates classified in the same instant by two workers may both be kept as originals;
the Spark dedup job over the whole crawl (`jobs/crawl_dedup.py`) still groups them.
"""

from __future__ import annotations

import hashlib
import re
from datetime import UTC, datetime

import numpy as np

from schemas.records import SERVING_TABLES
from sixfold.platform.store import ServingStore

CHECKSUMS = SERVING_TABLES["crawl_checksums"]
BANDS = SERVING_TABLES["crawl_simhash_bands"]
_WORD = re.compile(r"\w+", re.UNICODE)
SHINGLE = 2
MASK64 = (1 << 64) - 1


def content_sha256(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def simhash(text: str) -> int | None:
    """The 64-bit SimHash of a text's word shingles (unsigned), or None when it has no words."""
    tokens = _WORD.findall(text.lower())
    if not tokens:
        return None
    shingles = [" ".join(tokens[i:i + SHINGLE]) for i in range(max(1, len(tokens) - SHINGLE + 1))]
    # every occurrence votes, so a shingle's weight is its count
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in shingles)
    bits = np.unpackbits(np.frombuffer(digests, dtype=np.uint8).reshape(-1, 8), axis=1)  # column 0: top bit
    ones = bits.sum(axis=0, dtype=np.int64)
    return int.from_bytes(np.packbits(ones * 2 > len(shingles)).tobytes(), "big")


def hamming(a: int, b: int) -> int:
    return ((a ^ b) & MASK64).bit_count()


def to_signed(value: int) -> int:
    """An unsigned 64-bit value as the signed long the lake and stores hold."""
    return value - (1 << 64) if value >= 1 << 63 else value


def to_unsigned(value: int) -> int:
    return value & MASK64


def band_slices(distance: int) -> list[tuple[int, int]]:
    """(shift, width) of each band: distance + 1 bands (at least 3, so each fits in 31 bits)."""
    bands = max(distance + 1, 3)
    widths = [64 // bands + (1 if i < 64 % bands else 0) for i in range(bands)]
    out, shift = [], 64
    for width in widths:
        shift -= width
        out.append((shift, width))
    return out


class SimHashIndex:
    """Fingerprints by band value: `near(h)` finds registered ones within `distance` bits."""

    def __init__(self, distance: int) -> None:
        self.distance = distance
        self.slices = band_slices(distance)
        self._buckets: dict[tuple[int, int], list[tuple[int, str]]] = {}

    def bands(self, value: int) -> list[tuple[int, int]]:
        return [(i, (value >> shift) & ((1 << width) - 1)) for i, (shift, width) in enumerate(self.slices)]

    def add(self, value: int, url: str) -> None:
        for key in self.bands(value):
            self._buckets.setdefault(key, []).append((value, url))

    def near(self, value: int, exclude: str | None = None) -> tuple[str, int] | None:
        """The closest registered page within the distance (ties: the first registered), or None."""
        best: tuple[int, int, str] | None = None
        order = 0
        for key in self.bands(value):
            for other, url in self._buckets.get(key, ()):
                order += 1
                if url == exclude:
                    continue
                d = hamming(value, other)
                if d <= self.distance and (best is None or d < best[0]):
                    best = (d, order, url)
        return None if best is None else (best[2], best[0])


class DuplicateEliminator:
    """The crawl's dedup state: checksum -> original and the SimHash index, persisted in the store."""

    def __init__(self, store: ServingStore, distance: int, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self.index = SimHashIndex(distance)
        self._checksums: dict[str, str] = {}
        for row in store.scan(CHECKSUMS):
            self._checksums[row["content_sha256"]] = row["url"]
        self._indexed: set[tuple[str, int]] = set()
        for row in store.scan(BANDS):
            self._index(row)

    def _index(self, row: dict) -> None:
        key = (row["url"], row["simhash"])
        if key not in self._indexed:
            self._indexed.add(key)
            self.index.add(to_unsigned(row["simhash"]), row["url"])

    def classify(self, url: str, sha256: str, fingerprint: int | None) -> tuple[str, str] | None:
        """("exact"|"near", original url) for a duplicate; None for an original, which is registered."""
        original = self._checksums.get(sha256)
        if original is None and self.shared:
            row = self.store.get(CHECKSUMS, {"content_sha256": sha256})
            original = None if row is None else row["url"]
        if original is not None and original != url:
            self._checksums[sha256] = original
            return "exact", original
        if fingerprint is not None:
            if self.shared:  # peers' originals registered since this worker started
                for band, value in self.index.bands(fingerprint):
                    for row in self.store.query(BANDS, {"band": band, "band_value": value}):
                        self._index(row)
            found = self.index.near(fingerprint, exclude=url)
            if found is not None:
                return "near", found[0]
        if original is None:
            row = {"content_sha256": sha256, "url": url, "first_seen_at": datetime.now(UTC)}
            if self.shared and not self.store.insert_if_absent(CHECKSUMS, row):
                winner = self.store.get(CHECKSUMS, {"content_sha256": sha256})
                if winner is not None and winner["url"] != url:
                    self._checksums[sha256] = winner["url"]
                    return "exact", winner["url"]
            elif not self.shared:
                self.store.upsert(CHECKSUMS, row)
            self._checksums[sha256] = url
        if fingerprint is not None:
            self._indexed.add((url, to_signed(fingerprint)))
            self.index.add(fingerprint, url)
            self.store.upsert_many(BANDS, [{"band": band, "band_value": value, "url": url,
                                            "simhash": to_signed(fingerprint)}
                                           for band, value in self.index.bands(fingerprint)])
        return None
