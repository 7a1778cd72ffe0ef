"""Lake contract: ArrowLake and SparkLake keep the same promises, and each reads what the other writes.

The oracle is always the input rows themselves, sorted.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES, Field, LakeTable, Record
from sixfold.platform.lake import ArrowLake, SparkLake, partition_of, partition_span
from sixfold.platform.schema import arrow_schema, spark_struct
from sixfold.platform.settings import Settings

T0 = datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)
SEARCH_EVENTS = LAKE_TABLES["search_events"]  # window15
# A test-only record with every field type, so conversions between engines are all exercised.
EVERY_TYPE = Record(
    "every_type",
    (
        Field("id", "string"),
        Field("at", "timestamp"),
        Field("n", "int"),
        Field("big", "long"),
        Field("x", "double", required=False),
        Field("ok", "bool"),
        Field("blob", "bytes", required=False),
        Field("tags", "list<string>", required=False),
    ),
)
HOURLY = LakeTable("test/every_type", EVERY_TYPE, time_field="at", partitioning="hour")

Rows = list[dict[str, Any]]


def search_events(n: int = 40, start: datetime = T0, step_min: int = 7, tag: str = "") -> Rows:
    return [
        {"user_id": f"u{i % 5}", "query": f"q{i % 4}{tag}", "region": ("eu", "us", "ap")[i % 3],
         "ts": start + timedelta(minutes=step_min * i, seconds=i, milliseconds=i)}
        for i in range(n)
    ]


def every_type_rows(n: int = 30) -> Rows:
    return [
        {"id": f"r{i}", "at": T0 + timedelta(minutes=11 * i, milliseconds=7 * i), "n": i - 10, "big": 2**40 + i,
         "x": None if i % 4 == 0 else i / 3, "ok": i % 2 == 0, "blob": None if i % 5 == 0 else bytes([i, 0, 255]),
         "tags": None if i % 6 == 0 else [f"t{j}" for j in range(i % 3)]}
        for i in range(n)
    ]


def rows_for(table: LakeTable) -> Rows:
    return search_events() if table is SEARCH_EVENTS else every_type_rows()


def canonical(rows: Rows) -> Rows:
    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(
            (v is None, v.astimezone(timezone.utc).isoformat() if isinstance(v, datetime) else repr(v))
            for v in row.values()
        )

    return sorted(rows, key=key)


@dataclass
class LakeUnderTest:
    """One implementation behind list-of-dict adapters, so every test reads the same for both."""

    name: str
    lake: ArrowLake | SparkLake
    write: Callable[[LakeTable, Rows], list[str]]
    read: Callable[..., Rows]


def arrow_lake(settings: Settings) -> LakeUnderTest:
    lake = ArrowLake(settings)

    def read(table: LakeTable, start: Any = None, end: Any = None) -> Rows:
        result = lake.read(table, start, end)
        assert result.schema == arrow_schema(table.record)
        return result.to_pylist()

    return LakeUnderTest("arrow", lake, lake.overwrite_partitions, read)


def spark_lake(settings: Settings, spark: Any) -> LakeUnderTest:
    lake = SparkLake(spark, settings)

    def write(table: LakeTable, rows: Rows) -> list[str]:
        return lake.overwrite_partitions(table, spark.createDataFrame(rows, spark_struct(table.record)))

    def read(table: LakeTable, start: Any = None, end: Any = None) -> Rows:
        frame = lake.read(table, start, end)
        assert frame.columns == list(table.record.names)  # no dt/hour/window leaking in
        # toArrow keeps timestamps as UTC instants (collect() would give naive local times).
        return frame.toArrow().cast(arrow_schema(table.record)).to_pylist()

    return LakeUnderTest("spark", lake, write, read)


@pytest.fixture(params=["arrow", pytest.param("spark", marks=pytest.mark.spark)])
def lake(request: pytest.FixtureRequest, settings: Settings) -> LakeUnderTest:
    if request.param == "arrow":
        return arrow_lake(settings)
    return spark_lake(settings, request.getfixturevalue("spark"))


def file_digests(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.parametrize("table", [SEARCH_EVENTS, HOURLY], ids=["window15", "hour"])
def test_round_trip_equals_input(lake: LakeUnderTest, table: LakeTable) -> None:
    rows = rows_for(table)
    written = lake.write(table, rows)
    expected_partitions = sorted({partition_of(table, r[table.time_field]) for r in rows})
    assert written == expected_partitions
    assert lake.lake.partitions(table) == expected_partitions
    assert canonical(lake.read(table)) == canonical(rows)
    for partition in expected_partitions:
        files = [p.name for p in (lake.lake.table_dir(table) / partition).iterdir()]
        assert files == ["part-00000.parquet"]
    assert not list(lake.lake.table_dir(table).glob("_staging-*")), "scratch space must be cleaned up"


def test_overwrite_replaces_touched_partitions_only(lake: LakeUnderTest) -> None:
    table = SEARCH_EVENTS
    first = search_events(n=30)  # windows 10:00 .. 13:30
    lake.write(table, first)
    base = lake.lake.table_dir(table)
    before = file_digests(base)

    touched = "dt=2026-01-01/window=1030"
    replacement = search_events(n=3, start=T0 + timedelta(minutes=31), step_min=4, tag="-new")
    assert {partition_of(table, r["ts"]) for r in replacement} == {touched}
    assert lake.write(table, replacement) == [touched]

    after = file_digests(base)
    assert set(after) == set(before)
    changed = {path for path in after if after[path] != before[path]}
    assert changed == {f"{touched}/part-00000.parquet"}
    kept = [r for r in first if partition_of(table, r["ts"]) != touched]
    assert canonical(lake.read(table)) == canonical(kept + replacement)


def test_read_time_range(lake: LakeUnderTest) -> None:
    table = SEARCH_EVENTS
    rows = search_events(n=40)
    lake.write(table, rows)
    for start, end in [
        (T0 + timedelta(minutes=15), T0 + timedelta(minutes=45)),  # aligned to windows
        (T0 + timedelta(minutes=20), T0 + timedelta(hours=2, minutes=3)),  # cuts through windows
        (T0 - timedelta(days=1), T0),  # before everything
    ]:
        expected = [r for r in rows if start <= r["ts"] < end]
        assert canonical(lake.read(table, start, end)) == canonical(expected)
    iso = lake.read(table, "2026-01-01T10:15:00Z", "2026-01-01T10:30:00Z")
    assert canonical(iso) == canonical([r for r in rows if T0 + timedelta(minutes=15) <= r["ts"] < T0 + timedelta(minutes=30)])
    assert lake.read(table, T0 + timedelta(days=30)) == []


def test_rerun_writes_identical_bytes(lake: LakeUnderTest) -> None:
    """Arrow: in any process. Spark: within one JVM only (see the lake module's docstring)."""
    rows = every_type_rows()
    lake.write(HOURLY, rows)
    first = file_digests(lake.lake.table_dir(HOURLY))
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    lake.write(HOURLY, shuffled)
    assert file_digests(lake.lake.table_dir(HOURLY)) == first


def test_empty_table_reads_empty(lake: LakeUnderTest) -> None:
    assert lake.lake.partitions(SEARCH_EVENTS) == []
    assert lake.read(SEARCH_EVENTS) == []
    assert lake.write(SEARCH_EVENTS, []) == []


@pytest.mark.spark
@pytest.mark.parametrize("writer,reader", [("arrow", "spark"), ("spark", "arrow")])
@pytest.mark.parametrize("table", [SEARCH_EVENTS, HOURLY], ids=["window15", "hour"])
def test_each_reads_what_the_other_wrote(settings: Settings, spark: Any, writer: str, reader: str, table: LakeTable) -> None:
    lakes = {"arrow": arrow_lake(settings), "spark": spark_lake(settings, spark)}
    rows = rows_for(table)
    lakes[writer].write(table, rows)
    assert canonical(lakes[reader].read(table)) == canonical(rows)


def test_timestamps_kept_to_the_millisecond(lake: LakeUnderTest) -> None:
    """The platform's precision (schema.parse_timestamp): both engines cut sub-milliseconds alike."""
    rows = search_events(n=3)
    lake.write(SEARCH_EVENTS, [{**r, "ts": r["ts"] + timedelta(microseconds=999)} for r in rows])
    assert canonical(lake.read(SEARCH_EVENTS)) == canonical(rows)


@pytest.mark.unit
@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(timezone.utc)))
def test_partition_span_contains_its_events(ts: datetime) -> None:
    for table in (SEARCH_EVENTS, HOURLY):
        start, end = partition_span(table, partition_of(table, ts))
        assert start <= ts < end
        assert partition_of(table, start) == partition_of(table, end - timedelta(microseconds=1))
