"""Hourly click counts: landed clicks counted per key, hour, referrer host and browser family.

`hourly_click_counts` is the Spark transformation (DataFrame in, DataFrame out). `count_clicks`
runs it over whole UTC hours [start, end) and writes both outputs idempotently: the hours'
partitions of the lake's `url_click_counts` are replaced (an hour with no clicks left gets an
empty partition), and the serving table `url_click_counts`, which the stats endpoint reads, gets
the new rows upserted and the rows of those hours a rerun no longer yields deleted. A rerun over
an unchanged lake writes the same bytes and the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from schemas.records import LAKE_TABLES, SERVING_TABLES, URL_CLICK_COUNT
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sixfold.platform.store import ServingStore

CLICKS = LAKE_TABLES["url_clicks"]
COUNTS = LAKE_TABLES["url_click_counts"]
SERVING_COUNTS = SERVING_TABLES["url_click_counts"]
HOUR = timedelta(hours=1)
COUNT_KEY = ("key", "hour", "referrer_host", "ua_family")  # a count row's identity, in lake and store


# ---- Spark: the pure transformation -------------------------------------------------------------
def distinct_clicks(clicks: DataFrame) -> DataFrame:
    """One row per click_id: the earliest of its rows (a replay landed twice counts once, and which
    row stays does not depend on how Spark split the input)."""
    from pyspark.sql import functions as F

    rest = ["ts", *(c for c in CLICKS.record.names if c not in ("click_id", "ts"))]  # ordered by time first
    first = F.min(F.struct(*[F.col(c) for c in rest])).alias("first")
    return clicks.groupBy("click_id").agg(first).select("click_id", *[F.col(f"first.{c}").alias(c) for c in rest])


def hourly_click_counts(clicks: DataFrame) -> DataFrame:
    """Rows of `url_click_count`: distinct clicks per (key, UTC hour, referrer host, browser family).

    The hour is `date_trunc('hour', ts)` in the session's time zone, which the platform's
    sessions fix to UTC.
    """
    from pyspark.sql import functions as F

    return (
        distinct_clicks(clicks)
        .groupBy("key", F.date_trunc("hour", F.col("ts")).alias("hour"), "referrer_host", "ua_family")
        .agg(F.count(F.lit(1)).alias("clicks"))
        .select(*URL_CLICK_COUNT.names)
    )


# ---- driver: run over whole hours and write -----------------------------------------------------
def hour_floor(ts: datetime | str) -> datetime:
    return parse_timestamp(ts).replace(minute=0, second=0, microsecond=0)


def hour_span(start: datetime | str, end: datetime | str) -> tuple[datetime, datetime]:
    """[start, end) widened to whole UTC hours; ValueError when it is empty."""
    lo, hi = hour_floor(start), hour_floor(end)
    if hi < parse_timestamp(end):
        hi += HOUR
    if hi <= lo:
        raise ValueError(f"empty interval [{parse_timestamp(start).isoformat()}, {parse_timestamp(end).isoformat()}): "
                         "--end must be after --start")
    return lo, hi


def _identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row[name] for name in COUNT_KEY)


def write_serving_counts(store: ServingStore, new: list[dict[str, Any]], old: list[dict[str, Any]]) -> dict[str, int]:
    """Upsert `new` and delete the rows of `old` (the same hours' previous counts) it no longer has."""
    kept = {_identity(r) for r in new}
    stale = [r for r in old if _identity(r) not in kept]
    upserted = store.upsert_many(SERVING_COUNTS, new) if new else 0
    for row in stale:
        store.delete(SERVING_COUNTS, {name: row[name] for name in COUNT_KEY})
    return {"upserted": upserted, "deleted": len(stale)}


def count_clicks(spark: SparkSession, settings: Settings, store: ServingStore, start: datetime | str,
                 end: datetime | str, say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Count the clicks of every hour in [start, end) into the lake and the serving store; returns a ledger.

    Data quality before anything is written: the counts add up to the distinct clicks read, and
    no count has a null key, hour, referrer or family.
    """
    from sixfold.platform.lake import ArrowLake, SparkLake

    lo, hi = hour_span(start, end)
    clicks = SparkLake(spark, settings).read(CLICKS, lo, hi).cache()
    try:
        clicks_in = clicks.count()
        distinct = clicks.select("click_id").distinct().count()
        counts = hourly_click_counts(clicks).toArrow()
    finally:
        clicks.unpersist()
    new = counts.to_pylist()
    counted = sum(r["clicks"] for r in new)
    nulls = [name for name in COUNT_KEY if counts.column(name).null_count]
    from sixfold.platform.quality import record_result

    record_result(settings.var, "shortener.url_clicks", counted == distinct and not nulls,
                  f"counted {counted} of {distinct} distinct clicks; null columns {nulls}")
    if counted != distinct or nulls:
        raise ValueError(f"data quality failed for [{lo.isoformat()}, {hi.isoformat()}): counted {counted} "
                         f"of {distinct} distinct clicks; null columns {nulls}")
    arrow = ArrowLake(settings)
    old = arrow.read(COUNTS, lo, hi).to_pylist()  # what the previous run of these hours served
    partitions = arrow.replace_range(COUNTS, lo, hi, counts)
    serving = write_serving_counts(store, new, old)
    ledger = {"start": lo.isoformat(), "end": hi.isoformat(), "clicks_in": clicks_in, "distinct_clicks": distinct,
              "duplicates": clicks_in - distinct, "count_rows": len(new), "partitions": partitions, **serving}
    if say:
        say(f"url_clicks [{lo.isoformat()}, {hi.isoformat()}): {distinct} clicks ({clicks_in - distinct} replays) "
            f"into {len(new)} counts, {serving['deleted']} stale served rows deleted")
    return ledger
