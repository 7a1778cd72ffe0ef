"""Spark itself, the sample transformation against a brute force, and the job through spark-submit."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from importlib.metadata import distribution
from pathlib import Path
from typing import Any

import pytest

from schemas.records import LAKE_TABLES
from sixfold.platform.lake import ArrowLake
from sixfold.platform.sample import window_counts
from sixfold.platform.schema import spark_struct
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_submit, spark_submit_path

pytestmark = pytest.mark.spark

REPO = Path(__file__).resolve().parents[1]
JOB = REPO / "jobs" / "sample_window_counts.py"
T0 = datetime(2026, 1, 1, 10, 0, tzinfo=timezone.utc)


def events(n: int = 60) -> list[dict[str, Any]]:
    """Events every 2m31.007s from 10:00, plus ones exactly on and just before window edges."""
    rows = [
        {"user_id": f"u{i % 7}", "query": f"q{i % 3}", "region": ("eu", "us")[i % 2],
         "ts": T0 + timedelta(seconds=151 * i, milliseconds=7 * i)}
        for i in range(n)
    ]
    for edge in (15, 30, 45):
        rows.append({"user_id": "e", "query": "edge", "region": "eu", "ts": T0 + timedelta(minutes=edge)})
        rows.append({"user_id": "e", "query": "edge", "region": "eu", "ts": T0 + timedelta(minutes=edge, milliseconds=-1)})
    return rows


def window_start(ts: datetime) -> datetime:
    return ts.replace(minute=ts.minute // 15 * 15, second=0, microsecond=0)


def brute_counts(rows: list[dict[str, Any]]) -> Counter[tuple[str, datetime, str]]:
    return Counter((r["region"], window_start(r["ts"]), r["query"]) for r in rows)


def as_counter(rows: list[dict[str, Any]]) -> Counter[tuple[str, datetime, str]]:
    out: Counter[tuple[str, datetime, str]] = Counter()
    for r in rows:
        key = (r["region"], r["window_start"].astimezone(timezone.utc), r["query"])
        assert key not in out, f"duplicate count row for {key}"
        out[key] = r["count"]
    return out


def test_full_pyspark_runs_a_local_query(spark: Any) -> None:
    """Guards against pyspark-client replacing pyspark: no jars, no spark-submit, no local master."""
    import pyspark

    assert distribution("pyspark").version == pyspark.__version__
    assert (Path(pyspark.__file__).parent / "jars").is_dir()
    assert spark_submit_path().is_file()
    assert spark.range(5).selectExpr("sum(id) AS s").first()["s"] == 10
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"


def test_window_counts_matches_brute_force(spark: Any) -> None:
    rows = events()
    frame = spark.createDataFrame(rows, spark_struct(LAKE_TABLES["search_events"].record))
    result = window_counts(frame)
    assert result.columns == list(LAKE_TABLES["sample_window_counts"].record.names)
    got = as_counter(result.toArrow().to_pylist())
    assert got == brute_counts(rows)


def test_job_through_spark_submit(settings: Settings) -> None:
    """The job in its own JVM: counts only [start, end), leaves other output partitions alone."""
    lake = ArrowLake(settings)
    rows = events()
    lake.overwrite_partitions(LAKE_TABLES["search_events"], rows)
    counts = LAKE_TABLES["sample_window_counts"]
    outside = {"region": "eu", "window_start": T0 + timedelta(hours=5), "query": "untouched", "count": 3}
    lake.overwrite_partitions(counts, [outside])

    start, end = T0 + timedelta(minutes=15), T0 + timedelta(minutes=45)
    done = spark_submit(JOB, ["--start", start.isoformat(), "--end", end.isoformat()], settings)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "sample_window_counts [2026-01-01T10:15:00+00:00, 2026-01-01T10:45:00+00:00)" in done.stdout

    expected = brute_counts([r for r in rows if start <= r["ts"] < end])
    assert as_counter(lake.read(counts, start, end).to_pylist()) == expected
    assert lake.partitions(counts) == ["dt=2026-01-01/window=1015", "dt=2026-01-01/window=1030", "dt=2026-01-01/window=1500"]
    assert lake.read(counts, T0 + timedelta(hours=5)).to_pylist() == [outside]
