"""Synthetic search logs that look like real ones: what `sixfold typeahead generate` writes.

Phrases of 1-4 words are grown from wordfreq's most frequent English words, each longer phrase
extending a shorter one ("new" -> "new york" -> "new york times"), so prefixes are shared the way
real queries share them. Phrase popularity is Zipf-distributed (s = 1.1) over a vocabulary that
grows with the log; each region promotes some phrases of its own (regional trending). Users have
a home region and Zipf-distributed activity; timestamps follow a daily cycle over [start, end) and
come out in time order. A few queries are typed differently (capitals, full-width letters, odd
whitespace, decomposed accents) but normalise to their phrase.

Everything is drawn in vectorised batches with numpy and written with pyarrow, so ten million
rows take seconds, and the same arguments and seed give the same log.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from schemas.records import SEARCH_EVENT
from sixfold.platform.schema import arrow_schema, parse_timestamp
from sixfold.typeahead.collection import normalize_query

if TYPE_CHECKING:
    import pyarrow as pa

DEFAULT_REGIONS: tuple[str, ...] = ("us", "in", "gb", "de", "br")
ZIPF_S = 1.1  # phrase popularity: the k-th phrase is searched ~ 1/k**1.1 as often as the first
USER_ZIPF_S = 0.8  # user activity: a few heavy searchers, a long tail
BATCH_ROWS = 1 << 18  # rows drawn per batch; part of the definition of a seed's log
VARIANT_RATE = 0.04  # share of queries typed in a form that normalises to the phrase
TRAVEL_RATE = 0.03  # share of searches made away from the user's home region
LENGTH_SHARES = (0.3, 0.4, 0.2, 0.1)  # phrases of 1, 2, 3, 4 words
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")
_GLUE = ("of", "for", "in", "to", "with", "near", "and", "vs")
_FULLWIDTH = {c: c + 0xFEE0 for c in range(0x21, 0x7F)} | {0x20: 0x3000}
_SPACES = (" ", "  ", "\t", "\u00a0", "\u2003", " \n")


def vocabulary_size(n: int) -> int:
    """Distinct phrases for a log of n rows: bigger logs reach further into the long tail."""
    return int(min(1_000_000, max(64, n // 20)))


def user_count(n: int) -> int:
    return int(min(5_000_000, max(10, n // 40)))


def _zipf_cdf(size: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _draw(rng: np.random.Generator, cdf: np.ndarray, size: int) -> np.ndarray:
    return np.minimum(np.searchsorted(cdf, rng.random(size), side="right"), len(cdf) - 1)


def english_words(limit: int = 60_000) -> list[str]:
    """wordfreq's most frequent English words (most frequent first) that can stand in a query."""
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", limit) if _WORD.fullmatch(w) and normalize_query(w) == w]


def _grow_phrases(rng: np.random.Generator, size: int, words: list[str]) -> list[str]:
    """`size` distinct phrases, most popular first, grown level by level from common words."""
    glue = set(_GLUE) | set(words[:200])  # the commonest words glue phrases; they are not topics
    content = [w for w in words if w not in glue]
    word_cdf = _zipf_cdf(len(content), 1.05)
    targets = [max(1, int(size * share)) for share in LENGTH_SHARES]
    targets[0] = min(targets[0], len(content))
    levels: list[list[str]] = [content[: targets[0]]]
    seen = set(levels[0])
    for want in targets[1:]:
        heads = levels[-1]
        head_cdf = _zipf_cdf(len(heads), 0.8)
        level: list[str] = []
        for _attempt in range(8):
            m = int((want - len(level)) * 1.3) + 8
            head_ids = _draw(rng, head_cdf, m)
            tail_ids = _draw(rng, word_cdf, m)
            glued = rng.random(m) < 0.12
            glue_ids = rng.integers(0, len(_GLUE), m)
            for h, t, g, gi in zip(head_ids.tolist(), tail_ids.tolist(), glued.tolist(), glue_ids.tolist()):
                tail, head_words = content[t], heads[h].split(" ")
                if tail in head_words or len(head_words) >= 4:
                    continue
                glue_word = g and len(head_words) <= 2  # "best of python": the glue counts as a word
                phrase = f"{heads[h]} {_GLUE[gi]} {tail}" if glue_word else f"{heads[h]} {tail}"
                if len(phrase) <= 200 and phrase not in seen:
                    seen.add(phrase)
                    level.append(phrase)
                    if len(level) == want:
                        break
            if len(level) >= want:
                break
        levels.append(level)
    # Popularity: early (common) members of shorter levels first, with noise so the levels mix.
    phrases: list[str] = []
    scores: list[np.ndarray] = []
    for k, level in enumerate(levels):
        phrases.extend(level)
        scores.append(np.log1p(np.arange(len(level))) + 0.8 * k + rng.normal(0.0, 0.6, len(level)))
    order = np.argsort(np.concatenate(scores), kind="stable")
    return [phrases[i] for i in order[:size].tolist()]


def _regional_orders(rng: np.random.Generator, regions: int, size: int) -> np.ndarray:
    """regions x size: popularity rank -> phrase id. Each region promotes some phrases of its own
    from the upper middle of the global order into its top ranks (what trends there)."""
    orders = np.tile(np.arange(size, dtype=np.int32), (regions, 1))
    trending = max(3, min(300, size // 20))
    pool = np.arange(2 * trending, min(size, 40 * trending))
    if len(pool) < trending:
        return orders
    for r in range(regions):
        promoted = rng.choice(pool, trending, replace=False)
        slots = rng.choice(2 * trending, trending, replace=False)
        order = orders[r]
        order[slots], order[promoted] = order[promoted].copy(), order[slots].copy()
    return orders


def variant(phrase: str, kind: int, rng_value: int) -> str:
    """Another way of typing `phrase` that normalises back to it (or the phrase itself)."""
    if kind == 0:
        typed = phrase.title() if rng_value % 2 else phrase.capitalize()
    elif kind == 1:
        typed = phrase.upper()
    elif kind == 2:
        typed = phrase.translate(_FULLWIDTH)
    elif kind == 3:
        words = phrase.split(" ")
        typed = _SPACES[rng_value % len(_SPACES)].join(words)
        typed = (" " if rng_value % 3 == 0 else "") + typed + (" \t" if rng_value % 5 == 0 else "")
    else:
        typed = unicodedata.normalize("NFD", phrase.capitalize())
    return typed if normalize_query(typed) == phrase else phrase


@dataclass(frozen=True)
class LogModel:
    """Everything a log of `n` rows is drawn from: phrases, regional orders, users, time density."""

    n: int
    start: datetime
    end: datetime
    seed: int = 7
    regions: tuple[str, ...] = DEFAULT_REGIONS
    diurnal: bool = True

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"rows must be >= 0, got {self.n}")
        if not self.end > self.start:
            raise ValueError(f"end {self.end.isoformat()} must be after start {self.start.isoformat()}")
        if not self.regions:
            raise ValueError("at least one region is needed")
        bad = [r for r in self.regions if normalize_query(r) != r or not r or len(r) > 32]
        if bad:
            raise ValueError(f"regions must be lower-case names of 1-32 characters without spaces: {bad}")

    def _rng(self, part: int) -> np.random.Generator:
        # One stream per part, so the parts can be built in any order and stay the same.
        return np.random.default_rng([self.seed, 0, part])

    @cached_property
    def phrases(self) -> list[str]:
        return _grow_phrases(self._rng(1), vocabulary_size(self.n), english_words())

    @cached_property
    def phrase_array(self) -> pa.Array:
        import pyarrow as pa

        return pa.array(self.phrases, pa.string())

    @cached_property
    def rank_cdf(self) -> np.ndarray:
        return _zipf_cdf(len(self.phrases), ZIPF_S)

    @cached_property
    def regional_orders(self) -> np.ndarray:
        return _regional_orders(self._rng(2), len(self.regions), len(self.phrases))

    @cached_property
    def region_weights(self) -> np.ndarray:
        w = 1.0 / np.arange(1, len(self.regions) + 1) ** 0.8
        return w / w.sum()

    @cached_property
    def users(self) -> tuple[pa.Array, np.ndarray, np.ndarray]:
        """(user id strings, home region index, activity CDF), heaviest searcher first."""
        import pyarrow as pa

        count = user_count(self.n)
        # A multiplicative hash is a bijection on 32 bits: distinct, not sequential-looking ids.
        offset = np.uint64((self.seed * 7919 + 1) % 2**32)
        hashed = ((np.arange(count, dtype=np.uint64) + offset) * np.uint64(2654435761)) % np.uint64(2**32)
        ids = pa.array([f"u{h:08x}" for h in hashed.tolist()], pa.string())
        home = self._rng(3).choice(len(self.regions), count, p=self.region_weights).astype(np.int32)
        return ids, home, _zipf_cdf(count, USER_ZIPF_S)

    @cached_property
    def time_density(self) -> tuple[np.ndarray, np.ndarray]:
        """(cumulative share, epoch ms) at hour boundaries: the inverse CDF of event times."""
        start_ms, end_ms = _ms(self.start), _ms(self.end)
        edges = [start_ms]
        hour = 3_600_000
        t = (start_ms // hour + 1) * hour
        while t < end_ms:
            edges.append(t)
            t += hour
        edges.append(end_ms)
        e = np.array(edges, dtype=np.float64)
        widths = np.diff(e)
        if self.diurnal:  # busiest around 20:00 UTC, quietest around 08:00
            hours = (e[:-1] // hour) % 24
            widths = widths * (1.0 + 0.6 * np.cos(2 * np.pi * (hours - 20) / 24))
        cdf = np.concatenate([[0.0], np.cumsum(widths)])
        return cdf / cdf[-1], e

    def batch(self, index: int) -> pa.Table:
        """Rows [index * BATCH_ROWS, ...) of the log, in time order, as an Arrow table."""
        import pyarrow as pa
        import pyarrow.compute as pc

        first = index * BATCH_ROWS
        size = min(BATCH_ROWS, self.n - first)
        if size <= 0:
            raise IndexError(index)
        rng = np.random.default_rng([self.seed, 1, index])
        user_ids, home, user_cdf = self.users
        users = _draw(rng, user_cdf, size)
        region = home[users]
        travel = rng.random(size) < TRAVEL_RATE
        region[travel] = rng.choice(len(self.regions), int(travel.sum()), p=self.region_weights)
        ranks = _draw(rng, self.rank_cdf, size)
        phrase_ids = self.regional_orders[region, ranks]
        queries = self.phrase_array.take(pa.array(phrase_ids))
        typed = np.flatnonzero(rng.random(size) < VARIANT_RATE)
        if len(typed):
            kinds = rng.integers(0, 5, len(typed))
            salt = rng.integers(0, 1 << 30, len(typed))
            mask = np.zeros(size, dtype=bool)
            mask[typed] = True
            forms = [variant(self.phrases[p], k, s)
                     for p, k, s in zip(phrase_ids[typed].tolist(), kinds.tolist(), salt.tolist())]
            queries = pc.replace_with_mask(queries, pa.array(mask), pa.array(forms, pa.string()))
        # This batch owns the slice [first, first + size) of the time distribution: sorted within,
        # and every batch after it is later, so the whole log comes out in time order.
        cdf, edges = self.time_density
        lo, hi = first / self.n, (first + size) / self.n
        u = np.sort(lo + rng.random(size) * (hi - lo))
        ts_ms = np.minimum(np.interp(u, cdf, edges).astype(np.int64), int(edges[-1]) - 1)
        regions = pa.array(self.regions, pa.string()).take(pa.array(region))
        return pa.Table.from_arrays(
            [user_ids.take(pa.array(users)), queries, regions,
             pa.array(ts_ms * 1000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))],
            schema=arrow_schema(SEARCH_EVENT),
        )

    def batches(self) -> Iterator[pa.Table]:
        for index in range(math.ceil(self.n / BATCH_ROWS)):
            yield self.batch(index)


def _ms(ts: datetime) -> int:
    return int(parse_timestamp(ts).timestamp() * 1000)


def model(n: int, start: datetime | str, end: datetime | str, seed: int = 7,
          regions: Sequence[str] = DEFAULT_REGIONS, diurnal: bool = True) -> LogModel:
    return LogModel(n, parse_timestamp(start), parse_timestamp(end), seed, tuple(regions), diurnal)


def _json_batch(table: pa.Table) -> Iterator[dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = pc.strftime(table.column("ts").cast(pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
    columns = [table.column("user_id").to_pylist(), table.column("query").to_pylist(),
               table.column("region").to_pylist(), ts.to_pylist()]
    for user_id, query, region, when in zip(*columns):
        yield {"user_id": user_id, "query": query, "region": region, "ts": when}


def generate_log(n: int, start: datetime | str, end: datetime | str, seed: int = 7,
                 regions: Sequence[str] = DEFAULT_REGIONS, diurnal: bool = True) -> Iterator[dict[str, Any]]:
    """`n` search events {user_id, query, region, ts (ISO-8601 UTC, ms)} in time order; the same
    arguments give the same events."""
    for table in model(n, start, end, seed, regions, diurnal).batches():
        yield from _json_batch(table)


Progress = Callable[[int], None]


def write_log_parquet(path: str | Path, n: int, start: datetime | str, end: datetime | str, seed: int = 7,
                      regions: Sequence[str] = DEFAULT_REGIONS, diurnal: bool = True,
                      progress: Progress | None = None) -> int:
    """Write the log to one Parquet file (schema: SEARCH_EVENT), batch by batch; returns the rows."""
    import pyarrow.parquet as pq

    log = model(n, start, end, seed, regions, diurnal)
    written = 0
    with pq.ParquetWriter(str(path), arrow_schema(SEARCH_EVENT), compression="zstd") as writer:
        for table in log.batches():
            writer.write_table(table)
            written += table.num_rows
            if progress:
                progress(table.num_rows)
    return written


def write_log_jsonl(path: str | Path, n: int, start: datetime | str, end: datetime | str, seed: int = 7,
                    regions: Sequence[str] = DEFAULT_REGIONS, diurnal: bool = True,
                    progress: Progress | None = None) -> int:
    """Write the log as JSON lines, the input of `sixfold typeahead ingest`; returns the rows."""
    import orjson

    log = model(n, start, end, seed, regions, diurnal)
    written = 0
    with open(path, "wb") as f:
        for table in log.batches():
            f.write(b"".join(orjson.dumps(row) + b"\n" for row in _json_batch(table)))
            written += table.num_rows
            if progress:
                progress(table.num_rows)
    return written


def default_window(hours: float, start: datetime | str | None = None) -> tuple[datetime, datetime]:
    """[start, start + hours); without a start, the `hours` that end at the last whole hour."""
    if start is None:
        from datetime import timezone

        end = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
        return end - timedelta(hours=hours), end
    begin = parse_timestamp(start)
    return begin, begin + timedelta(hours=hours)
