"""Aggregation, decay, build and swap against brute-force oracles written in plain Python."""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES
from sixfold.platform.lake import ArrowLake
from sixfold.typeahead import pipeline
from sixfold.typeahead.serving import Suggester

pytestmark = pytest.mark.spark

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)
W = timedelta(minutes=15)
HALF_LIFE = 3600.0  # one hour, so decay is visible across a few windows


def events_for(window: int, spec: list[tuple[str, str, int]]) -> list[dict]:
    """`count` copies of (query, region) spread over window number `window` after T0."""
    out = []
    for query, region, count in spec:
        for i in range(count):
            out.append({"user_id": f"u{i}", "query": query, "region": region,
                        "ts": T0 + window * W + timedelta(seconds=7 * i + len(query))})
    return out


WINDOWS = {
    0: [("new york", "us", 6), ("news", "us", 4), ("netflix", "eu", 5), ("café crème", "eu", 3), ("nasa", "in", 2)],
    1: [("news", "us", 7), ("netflix", "us", 1), ("nederland", "eu", 4), ("café", "eu", 2)],
    3: [("nasa", "in", 9), ("new york", "eu", 3)],  # window 2 is empty on purpose
}


def oracle_state(upto: int, threshold: float) -> dict[str, dict[str, float]]:
    """Decayed frequencies after folding windows 0..upto in order, regions and 'global', thresholded."""
    state: dict[tuple[str, str], float] = {}
    for w in range(upto + 1):
        counts: Counter = Counter()
        for query, region, count in WINDOWS.get(w, []):
            counts[(region, query)] += count
            counts[("global", query)] += count
        factor = 0.5 ** (W.total_seconds() / HALF_LIFE) if w > 0 else 1.0
        state = {key: value * factor for key, value in state.items()}
        for key, count in counts.items():
            state[key] = state.get(key, 0.0) + count
    out: dict[str, dict[str, float]] = defaultdict(dict)
    for (region, query), freq in state.items():
        if freq >= threshold:
            out[region][query] = freq
    return out


def top(scores: dict[str, float], prefix: str, k: int = 10) -> list[tuple[str, float]]:
    return sorted(((p, s) for p, s in scores.items() if p.startswith(prefix)), key=lambda ps: (-ps[1], ps[0]))[:k]


def same(got: list[tuple[str, float]], expected: list[tuple[str, float]]) -> bool:
    """Phrases equal and in order; scores equal up to the 6 decimals the trie keeps."""
    return [p for p, _ in got] == [p for p, _ in expected] and all(
        abs(a - b) <= 1e-6 * max(1.0, abs(b)) for (_, a), (_, b) in zip(got, expected))


@pytest.fixture
def typeahead_settings(settings, monkeypatch):
    import dataclasses

    rows = [e for w, spec in WINDOWS.items() for e in events_for(w, spec)]
    ArrowLake(settings).overwrite_partitions(LAKE_TABLES["search_events"], rows)
    return dataclasses.replace(settings, typeahead_half_life_s=HALF_LIFE, typeahead_threshold=2.5, typeahead_shards=3)


def test_windows_fold_with_decay_and_threshold_like_the_oracle(typeahead_settings, spark):
    s = typeahead_settings
    for w in range(4):
        ledger = pipeline.aggregate_window(spark, s, T0 + w * W)
        assert ledger["events_in"] == sum(c for _, _, c in WINDOWS.get(w, []))
        assert pipeline.check_window(s, T0 + w * W)["counted"] == ledger["events_in"]
        got = pipeline.suggestion_scores(s, T0 + w * W)
        want = oracle_state(w, 2.5)
        assert set(got) == set(want)
        for region in want:
            assert got[region] == pytest.approx(want[region], rel=1e-6)


def test_rerunning_a_window_gives_byte_identical_aggregates(typeahead_settings, spark):
    s = typeahead_settings
    pipeline.aggregate_window(spark, s, T0)
    pipeline.aggregate_window(spark, s, T0 + W)
    lake = ArrowLake(s)

    def files() -> dict[str, bytes]:
        out = {}
        for name in ("query_counts", "phrase_frequencies"):
            base = lake.table_dir(LAKE_TABLES[name])
            out.update({str(p.relative_to(base.parent)): p.read_bytes() for p in base.rglob("*.parquet")})
        return out

    before = files()
    pipeline.aggregate_window(spark, s, T0 + W)
    assert files() == before


def test_built_trie_answers_like_a_brute_force_and_swaps_without_dropping_requests(typeahead_settings, spark):
    s = typeahead_settings
    for w in range(2):
        pipeline.aggregate_window(spark, s, T0 + w * W)
    first = pipeline.build_artifact(s, T0)
    pipeline.validate_artifact(s, first, T0)
    pipeline.swap(s, first)
    suggester = Suggester(s, poll_interval_s=0.05)
    old, new = oracle_state(0, 2.5), oracle_state(1, 2.5)
    prefixes = ["", "n", "ne", "new", "new ", "café", "CAFÉ", "na", "zz"]
    for region, name in ((None, "global"), ("eu", "eu"), ("us", "us")):
        for prefix in prefixes:
            expected = top(old.get(name, {}), prefix.lower())
            got = suggester.suggest(prefix, 10, region)["suggestions"]
            assert same([(g["phrase"], g["score"]) for g in got], expected), (region, prefix, got)

    # Hammer the suggester from threads while the second artifact is swapped in.
    # Each reader keeps its own answers in order, so "never back to the old trie" is checkable per thread
    # (one shared list would interleave a slow request's old answer after another thread's new one).
    answers: list[list[list]] = [[] for _ in range(3)]
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader(mine: list[list]) -> None:
        while not stop.is_set():
            try:
                got = suggester.suggest("ne", 10)["suggestions"]
                mine.append([(g["phrase"], g["score"]) for g in got])
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    threads = [threading.Thread(target=reader, args=(answers[i],)) for i in range(3)]
    for t in threads:
        t.start()
    suggester.watch()
    second = pipeline.build_artifact(s, T0 + W)
    pipeline.validate_artifact(s, second, T0 + W)
    pipeline.swap(s, second)
    deadline = datetime.now() + timedelta(seconds=20)
    while suggester.version != second and datetime.now() < deadline:
        threading.Event().wait(0.05)
    stop.set()
    for t in threads:
        t.join()
    fresh = [(g["phrase"], g["score"]) for g in suggester.suggest("ne", 10)["suggestions"]]
    suggester.close()
    assert not errors
    assert suggester.version == second
    allowed = [top(old["global"], "ne"), top(new["global"], "ne")]
    for mine in answers:
        assert mine and all(same(a, allowed[0]) or same(a, allowed[1]) for a in mine)
        kinds = [0 if same(a, allowed[0]) else 1 for a in mine]
        assert kinds == sorted(kinds), "a reader saw the old trie again after the new one"
    assert same(fresh, allowed[1])
    assert suggester.suggest("ned", 10, "eu")["suggestions"][0]["phrase"] == "nederland"  # new in window 1


# ---- the lake's order, by regions side by side -------------------------------------------------------
_REGIONS = st.sampled_from(["us", "eu", "global", "in", "é", "Z", "zz", "a b"])
_QUERIES = st.text(alphabet=st.sampled_from("ab zé日\U0001f600Z0"), min_size=1, max_size=6)


@pytest.mark.unit
@hsettings(max_examples=150, deadline=None)
@given(st.dictionaries(st.tuples(_REGIONS, _QUERIES), st.integers(1, 50), max_size=60))
def test_sorted_phrases_is_the_order_of_every_column_in_utf8_bytes(rows: dict) -> None:
    """The oracle: Python's sort of the rows as tuples of UTF-8 bytes (the lake's order: every column
    ascending, strings compared byte by byte)."""
    import pyarrow as pa

    table = pa.table({"region": [r for r, _ in rows], "window_start": [T0] * len(rows),
                      "query": [q for _, q in rows], "count": list(rows.values())})
    got = pipeline.sorted_phrases(table).to_pylist()
    want = sorted(table.to_pylist(), key=lambda r: (r["region"].encode(), r["window_start"], r["query"].encode(),
                                                     r["count"]))
    assert got == want


@pytest.mark.unit
def test_sorted_phrases_with_a_null_key_sorts_every_row_nulls_last() -> None:
    import pyarrow as pa

    table = pa.table({"region": ["us", None, "eu", "us"], "window_start": [T0] * 4,
                      "query": ["b", "a", "c", None], "count": [1, 2, 3, 4]})
    got = [(r["region"], r["query"]) for r in pipeline.sorted_phrases(table).to_pylist()]
    assert got == [("eu", "c"), ("us", "b"), ("us", None), (None, "a")]
