"""Aggregation: phrase counts per 15-minute window and running frequencies with time decay.

Pure Spark transformations, DataFrame in and DataFrame out. Every window's counts are folded into
the previous state as `freq = previous * 0.5 ** (elapsed / half_life) + count`, per region and for
all regions together ('global'). `addToDatabase` semantics: only phrases whose decayed frequency
reaches the threshold become suggestions.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from sixfold.typeahead.collection import GLOBAL

WINDOW = timedelta(minutes=15)
MAX_QUERY = 200
PRUNE_BELOW = 0.01  # state entries this small can never climb back over any sane threshold unaided


def decay_factor(elapsed: timedelta, half_life_s: float) -> float:
    return 0.5 ** (elapsed.total_seconds() / half_life_s)


def valid_events(events: DataFrame) -> DataFrame:
    """Rows the aggregation counts: a non-empty query of at most 200 characters and a real region
    ('global' is reserved for the all-regions total; collection rejects it, this is the backstop)."""
    q, region = F.col("query"), F.col("region")
    return events.filter(q.isNotNull() & (F.length(q) > 0) & (F.length(q) <= MAX_QUERY)
                         & region.isNotNull() & (F.length(region) > 0) & (region != F.lit(GLOBAL)))


def window_phrase_counts(events: DataFrame, window_start: datetime) -> DataFrame:
    """(region, window_start, query, count) for one window's valid events, plus region 'global'."""
    valid = valid_events(events)
    per_region = valid.groupBy("region", "query").count()
    overall = valid.groupBy("query").count().withColumn("region", F.lit(GLOBAL))
    return (
        per_region.unionByName(overall)
        .withColumn("window_start", F.lit(window_start).cast("timestamp"))
        .select("region", "window_start", "query", F.col("count").cast("long").alias("count"))
    )


def fold_decay(previous: DataFrame | None, counts: DataFrame, factor: float, window_start: datetime) -> DataFrame:
    """New state as of `window_start`: the previous state decayed by `factor`, plus this window's counts."""
    current = counts.select("region", "query", F.col("count").cast("double").alias("fresh"))
    if previous is None:
        merged = current.withColumn("freq", F.col("fresh"))
    else:
        old = previous.select("region", "query", (F.col("freq") * F.lit(factor)).alias("decayed"))
        merged = old.join(current, ["region", "query"], "full_outer").withColumn(
            "freq", F.coalesce("decayed", F.lit(0.0)) + F.coalesce("fresh", F.lit(0.0))
        )
    return (
        merged.filter(F.col("freq") >= PRUNE_BELOW)
        .withColumn("window_start", F.lit(window_start).cast("timestamp"))
        .select("region", "window_start", "query", "freq")
    )


def suggestion_set(state: DataFrame, threshold: float) -> DataFrame:
    """`addToDatabase`: phrases whose decayed frequency reached the threshold."""
    return state.filter(F.col("freq") >= threshold)
