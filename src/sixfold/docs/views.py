"""View counts: `doc-viewed` events out of the read path, landed in the lake, counted per document and day.

Every GET of a document and every WebSocket join records a view; `ViewEmitter` buffers them and one
thread publishes them in batches (a SIGKILL loses at most `flush_s` of views: analytics, not data
anyone wrote). The landing consumer (`streams/docs_views.py`, or a thread of `sixfold serve`) writes
them to the lake by hour; `daily_view_counts` is the Spark transformation and `count_views` runs it
over whole UTC days into the lake's `doc_view_counts` and the serving table the views endpoint reads,
both replaced per day, so a rerun writes the same bytes and rows.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from schemas.records import DOC_VIEW_COUNT, EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.platform import schema
from sixfold.platform.emitter import BufferedPublisher
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

EVENT = EVENTS["doc-viewed"]
TOPIC = EVENT.topic
VIEWS = LAKE_TABLES["doc_views"]
COUNTS = LAKE_TABLES["doc_view_counts"]
SERVING_COUNTS = SERVING_TABLES["doc_view_counts"]
LANDING_GROUP = "doc-viewed-landing"
DAY = timedelta(days=1)
log = logging.getLogger("sixfold.docs")


# ---- emitting --------------------------------------------------------------------------------------
class ViewEmitter(BufferedPublisher[tuple[str, str, "int | None", str, float]]):
    """Views out of the read path (`sixfold.platform.emitter`): (view_id, doc_id, user_id, source, at)."""

    def __init__(self, bus: Any, flush_s: float = 0.25, batch: int = 2000, max_pending: int = 1_000_000) -> None:
        super().__init__(bus, TOPIC, _view_message, flush_s=flush_s, batch=batch, max_pending=max_pending,
                         name="doc-views")

    def record(self, doc_id: str, user_id: int | None, source: str, at: float | None = None) -> None:
        # the id is made here, once: a batch published again after a failure repeats it, and counting collapses it
        self.add((secrets.token_hex(12), doc_id, user_id, source, time.time() if at is None else at))


def _view_message(view: tuple[str, str, int | None, str, float]) -> tuple[str, dict[str, Any]]:
    view_id, doc_id, user_id, source, at = view
    return doc_id, schema.to_json_row(EVENT.record, {"view_id": view_id, "doc_id": doc_id, "user_id": user_id,
                                                     "source": source, "ts": datetime.fromtimestamp(at, UTC)})


# ---- landing ---------------------------------------------------------------------------------------
def land_views(settings: Settings, *, bus: Any = None, lake: Any = None, group: str = LANDING_GROUP,
               idle_timeout_s: float = 1.0, on_batch: Callable[[Any], None] | None = None) -> Any:
    """Land every pending `doc-viewed` event into the lake by hour (bad ones to `doc-viewed.dlq`)."""
    from sixfold.platform.bus import open_bus
    from sixfold.platform.lake import ArrowLake
    from sixfold.platform.landing import land

    own_bus = bus is None
    bus = open_bus(settings) if bus is None else bus
    lake = ArrowLake(settings) if lake is None else lake
    try:
        return land(bus, lake, EVENT, VIEWS, group, idle_timeout_s=idle_timeout_s, on_batch=on_batch)
    finally:
        if own_bus:
            bus.close()


def landing_work(settings: Settings, group: str, idle_s: float, _resources: Any,
                 on_batch: Callable[[Any], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): land `doc-viewed` into the lake."""

    def one_pass() -> dict[str, int]:
        report = land_views(settings, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        return {"received": report.received, "landed": report.landed, "rejected": report.rejected}

    return one_pass


def consumers() -> list[Any]:
    """The docs' stream consumers, for `sixfold serve` (each also runs alone from `streams/`). The
    `docs-updates` topic is consumed by each serving process itself (`hub.py`): it feeds that process's
    in-memory documents, so it cannot run anywhere else."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("doc-viewed-landing", LANDING_GROUP, landing_work)]


# ---- Spark: the pure transformation ---------------------------------------------------------------
def daily_view_counts(views: DataFrame) -> DataFrame:
    """Rows of `doc_view_count`: distinct views (by view_id) per document and UTC day."""
    from pyspark.sql import functions as F

    first = views.groupBy("view_id").agg(F.min(F.struct("ts", "doc_id")).alias("v"))
    return (first.groupBy(F.col("v.doc_id").alias("doc_id"), F.date_trunc("day", F.col("v.ts")).alias("day"))
            .agg(F.count(F.lit(1)).alias("views")).select(*DOC_VIEW_COUNT.names))


def day_span(start: datetime | str, end: datetime | str) -> tuple[datetime, datetime]:
    lo = schema.parse_timestamp(start).replace(hour=0, minute=0, second=0, microsecond=0)
    hi_raw = schema.parse_timestamp(end)
    hi = hi_raw.replace(hour=0, minute=0, second=0, microsecond=0)
    if hi < hi_raw:
        hi += DAY
    if hi <= lo:
        raise ValueError(f"empty interval [{lo.isoformat()}, {hi_raw.isoformat()}): --end must be after --start")
    return lo, hi


def count_views(spark: SparkSession, settings: Settings, store: Any, start: datetime | str, end: datetime | str,
                say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Count the views of every UTC day in [start, end) into the lake and the serving store; returns a ledger.

    Data quality before anything is written: the counts add up to the distinct views read and no
    count has a null document or day.
    """
    from sixfold.platform.lake import ArrowLake, SparkLake

    lo, hi = day_span(start, end)
    views = SparkLake(spark, settings).read(VIEWS, lo, hi).cache()
    try:
        views_in = views.count()
        distinct = views.select("view_id").distinct().count()
        counts = daily_view_counts(views).toArrow()
    finally:
        views.unpersist()
    new = counts.to_pylist()
    counted = sum(r["views"] for r in new)
    nulls = [name for name in ("doc_id", "day") if counts.column(name).null_count]
    from sixfold.platform.quality import record_result

    record_result(settings.var, "docs.views", counted == distinct and not nulls,
                  f"counted {counted} of {distinct} distinct views; null columns {nulls}")
    if counted != distinct or nulls:
        raise ValueError(f"data quality failed for [{lo.isoformat()}, {hi.isoformat()}): counted {counted} of "
                         f"{distinct} distinct views; null columns {nulls}")
    arrow = ArrowLake(settings)
    old = arrow.read(COUNTS, lo, hi).to_pylist()
    partitions = arrow.replace_range(COUNTS, lo, hi, counts)
    kept = {(r["doc_id"], r["day"]) for r in new}
    stale = [r for r in old if (r["doc_id"], r["day"]) not in kept]
    upserted = store.upsert_many(SERVING_COUNTS, new) if new else 0
    for row in stale:
        store.delete(SERVING_COUNTS, {"doc_id": row["doc_id"], "day": row["day"]})
    ledger = {"start": lo.isoformat(), "end": hi.isoformat(), "views_in": views_in, "distinct_views": distinct,
              "count_rows": len(new), "partitions": partitions, "upserted": upserted, "deleted": len(stale)}
    if say:
        say(f"docs_views [{lo.date()}, {hi.date()}): {distinct} views of {len({r['doc_id'] for r in new})} documents "
            f"into {len(new)} daily counts")
    return ledger


def served_counts(store: Any, doc_id: str) -> dict[str, Any]:
    rows = store.query(SERVING_COUNTS, {"doc_id": doc_id})
    days = [{"day": r["day"].date().isoformat(), "views": r["views"]} for r in rows]
    return {"doc_id": doc_id, "days": days, "total": sum(d["views"] for d in days)}
