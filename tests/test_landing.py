"""Landing, one file per batch: a replay rewrites the same bytes, nothing is read back, readers drop the
duplicates redelivery leaves across files, and compaction folds a window into the union of its batches.

The oracle is the published events themselves (and, for compaction, the batch files read one by one).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from schemas.records import EVENTS, LAKE_TABLES
from sixfold.platform.bus import Message, SpoolBus, encode
from sixfold.platform.lake import DATA_FILE, ArrowLake, batch_file_name, partition_of
from sixfold.platform.landing import compact_window, land, land_batch
from sixfold.platform.settings import Settings
from sixfold.typeahead import collection
from sixfold.typeahead.collection import check_search_event, land_search_events, publish

TABLE = LAKE_TABLES["search_events"]
EVENT = EVENTS["search-events"]
T0 = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)


class Crash(Exception):
    """The consumer dying after its files are written, before its offsets are committed."""


def searches(n: int, seed: int = 1, start: datetime = T0, minutes: int = 30) -> list[dict[str, Any]]:
    """Checked events over two windows, with repeats (exact duplicates of whole events) mixed in."""
    rng = random.Random(seed)
    rows = [check_search_event({"user_id": f"u{rng.randrange(7)}", "query": f"q{rng.randrange(11)}",
                                "region": rng.choice(["eu", "us"]),
                                "ts": (start + timedelta(seconds=rng.randrange(minutes * 60))).isoformat()})
            for _ in range(n)]
    return rows + rng.sample(rows, n // 5)


def files_of(lake: ArrowLake) -> dict[str, bytes]:
    base = lake.table_dir(TABLE)
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*.parquet"))}


def multiset(rows: list[dict[str, Any]]) -> Counter:
    return Counter(tuple(sorted(r.items())) for r in rows)


def spool(settings: Settings) -> SpoolBus:
    return SpoolBus(settings.spool_dir, fsync=False)


@pytest.mark.unit
def test_a_replayed_batch_leaves_the_same_files(settings: Settings) -> None:
    bus, lake = spool(settings), ArrowLake(settings)
    publish(bus, searches(300))

    def crash(_report: Any) -> None:
        raise Crash

    with pytest.raises(Crash):  # killed after the first batch's files were written, before the commit
        land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=100, before_commit=crash)
    written = files_of(lake)
    assert written and all(Path(p).name == batch_file_name("search-events", 0, 0, "landing") for p in written)

    # a fresh consumer of the same group starts again from the committed offset: the same batch
    report = land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=100, max_batches=1)
    assert report.received == 100
    assert files_of(lake) == written  # the same names and the same bytes, nothing added


@pytest.mark.unit
def test_landed_window_equals_the_events_without_duplicates(settings: Settings) -> None:
    bus, lake = spool(settings), ArrowLake(settings)
    events = searches(400, seed=2)
    publish(bus, events)
    publish(bus, events[:50])  # a producer's retry: the same events again, in later batches
    land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=37)
    distinct = list({tuple(sorted(r.items())): r for r in events}.values())
    assert multiset(lake.read(TABLE).to_pylist()) == multiset(distinct)
    for start in (T0, T0 + timedelta(minutes=15)):
        inside = [r for r in distinct if start <= r["ts"] < start + timedelta(minutes=15)]
        assert multiset(lake.read(TABLE, start, start + timedelta(minutes=15)).to_pylist()) == multiset(inside)


@pytest.mark.unit
def test_compacted_window_is_the_union_of_its_batches(settings: Settings) -> None:
    bus, lake = spool(settings), ArrowLake(settings)
    events = searches(500, seed=3)
    publish(bus, events)
    publish(bus, events[::7])  # redelivered
    land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=41)
    window = partition_of(TABLE, T0)
    batches = lake.data_files(TABLE, window)
    assert len(batches) > 3 and all(p.name.startswith("batch-search-events-landing-0000-") for p in batches)
    union: Counter = Counter()
    for path in batches:
        union += multiset(pq.read_table(path).to_pylist())
    expected = Counter(dict.fromkeys(union, 1))  # the multiset union, exact duplicates removed

    folded = compact_window(lake, TABLE, T0, T0 + timedelta(minutes=15))
    assert folded[window]["files"] == len(batches) and folded[window]["rows"] == len(expected)
    assert [p.name for p in lake.data_files(TABLE, window)] == [DATA_FILE]
    compacted = pq.read_table(lake.table_dir(TABLE) / window / DATA_FILE).to_pylist()
    assert multiset(compacted) == expected
    assert compacted == sorted(compacted, key=lambda r: (r["user_id"], r["query"], r["region"], r["ts"]))
    other = partition_of(TABLE, T0 + timedelta(minutes=15))
    assert len(lake.data_files(TABLE, other)) > 1  # the other window is not touched

    before = files_of(lake)
    compact_window(lake, TABLE, T0, T0 + timedelta(minutes=15))
    assert files_of(lake) == before  # a rerun: the same bytes
    # the whole topic landed again beside the compacted file (a group that never committed), then compacted
    land(bus, lake, EVENT, TABLE, "landing-again", idle_timeout_s=0.1, max_records=41)
    assert len(lake.data_files(TABLE, window)) > 1
    compact_window(lake, TABLE, T0, T0 + timedelta(minutes=15))
    assert files_of(lake)[f"{window}/{DATA_FILE}"] == before[f"{window}/{DATA_FILE}"]


@pytest.mark.unit
def test_landing_never_reads_the_lake(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """Memory bounded by the batch: however much a window holds already, a batch only writes."""
    bus, lake = spool(settings), ArrowLake(settings)
    publish(bus, searches(2000, seed=4, minutes=10))  # one window, many batches

    def no_reading(*_args: Any, **_kwargs: Any) -> Any:
        raise AssertionError("landing read the lake back")

    monkeypatch.setattr(ArrowLake, "read", no_reading)
    monkeypatch.setattr(ArrowLake, "_read_files", no_reading)
    monkeypatch.setattr(pq, "read_table", no_reading)
    monkeypatch.setattr(pq, "ParquetFile", no_reading)
    report = land_search_events(settings, bus=bus, idle_timeout_s=0.1)
    assert report.landed == 2400 and len(report.partitions) == 1
    assert len(lake.data_files(TABLE, partition_of(TABLE, T0))) == 1  # one batch of 5000 at most
    monkeypatch.undo()

    bus2 = spool(settings)
    publish(bus2, searches(2000, seed=5, minutes=10))
    monkeypatch.setattr(ArrowLake, "read", no_reading)
    monkeypatch.setattr(pq, "read_table", no_reading)
    landed = land(bus2, lake, EVENT, TABLE, "small-batches", idle_timeout_s=0.1, max_records=100,
                  check=check_search_event)
    assert landed.received == 4800 and len(lake.data_files(TABLE, partition_of(TABLE, T0))) == 49


@pytest.mark.unit
def test_a_batch_from_several_bus_partitions_lands_one_file_per_source(settings: Settings) -> None:
    """Kafka's batches mix partitions; each partition's offsets name its own file."""
    lake = ArrowLake(settings)
    bus = spool(settings)
    rows = searches(40, seed=6, minutes=10)
    messages = [Message("search-events", i % 2, 1000 * (i % 2) + i // 2 + 5, r["user_id"], encode(r), 0)
                for i, r in enumerate(rows)]
    report = land_batch(bus, lake, EVENT, TABLE, messages, check=check_search_event, group="g")
    names = [p.name for p in lake.data_files(TABLE, partition_of(TABLE, T0))]
    assert names == [batch_file_name("search-events", 0, 5, "g"), batch_file_name("search-events", 1, 1005, "g")]
    assert batch_file_name("t" * 200, 0, 0, "g" * 200).__len__() < 255
    assert report.landed == 48 and report.rejected == 0


@pytest.mark.unit
def test_a_whole_partition_write_replaces_landed_files(settings: Settings) -> None:
    bus, lake = spool(settings), ArrowLake(settings)
    publish(bus, searches(300, seed=7, minutes=10))
    land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=50)
    window = partition_of(TABLE, T0)
    assert len(lake.data_files(TABLE, window)) > 1
    replacement = searches(5, seed=8, minutes=10)[:5]
    lake.overwrite_partitions(TABLE, replacement)
    assert [p.name for p in lake.data_files(TABLE, window)] == [DATA_FILE]
    assert multiset(lake.read(TABLE).to_pylist()) == multiset(replacement)


@pytest.mark.spark
def test_spark_reads_landed_batches_without_duplicates(settings: Settings, spark: Any) -> None:
    from sixfold.platform.lake import SparkLake
    from sixfold.platform.schema import arrow_schema

    bus, lake = spool(settings), ArrowLake(settings)
    events = searches(300, seed=9)
    publish(bus, events)
    publish(bus, events[:60])
    land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=45)
    got = SparkLake(spark, settings).read(TABLE).toArrow().cast(arrow_schema(TABLE.record)).to_pylist()
    distinct = list({tuple(sorted(r.items())): r for r in events}.values())
    assert multiset(got) == multiset(distinct)


# ---- the plain check is the full check, faster --------------------------------------------------
_TEXT = st.one_of(st.text(alphabet=st.sampled_from(list("ab Z\t\n\x00\x1f\x7fé\u0301ｐİ\u2028\u00a0 ")), max_size=12),
                  st.sampled_from(["global", " Global ", "GLOBAL", "eu"]))
_TS = st.sampled_from(["2026-11-26T10:00:00Z", "2026-11-26T10:00:00.123456+02:00", "2026-11-26T10:00:00",
                       " 2026-11-26T10:00:00Z", "2026-11-26T10:00:00z", "2026-11-26 10:00:00.5Z", "2026-13-01T00:00Z",
                       "yesterday", "2026-11-26T10:00:00.999999-05:30"])


@pytest.mark.unit
@hyp_settings(max_examples=400, deadline=None)
@given(user_id=_TEXT, query=st.one_of(_TEXT, st.text(max_size=210)), region=_TEXT, ts=_TS)
def test_plain_check_agrees_with_the_full_check(user_id: str, query: str, region: str, ts: str) -> None:
    payload = {"user_id": user_id, "query": query, "region": region, "ts": ts}
    try:
        expected = collection._check_fully(payload)
    except ValueError:
        expected = None
    plain = collection._plain_search_event(payload)
    assert plain is None or plain == expected
    if expected is None:
        with pytest.raises(ValueError):
            check_search_event(payload)
    else:
        got = check_search_event(payload)
        assert got == expected and got["ts"].tzinfo is timezone.utc


@pytest.mark.unit
def test_compact_closed_folds_only_partitions_that_ended(settings: Settings) -> None:
    from sixfold.platform.landing import compact_closed

    bus, lake = spool(settings), ArrowLake(settings)
    events = searches(300, seed=10)  # two windows
    publish(bus, events)
    land(bus, lake, EVENT, TABLE, "landing", idle_timeout_s=0.1, max_records=40)
    first, second = partition_of(TABLE, T0), partition_of(TABLE, T0 + timedelta(minutes=15))
    before = multiset(lake.read(TABLE).to_pylist())
    folded = compact_closed(lake, TABLE, T0 + timedelta(minutes=20))  # the second window is still open
    assert list(folded) == [first]
    assert [p.name for p in lake.data_files(TABLE, first)] == [DATA_FILE]
    assert len(lake.data_files(TABLE, second)) > 1
    assert multiset(lake.read(TABLE).to_pylist()) == before
