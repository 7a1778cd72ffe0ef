"""`sixfold demo`: generate data, run every pipeline once on the configured profile, then serve.

Typeahead: a synthetic search log goes through collection (bus, then the lake by 15-minute
window), aggregation with decay (Spark), the trie build, validation and the swap; the server
then answers /v1/suggestions and the /typeahead page. `run_sample_pipeline` is the platform's
smaller sample (spark-submit of jobs/sample_window_counts.py), kept for `--sample`.
Each system adds its own step here as it lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.platform.bus import open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import land
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_submit
from sixfold.platform.store import open_store

REPO = Path(__file__).resolve().parents[2]
_PHRASES = ["weather", "weather today", "weather tomorrow", "news", "new york", "netflix", "python",
            "python list", "pyspark", "kafka", "cassandra", "airflow", "maps", "music", "movies"]
_REGIONS = ["us", "eu", "in"]


def sample_search_events(n: int, start: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """`n` search events over one hour from `start`, Zipf-like over a small phrase list."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(_PHRASES))]
    events = []
    for _ in range(n):
        ts = start + timedelta(milliseconds=rng.randrange(3_600_000))
        events.append({"user_id": f"u{rng.randrange(200)}", "query": rng.choices(_PHRASES, weights)[0],
                       "region": rng.choice(_REGIONS), "ts": ts.isoformat().replace("+00:00", "Z")})
    events.append({"user_id": "u1", "query": "", "region": "us", "ts": "not a time"})  # lands in the DLQ
    return events


def run_sample_pipeline(settings: Settings, events: int = 2000, say: Callable[[str], None] = print) -> dict[str, Any]:
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=1)
    bus = open_bus(settings)
    lake = ArrowLake(settings)
    generated = sample_search_events(events, start)
    bus.produce_many("search-events", [(e["user_id"], e) for e in generated])
    say(f"produced {len(generated)} search events to the bus ({settings.profile} profile)")
    report = land(bus, lake, EVENTS["search-events"], LAKE_TABLES["search_events"], group="demo-landing")
    say(f"landed {report.landed} events in {len(report.partitions)} lake partitions; "
        f"{report.rejected} rejected to search-events.dlq")
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    proc = spark_submit(REPO / "jobs" / "sample_window_counts.py", ["--start", iso(start), "--end", iso(end)], settings)
    if proc.returncode != 0:
        raise RuntimeError(f"spark-submit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    say(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "spark job done")
    counts = lake.read(LAKE_TABLES["sample_window_counts"], start, end).to_pylist()
    store = open_store(settings)
    loaded = store.upsert_many(SERVING_TABLES["query_counts"], counts)
    store.close()
    bus.close()
    say(f"loaded {loaded} window counts into the serving store")
    return {"events": len(generated), "landed": report.landed, "rejected": report.rejected, "counts": loaded}


def run_typeahead(settings: Settings, events: int = 20_000, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate two hours of searches ending at the last whole hour, ingest them, build and swap the trie."""
    from sixfold.typeahead.collection import ingest_lines, land_search_events, read_lines
    from sixfold.typeahead.generate import default_window, write_log_jsonl
    from sixfold.typeahead.pipeline import build_until

    start, end = default_window(2)
    log = settings.var / "demo" / "search-log.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    write_log_jsonl(log, events, start, end, seed=7)
    say(f"typeahead: generated {events:,} searches from {start:%H:%M} to {end:%H:%M} UTC ({log})")
    bus = open_bus(settings)
    try:
        sent = ingest_lines(bus, read_lines(str(log)))
        landed = land_search_events(settings, bus=bus)
    finally:
        bus.close()
    say(f"typeahead: published {sent.published:,}, landed {landed.landed:,} in {len(landed.partitions)} "
        f"window partitions, rejected {sent.rejected + landed.rejected} to search-events.dlq")
    result = build_until(settings, end, say=lambda m: say(f"typeahead: {m}"))
    return {"events": events, "landed": landed.landed, "rejected": sent.rejected + landed.rejected,
            "version": result["version"], "windows": len(result["windows"])}
