"""Aggregation: phrase counts per 15-minute window and running frequencies with time decay.

Pure transformations: Spark's (DataFrame in, DataFrame out) for the work over raw events, and
their Arrow twins (Table in, Table out, vectorised pyarrow.compute) for the per-phrase remainder
the job finishes on the driver, where it writes the lake. Every window's counts are folded into
the previous state as `freq = previous * 0.5 ** (elapsed / half_life) + count`, per region and for
all regions together ('global'). `addToDatabase` semantics: only phrases whose decayed frequency
reaches the threshold become suggestions.

Cost, on a small machine: one scan of the window's events, of only the columns counted; one
aggregation by (region, query) whose partial counts are combined map-side before the shuffle;
'global' summed from those per-region counts (a few rows per phrase) rather than a second pass
over the raw events. No Python runs per row.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from sixfold.typeahead.collection import GLOBAL

if TYPE_CHECKING:
    import pyarrow as pa

WINDOW = timedelta(minutes=15)
MAX_QUERY = 200
PRUNE_BELOW = 0.01  # state entries this small can never climb back over any sane threshold unaided


def decay_factor(elapsed: timedelta, half_life_s: float) -> float:
    return 0.5 ** (elapsed.total_seconds() / half_life_s)


def valid_events(events: DataFrame) -> DataFrame:
    """Rows the aggregation counts: a non-empty query of at most 200 characters and a real region
    ('global' is reserved for the all-regions total; collection rejects it, this is the backstop)."""
    return events.filter(is_valid())


def is_valid() -> Column:
    q, region = F.col("query"), F.col("region")
    return (q.isNotNull() & (F.length(q) > 0) & (F.length(q) <= MAX_QUERY)
            & region.isNotNull() & (F.length(region) > 0) & (region != F.lit(GLOBAL)))


def window_tally(events: DataFrame) -> DataFrame:
    """(region, query, count) of the valid events, plus one row (null, null, rejected) for the rest:
    everything the job needs from the raw rows, in one aggregation (no separate counting pass)."""
    ok = is_valid()
    return (events.select(F.when(ok, F.col("region")).alias("region"), F.when(ok, F.col("query")).alias("query"))
            .groupBy("region", "query").count())


def regional_counts(events: DataFrame) -> DataFrame:
    """(region, query, count) of the valid events: the one aggregation over raw rows."""
    return valid_events(events.select("region", "query")).groupBy("region", "query").count()


def with_global(per_region: DataFrame) -> DataFrame:
    """The per-region counts plus region 'global', each phrase's sum over the regions."""
    overall = per_region.groupBy("query").agg(F.sum("count").alias("count")).withColumn("region", F.lit(GLOBAL))
    return per_region.unionByName(overall.select("region", "query", "count"))


def window_phrase_counts(events: DataFrame, window_start: datetime) -> DataFrame:
    """(region, window_start, query, count) for one window's valid events, plus region 'global'."""
    return (
        with_global(regional_counts(events))
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


# ---- the same, on the driver, over the tally (one row per phrase and region) ----------------------
def counts_table(tally: pa.Table, window_start: datetime) -> pa.Table:
    """`window_phrase_counts` from a collected `window_tally`: the regions' rows (the rejected row
    dropped) plus 'global' summed from them, as (region, window_start, query, count)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    regional = tally.filter(pc.is_valid(tally.column("region"))).select(["region", "query", "count"])
    regional = regional.cast(pa.schema([("region", pa.string()), ("query", pa.string()), ("count", pa.int64())]))
    overall = regional.group_by("query", use_threads=False).aggregate([("count", "sum")])
    overall = pa.table({"region": pa.repeat(pa.scalar(GLOBAL, pa.string()), overall.num_rows),
                        "query": overall.column("query"), "count": overall.column("count_sum")})
    both = pa.concat_tables([regional, overall])
    when = pa.repeat(pa.scalar(window_start, pa.timestamp("us", tz="UTC")), both.num_rows)
    return pa.table({"region": both.column("region"), "window_start": when, "query": both.column("query"),
                     "count": both.column("count")})


def rejected_of(tally: pa.Table) -> int:
    """The tally's count of events that were not valid."""
    import pyarrow.compute as pc

    return int(pc.sum(tally.filter(pc.is_null(tally.column("region"))).column("count")).as_py() or 0)


def fold_decay_table(previous: pa.Table | None, counts: pa.Table, factor: float, window_start: datetime) -> pa.Table:
    """`fold_decay` over Arrow tables: (region, window_start, query, freq)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    fresh = pa.table({"region": counts.column("region"), "query": counts.column("query"),
                      "fresh": pc.cast(counts.column("count"), pa.float64())})
    if previous is None or previous.num_rows == 0:
        merged = fresh.append_column("freq", fresh.column("fresh"))
    else:
        old = pa.table({"region": previous.column("region"), "query": previous.column("query"),
                        "decayed": pc.multiply(previous.column("freq"), pa.scalar(factor, pa.float64()))})
        joined = old.join(fresh, ["region", "query"], join_type="full outer", use_threads=False)
        zero = pa.scalar(0.0, pa.float64())
        freq = pc.add(pc.coalesce(joined.column("decayed"), zero), pc.coalesce(joined.column("fresh"), zero))
        merged = joined.append_column("freq", freq)
    merged = merged.filter(pc.greater_equal(merged.column("freq"), pa.scalar(PRUNE_BELOW, pa.float64())))
    when = pa.repeat(pa.scalar(window_start, pa.timestamp("us", tz="UTC")), merged.num_rows)
    return pa.table({"region": merged.column("region"), "window_start": when, "query": merged.column("query"),
                     "freq": merged.column("freq")})
