"""The typeahead pipeline's steps, shared by the jobs, the DAG and `sixfold typeahead build`.

aggregate_window (Spark) -> check_window (data quality) -> build_artifact -> validate_artifact -> swap.
Each step is keyed by its window and overwrites only that window's outputs, so reruns and
backfills give the same bytes.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from schemas.records import LAKE_TABLES
from sixfold.platform.lake import ArrowLake, partition_of, partition_span
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.typeahead.serving import ArtifactStore, load_trie
from sixfold.typeahead.trie import DEFAULT_K, build_trie, write_artifact

WINDOW = timedelta(minutes=15)
EVENTS, COUNTS, STATE = LAKE_TABLES["search_events"], LAKE_TABLES["query_counts"], LAKE_TABLES["phrase_frequencies"]


def window_floor(ts: datetime | str) -> datetime:
    ts = parse_timestamp(ts)
    return ts.replace(minute=ts.minute // 15 * 15, second=0, microsecond=0)


def stats_path(settings: Settings, window_start: datetime) -> Path:
    return settings.var / "typeahead" / "windows" / f"{window_start:%Y%m%dT%H%M}.json"


def previous_state_window(settings: Settings, window_start: datetime) -> datetime | None:
    """The newest state partition strictly before this window (windows may have been skipped)."""
    lake = ArrowLake(settings)
    before = [partition_span(STATE, p)[0] for p in lake.partitions(STATE)]
    earlier = [w for w in before if w < window_start]
    return max(earlier) if earlier else None


def compact_events(settings: Settings, start: datetime, end: datetime) -> dict[str, Any]:
    """Fold each closed window's landed batch files in [start, end) into one file (duplicates removed,
    the same bytes on a rerun), so the aggregation reads one file per window and dedupes nothing."""
    from sixfold.platform.landing import compact_window

    folded = compact_window(ArrowLake(settings), EVENTS, parse_timestamp(start), parse_timestamp(end))
    return {"partitions": len(folded), "files": sum(f["files"] for f in folded.values()),
            "rows_in": sum(f["rows_in"] for f in folded.values()), "rows": sum(f["rows"] for f in folded.values())}


def aggregate_window(spark: Any, settings: Settings, window_start: datetime) -> dict[str, Any]:
    """Count the window's phrases and fold them into the decayed state; returns the window's ledger.

    One Spark job over the raw events (`window_tally`: one scan, one aggregation); the per-phrase
    rest (the 'global' sums, the fold into the previous state, sorting) runs vectorised in Arrow on
    the driver, which writes the lake anyway."""
    from sixfold.platform.lake import SparkLake
    from sixfold.typeahead.aggregate import counts_table, decay_factor, fold_decay_table, rejected_of, window_tally

    window_start = window_floor(window_start)
    end = window_start + WINDOW
    lake, arrow = SparkLake(spark, settings), ArrowLake(settings)
    tally = window_tally(lake.read(EVENTS, window_start, end)).toArrow()
    events_in = int(pc_sum(tally.column("count")))
    rejected = rejected_of(tally)
    counts = sorted_phrases(counts_table(tally, window_start))
    prev_window = previous_state_window(settings, window_start)
    if prev_window is None:
        previous, factor = None, 1.0
    else:
        previous = arrow.read(STATE, prev_window, prev_window + WINDOW)
        factor = decay_factor(window_start - prev_window, settings.typeahead_half_life_s)
    state = fold_decay_table(previous, counts, factor, window_start)
    if previous is not None:  # the join's order is its own; with nothing to fold, counts' order is kept
        state = sorted_phrases(state)
    # Sorted rows, one file per partition, the same bytes on every rerun.
    replace_window(arrow, COUNTS, window_start, counts)
    replace_window(arrow, STATE, window_start, state)
    ledger = {"window_start": window_start.isoformat(), "events_in": events_in, "counted": events_in - rejected,
              "rejected": rejected, "previous_state": prev_window.isoformat() if prev_window else None,
              "decay_factor": factor, "phrases": counts.num_rows}
    path = stats_path(settings, window_start)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(ledger, indent=1))
    return ledger


def pc_sum(column: Any) -> int:
    import pyarrow.compute as pc

    return int(pc.sum(column).as_py() or 0)


def sorted_phrases(rows: Any) -> Any:
    """One window's phrase rows (one `window_start`, (region, query) unique) in the lake's order
    (`lake.sorted_rows`, every column): with the rest fixed by (region, query), that is each
    region's rows (regions in byte order) sorted by query, the regions sorted side by side on the
    cores (Arrow's kernels release the GIL). Anything else (a null key, several windows, fewer than
    two rows) gets `sorted_rows` itself."""
    from concurrent.futures import ThreadPoolExecutor

    import pyarrow as pa
    import pyarrow.compute as pc

    from sixfold.platform.lake import sorted_rows
    from sixfold.platform.spark import CORES

    if rows.num_rows < 2:
        return sorted_rows(rows)
    region, query = rows.column("region"), rows.column("query")
    if region.null_count or query.null_count or pc.count_distinct(rows.column("window_start")).as_py() > 1:
        return sorted_rows(rows)
    names = sorted(pc.unique(region).to_pylist(), key=lambda name: name.encode())  # UTF-8 byte order

    def one_region(name: str) -> Any:
        part = rows.filter(pc.equal(region, pa.scalar(name, region.type)))
        return part.take(pc.array_sort_indices(part.column("query").combine_chunks()))

    with ThreadPoolExecutor(max(1, min(CORES, len(names)))) as pool:
        parts = list(pool.map(one_region, names))
    return pa.concat_tables(parts) if parts else rows


def replace_window(arrow: ArrowLake, table: Any, window_start: datetime, rows: Any) -> None:
    """Replace one window partition of `table` with an Arrow table of its rows, which come sorted by
    every column as ArrowLake sorts them (`sorted_phrases`), without a Python object per row
    (millions of phrases a window)."""
    import shutil

    import pyarrow.parquet as pq

    from sixfold.platform.schema import arrow_schema

    schema = arrow_schema(table.record)
    ordered = rows.select(list(table.record.names)).cast(schema).combine_chunks()
    scratch = arrow._scratch(table)
    try:
        staged = scratch / "window.parquet"
        pq.write_table(ordered, staged, compression="snappy")
        arrow._commit(table, partition_of(table, window_start), staged)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def check_window(settings: Settings, window_start: datetime) -> dict[str, Any]:
    """Data quality, recounted independently with pyarrow: events in = counted + rejected, no null keys."""
    import pyarrow.compute as pc

    window_start = window_floor(window_start)
    end = window_start + WINDOW
    ledger = json.loads(stats_path(settings, window_start).read_text())
    arrow = ArrowLake(settings)
    events = arrow.read(EVENTS, window_start, end)
    counts = arrow.read(COUNTS, window_start, end)
    regional = counts.filter(pc.not_equal(counts.column("region"), "global"))
    counted = pc.sum(regional.column("count")).as_py() or 0
    problems = []
    if events.num_rows != ledger["events_in"]:
        problems.append(f"events in the lake {events.num_rows} != events the job read {ledger['events_in']}")
    if events.num_rows != counted + ledger["rejected"]:
        problems.append(f"events in {events.num_rows} != counted {counted} + rejected {ledger['rejected']}")
    for column in ("region", "query"):
        if counts.column(column).null_count:
            problems.append(f"{counts.column(column).null_count} counts have a null {column}")
    from sixfold.platform.quality import record_result

    record_result(settings.var, "typeahead.window", not problems, "; ".join(problems))
    if problems:
        raise ValueError(f"data quality failed for window {window_start.isoformat()}: " + "; ".join(problems))
    return {"window_start": window_start.isoformat(), "events_in": events.num_rows, "counted": counted,
            "rejected": ledger["rejected"]}


def suggestion_scores(settings: Settings, window_start: datetime) -> dict[str, dict[str, float]]:
    """region -> {phrase: decayed frequency} for phrases over the threshold, as of the window."""
    import pyarrow.compute as pc

    window_start = window_floor(window_start)
    state = ArrowLake(settings).read(STATE, window_start, window_start + WINDOW)
    state = state.filter(pc.greater_equal(state.column("freq"), settings.typeahead_threshold))
    scores: dict[str, dict[str, float]] = defaultdict(dict)
    for region, query, freq in zip(state.column("region").to_pylist(), state.column("query").to_pylist(),
                                   state.column("freq").to_pylist()):
        scores[region][query] = round(freq, 6)
    return dict(scores)


def build_artifact(settings: Settings, window_start: datetime) -> str:
    """Build every region's trie from the state as of the window into a new artifact version (not swapped)."""
    window_start = window_floor(window_start)
    scores = suggestion_scores(settings, window_start)
    scores.setdefault("global", {})
    store = ArtifactStore(settings)
    version, path = store.new_version()
    tries = {region: build_trie(phrases.items(), DEFAULT_K) for region, phrases in scores.items()}
    write_artifact(tries, path, settings.typeahead_shards,
                   meta={"as_of_window": window_start.isoformat(), "threshold": settings.typeahead_threshold,
                         "half_life_s": settings.typeahead_half_life_s})
    return version


def validate_artifact(settings: Settings, version: str, window_start: datetime, samples: int = 300) -> dict[str, Any]:
    """The new trie answers like a brute force over the state it was built from, and the prefixes the
    current primary answers still answer (unless their phrases decayed out)."""
    window_start = window_floor(window_start)
    scores = suggestion_scores(settings, window_start)
    store = ArtifactStore(settings)
    new = load_trie(store.path(version), version, owned=None)
    rng = random.Random(version)
    checked = 0
    for region, phrases in scores.items():
        names = sorted(phrases)
        for phrase in rng.sample(names, min(samples, len(names))):
            prefix = phrase[: rng.randint(1, len(phrase))]
            expected = sorted(((p, s) for p, s in phrases.items() if p.startswith(prefix)),
                              key=lambda ps: (-ps[1], ps[0]))[:DEFAULT_K]
            got = new.regions[region].lookup(prefix, DEFAULT_K)
            if got != expected:
                raise ValueError(f"artifact {version}: region {region!r} prefix {prefix!r} answers {got[:3]}..., "
                                 f"expected {expected[:3]}...")
            checked += 1
    lost = 0
    pointer = store.current()
    if pointer:
        old = load_trie(store.path(pointer["primary"]), pointer["primary"], owned=None)
        for region, trie in old.regions.items():
            for phrase in trie.phrases[:samples]:
                prefix = phrase[:2]
                still_known = any(p.startswith(prefix) for p in scores.get(region, {}))
                answered = new.regions.get(region) and new.regions[region].lookup(prefix, 1)
                if still_known and not answered:
                    lost += 1
        if lost:
            raise ValueError(f"artifact {version}: {lost} prefixes the current trie answers no longer answer")
    return {"version": version, "checked_prefixes": checked, "lost_prefixes": lost}


def swap(settings: Settings, version: str) -> dict[str, Any]:
    return ArtifactStore(settings).swap(version)


def closed_windows(settings: Settings, until: datetime) -> list[datetime]:
    """Windows to aggregate: after the newest state (or from the first events), closed by `until`."""
    arrow = ArrowLake(settings)
    event_windows = [partition_span(EVENTS, p)[0] for p in arrow.partitions(EVENTS)]
    if not event_windows:
        return []
    states = [partition_span(STATE, p)[0] for p in arrow.partitions(STATE)]
    start = max(states) + WINDOW if states else min(event_windows)
    last = window_floor(until) - WINDOW  # the newest window that is closed at `until`
    out = []
    at = start
    while at <= last:
        out.append(at)
        at += WINDOW
    return out


def build_until(settings: Settings, until: datetime | None = None,
                say: Callable[[str], None] = print, progress: Callable[[int, int], None] | None = None) -> dict[str, Any]:
    """Aggregate every closed window up to `until`, then build, validate and swap in a new trie."""
    from sixfold.platform.spark import get_session

    until = parse_timestamp(until) if until else datetime.now(timezone.utc)
    windows = closed_windows(settings, until)
    ledgers = []
    if windows:
        spark = get_session(settings, app_name="typeahead-build")
        for i, window in enumerate(windows):
            compact_events(settings, window, window + WINDOW)
            ledgers.append(aggregate_window(spark, settings, window))
            check_window(settings, window)
            if progress:
                progress(i + 1, len(windows))
    arrow = ArrowLake(settings)
    states = [partition_span(STATE, p)[0] for p in arrow.partitions(STATE)]
    if not states:
        raise ValueError("no search events have been landed yet; run `sixfold typeahead ingest FILE` first")
    as_of = max(s for s in states if s < window_floor(until)) if any(s < window_floor(until) for s in states) else max(states)
    version = build_artifact(settings, as_of)
    report = validate_artifact(settings, version, as_of)
    pointer = swap(settings, version)
    say(f"aggregated {len(windows)} window(s); built trie {version} as of {as_of.isoformat()}; "
        f"validated {report['checked_prefixes']} prefixes against a brute force; swapped in (previous: {pointer['secondary']})")
    return {"windows": ledgers, "version": version, "as_of": as_of.isoformat(), "validation": report}
