"""Collection: search events from the edge (HTTP, `sixfold typeahead ingest`, producers) to the lake.

One check, `check_search_event`, decides what a search event is: every door calls it, and the
landing consumer calls it again, so an event a producer put on the bus without checking is still
normalised, and rejected to `search-events.dlq` with the reason when it is bad.

A user's recent searches (the serving table personalised suggestions read, each row with a TTL
counted from the event's own time) are kept by a second consumer group of the same topic,
`remember_search_events`: it runs beside the landing (its own thread in `sixfold serve`, its own
process in `streams/` and in `land_and_remember`), so the store's writes and the lake's files
overlap instead of adding up, and a slow store never holds the lake back (or the reverse).
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

from schemas.records import EVENTS, LAKE_TABLES, SEARCH_EVENT, SERVING_TABLES
from sixfold.platform import schema
from sixfold.platform.bus import EventBus, Message, dead_letter, decode, open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import (
    CANONICAL_TS,
    CheckedBatch,
    LandingReport,
    canonical_times,
    land,
    merge_checked,
    read_string_objects,
)
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore, open_store

TOPIC = "search-events"
EVENT = EVENTS[TOPIC]
LAKE_TABLE = LAKE_TABLES["search_events"]
RECENT = SERVING_TABLES["user_recent_queries"]
LANDING_GROUP = "search-events-landing"
RECENT_GROUP = "search-events-recent"
MAX_QUERY = SEARCH_EVENT.field("query").max_length or 200
PUBLISH_CHUNK = 5000
# Search events landed per batch (the landing's memory bound, ~50 MB of rows): the users' recent
# queries of a batch are one SQLite transaction, and random users touch pages all over the table's
# B-tree, so the pages written per row fall as the batch grows (2M events in one window: 5,000 per
# batch ~45k recent rows/s, 50,000 per batch ~100k/s). Also one Parquet file per 50,000 events.
LAND_BATCH = 50_000


GLOBAL = "global"  # the all-regions trie's name; no event may claim it


def normalize_query(text: str) -> str:
    """NFKC, lower case, every run of Unicode whitespace to one space, no space at either end.

    NFKC runs again after lower-casing because lower-casing can produce a sequence NFKC would
    rewrite (e.g. 'İ' -> 'i' + U+0307): without it, normalising twice could change the text.
    """
    if text.isascii():  # NFKC leaves ASCII as it is
        return " ".join(text.lower().split())
    folded = unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).lower())
    return " ".join(folded.split())


def _has_control(text: str) -> str | None:
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"U+{ord(ch):04X}"
    return None


_FIELDS = frozenset(SEARCH_EVENT.names)
_MAX_LENGTHS = tuple(SEARCH_EVENT.field(n).max_length or 0 for n in ("user_id", "query", "region"))


def _plain_search_event(payload: Any) -> dict[str, Any] | None:
    """The canonical event of a payload that is plainly good (the common case, checked in a few
    microseconds: millions of events a minute come through here), else None for the full check."""
    if type(payload) is not dict or payload.keys() != _FIELDS:
        return None
    user_id, query, region, ts = payload["user_id"], payload["query"], payload["region"], payload["ts"]
    if type(user_id) is not str or type(query) is not str or type(region) is not str or type(ts) is not str:
        return None
    user_id, query, region = user_id.strip(), normalize_query(query), normalize_query(region)
    max_user, max_query, max_region = _MAX_LENGTHS
    # isprintable() is False for every control character (and some others, which the full check judges)
    if not (0 < len(user_id) <= max_user and 0 < len(query) <= max_query and 0 < len(region) <= max_region
            and region != GLOBAL and query.isprintable()):
        return None
    try:
        when = datetime.fromisoformat(ts)
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    when = when.astimezone(timezone.utc)
    if when.microsecond % 1000:
        when = when.replace(microsecond=when.microsecond // 1000 * 1000)
    return {"user_id": user_id, "query": query, "region": region, "ts": when}


# What every door publishes, recognised by Arrow's kernels without a Python object per event: ASCII, printable,
# lower case, single spaces, trimmed (`normalize_query` leaves such text as it is); a user id whose ends are
# printable ASCII (`strip` leaves it); a UTC time to the millisecond written with Z (`to_json_value`'s form).
_CANON_TEXT = r"^[!-@\[-~]+( [!-@\[-~]+)*$"
_CANON_USER = r"^[!-~](.*[!-~])?$"


def _canonical_columns(raws: list[bytes]) -> tuple[Any, Any] | None:
    """(Arrow table of the four fields as strings, mask of the rows already canonical) for a batch of raw
    messages, or None when `read_string_objects` cannot read the batch as flat objects of four strings (then
    every message of the batch takes `check_search_event`)."""
    import pyarrow.compute as pc

    table = read_string_objects(raws, ("user_id", "query", "region", "ts"))
    if table is None:
        return None
    max_user, max_query, max_region = _MAX_LENGTHS
    ok = pc.and_kleene(pc.match_substring_regex(table["query"], _CANON_TEXT),
                       pc.less_equal(pc.utf8_length(table["query"]), max_query))
    ok = pc.and_kleene(ok, pc.and_kleene(pc.match_substring_regex(table["region"], _CANON_TEXT),
                                         pc.less_equal(pc.utf8_length(table["region"]), max_region)))
    ok = pc.and_kleene(ok, pc.not_equal(table["region"], GLOBAL))
    ok = pc.and_kleene(ok, pc.and_kleene(pc.match_substring_regex(table["user_id"], _CANON_USER),
                                         pc.less_equal(pc.utf8_length(table["user_id"]), max_user)))
    ok = pc.and_kleene(ok, pc.match_substring_regex(table["ts"], CANONICAL_TS))
    return table, pc.fill_null(ok, False)


def check_search_batch(raws: list[bytes]) -> CheckedBatch:
    """`check_search_event` of a whole batch of raw messages at once.

    Events in the form every door publishes are checked by Arrow's kernels (the regular expressions
    above) with no Python object per event, several times faster; any other message (non-ASCII text,
    another spelling of the time, a bad event) takes `check_search_event` itself, so the rows and the
    reasons are exactly what checking one message at a time gives (tests/test_typeahead_collection.py
    compares the two on generated batches)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrow = schema.arrow_schema(SEARCH_EVENT)
    fast, fast_positions, slow = arrow.empty_table(), pa.array([], pa.uint64()), list(range(len(raws)))
    read = _canonical_columns(raws)
    if read is not None:
        table, ok = read
        ts = canonical_times(table["ts"].filter(ok), arrow.field("ts").type)
        if ts is not None:  # else a date that is no date (month 13): the whole batch takes the slow path
            fast = pa.Table.from_arrays([table["user_id"].filter(ok), table["query"].filter(ok),
                                         table["region"].filter(ok), ts], schema=arrow)
            fast_positions = pc.indices_nonzero(ok)
            slow = pc.indices_nonzero(pc.invert(ok)).to_pylist()
    return merge_checked(raws, fast, fast_positions, slow, check_search_event, SEARCH_EVENT)


def check_search_event(payload: Any) -> dict[str, Any]:
    """The canonical search event (normalised query and region, UTC ts) or ValueError with the reason.

    Lengths are checked after normalisation: what is stored is what counts.
    """
    plain = _plain_search_event(payload)
    return plain if plain is not None else _check_fully(payload)


def _check_fully(payload: Any) -> dict[str, Any]:
    """`check_search_event` for any payload, with every reason (the plain path's reference)."""
    if not isinstance(payload, dict):
        raise ValueError(f"{SEARCH_EVENT.name}: expected a JSON object, got {type(payload).__name__}")
    candidate = dict(payload)
    for name in ("query", "region", "user_id"):
        value = candidate.get(name)
        if isinstance(value, str):
            candidate[name] = normalize_query(value) if name != "user_id" else value.strip()
    row = schema.validate(SEARCH_EVENT, candidate)
    problems = []
    if not row["query"]:
        problems.append("query: empty after normalisation (whitespace only?)")
    elif (bad := _has_control(row["query"])) is not None:
        problems.append(f"query: contains the control character {bad}")
    if not row["user_id"]:
        problems.append("user_id: empty")
    if not row["region"]:
        problems.append("region: empty")
    elif row["region"] == GLOBAL:
        problems.append(f"region: {GLOBAL!r} is reserved for the all-regions trie; send the user's region or 'unknown'")
    if problems:
        raise ValueError(f"{SEARCH_EVENT.name}: " + "; ".join(problems))
    return row


def publish(bus: EventBus, rows: Iterable[dict[str, Any]]) -> int:
    """Put checked events on `search-events`, keyed by user_id (one user's events stay in order).

    The bus encodes a canonical row as its JSON form directly (timestamps as ISO-8601 with Z).
    """
    items = [(row["user_id"], row if row.keys() == _FIELDS else schema.to_json_row(SEARCH_EVENT, row)) for row in rows]
    return bus.produce_many(TOPIC, items) if items else 0


def recent_ttl_s(settings: Settings, ts: datetime, now: float) -> int:
    """Seconds a user's search stays in their recent queries: the TTL counted from the event's time,
    to the minute (so a batch needs few store calls); 0 when it has already expired."""
    age = now - ts.timestamp()
    remaining = settings.typeahead_recent_ttl_s - max(age, 0.0)
    return int(remaining // 60 * 60) if remaining >= 60 else 0


def remember_recent(store: ServingStore, settings: Settings, rows: list[dict[str, Any]],
                    now: float | None = None) -> int:
    """Upsert landed events into `user_recent_queries`, one batched write per TTL minute; idempotent,
    so a replayed batch is harmless."""
    now = time.time() if now is None else now
    by_ttl: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        ttl = recent_ttl_s(settings, row["ts"], now)
        if ttl > 0:
            # a checked search event is a recent-query row as it is (the same four fields)
            by_ttl.setdefault(ttl, []).append(row if row.keys() == _FIELDS else
                                              {"user_id": row["user_id"], "ts": row["ts"], "query": row["query"],
                                               "region": row["region"]})
    key = itemgetter("user_id", "ts", "query")  # the table's key order: the store's index pages are met in order
    with store.batch():  # one transaction for the whole batch, not one per TTL minute
        return sum(store.upsert_many(RECENT, sorted(group, key=key), ttl_s=ttl) for ttl, group in sorted(by_ttl.items()))


def remember_recent_table(store: ServingStore, settings: Settings, rows: Any, now: float | None = None) -> int:
    """`remember_recent` of checked rows as an Arrow table (`check_search_batch`): the TTLs, the key order
    and the store's writes column by column (`upsert_table`), with no Python row per event."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_rows == 0:
        return 0
    now = time.time() if now is None else now
    age = now - pc.cast(pc.cast(rows["ts"], pa.timestamp("ms", tz="UTC")), pa.int64()).to_numpy() / 1000.0
    remaining = settings.typeahead_recent_ttl_s - np.maximum(age, 0.0)  # as `recent_ttl_s`, row by row
    ttl = np.where(remaining >= 60, remaining // 60 * 60, 0).astype(np.int64)
    ordered = rows.append_column("_ttl", pa.array(ttl)).sort_by(
        [("_ttl", "ascending"), ("user_id", "ascending"), ("ts", "ascending"), ("query", "ascending")])
    written = 0
    with store.batch():  # one transaction for the whole batch
        for value in np.unique(ttl):
            if value > 0:
                part = ordered.filter(pc.equal(ordered["_ttl"], value)).drop_columns(["_ttl"])
                written += store.upsert_table(RECENT, part, ttl_s=int(value))
    return written


def land_search_events(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    lake: ArrowLake | None = None,
    store: ServingStore | None = None,
    group: str = LANDING_GROUP,
    idle_timeout_s: float = 1.0,
    max_batches: int | None = None,
    on_batch: Callable[[LandingReport], None] | None = None,
    max_records: int = LAND_BATCH,
) -> LandingReport:
    """Land every pending search event into the lake by 15-minute window; returns received/landed/rejected.

    Each batch: check every message once (bad ones to `search-events.dlq` with the reason), write
    the batch's own file in each window it touches, and only then commit the offsets. With `store`
    given, the batch's recent queries are also upserted there before the commit (one process doing
    both, as before `remember_search_events` had a group of its own; tests use it).
    """
    own_bus = bus is None
    bus = open_bus(settings) if bus is None else bus
    lake = ArrowLake(settings) if lake is None else lake
    try:
        if store is None:
            return land(bus, lake, EVENT, LAKE_TABLE, group, idle_timeout_s=idle_timeout_s, max_batches=max_batches,
                        check=check_search_event, on_batch=on_batch, max_records=max_records,
                        check_batch=check_search_batch)
        serving = store
        landed_rows: list[dict[str, Any]] = []

        def keep(row: dict[str, Any]) -> dict[str, Any]:
            landed_rows.append(row)
            return row

        def before_commit(_report: LandingReport) -> None:
            remember_recent(serving, settings, landed_rows)
            landed_rows.clear()

        return land(bus, lake, EVENT, LAKE_TABLE, group, idle_timeout_s=idle_timeout_s, max_batches=max_batches,
                    check=check_search_event, prepare=keep, on_batch=on_batch, before_commit=before_commit,
                    max_records=max_records)
    finally:
        if own_bus:
            bus.close()


@dataclass
class RecentReport:
    received: int = 0
    remembered: int = 0  # rows upserted (events older than the TTL are not)
    skipped: int = 0  # not search events; the landing dead-letters them with the reason


def remember_search_events(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    store: ServingStore | None = None,
    group: str = RECENT_GROUP,
    idle_timeout_s: float = 1.0,
    max_batches: int | None = None,
    on_batch: Callable[[RecentReport], None] | None = None,
    max_records: int = LAND_BATCH,
) -> RecentReport:
    """Upsert every pending search event into its user's recent queries, in a consumer group of its own.

    Each batch is checked like the landing checks it (what is not a search event is skipped: the
    landing's group dead-letters it, once), written in one store transaction, and only then
    committed; the upsert is idempotent, so a batch replayed after a crash is harmless.
    """
    own_bus, own_store = bus is None, store is None
    bus = open_bus(settings) if bus is None else bus
    total = RecentReport()
    try:
        store = open_store(settings) if store is None else store
        consumer = bus.consumer(TOPIC, group)
        try:
            batches = 0
            while max_batches is None or batches < max_batches:
                messages = consumer.poll(max_records=max_records, timeout_s=idle_timeout_s)
                if not messages:
                    break
                report = RecentReport(received=len(messages))
                checked = check_search_batch([m.raw for m in messages])
                report.skipped = len(checked.bad)
                report.remembered = remember_recent_table(store, settings, checked.rows)
                consumer.commit()  # only after the store has the batch
                batches += 1
                total.received += report.received
                total.remembered += report.remembered
                total.skipped += report.skipped
                if on_batch:
                    on_batch(report)
        finally:
            consumer.close()
    finally:
        if own_store and store is not None:
            store.close()
        if own_bus:
            bus.close()
    return total


def _consume_until_done(kind: str, settings: Settings, idle_timeout_s: float, produced: Any, results: Any) -> None:
    """A child process: one consumer group (`land` or `recent`) in passes until the producer is done
    and a pass that began after that found nothing (then everything published is consumed)."""
    import traceback

    consume = land_search_events if kind == "land" else remember_search_events
    total: LandingReport | RecentReport = LandingReport() if kind == "land" else RecentReport()
    try:
        while True:
            finished = produced.is_set()
            report = consume(settings, idle_timeout_s=idle_timeout_s)
            for name, value in vars(report).items():
                setattr(total, name, getattr(total, name) | value if name == "partitions" else getattr(total, name) + value)
            if finished and report.received == 0:
                break
        results.put((kind, total, None))
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        results.put((kind, None, traceback.format_exc()))


def ingest_alongside(settings: Settings, produce: Callable[[], Any] = lambda: None, *,
                     idle_timeout_s: float = 0.5) -> tuple[Any, LandingReport, RecentReport]:
    """Run `produce` (e.g. `ingest_lines` onto `search-events`) here while both consumer groups of the
    topic run in child processes at the same time, the lake's landing and the users' recent queries,
    as they run beside the producers in a deployment; returns when both have consumed everything.

    What `sixfold typeahead ingest` and the demo run: the three stages overlap on separate cores
    instead of adding up. A child's failure is raised here (its traceback in the message).
    """
    import multiprocessing
    import queue

    ctx = multiprocessing.get_context("spawn")  # no fork of a process that holds threads and open files
    produced, results = ctx.Event(), ctx.Queue()
    children = [ctx.Process(target=_consume_until_done, args=(kind, settings, idle_timeout_s, produced, results),
                            name=f"search-events-{kind}", daemon=True) for kind in ("land", "recent")]
    for child in children:
        child.start()
    try:
        try:
            out = produce()
        finally:
            produced.set()
        reports: dict[str, Any] = {}
        while len(reports) < len(children):
            try:
                kind, report, failure = results.get(timeout=1.0)
            except queue.Empty:
                if dead := [c.name for c in children if not c.is_alive() and c.exitcode]:
                    raise RuntimeError(f"search-events consumer {dead[0]} exited without a report") from None
                continue
            if failure:
                raise RuntimeError(f"search-events consumer {kind} failed:\n{failure}")
            reports[kind] = report
        return out, reports["land"], reports["recent"]
    finally:
        for child in children:
            child.join(timeout=10)
            if child.is_alive():
                child.kill()


def land_and_remember(settings: Settings, *, idle_timeout_s: float = 0.5) -> tuple[LandingReport, RecentReport]:
    """Both consumer groups of `search-events` until it is idle, at once (each in its own process)."""
    _, landed, remembered = ingest_alongside(settings, idle_timeout_s=idle_timeout_s)
    return landed, remembered


# ---- files of search events (`sixfold typeahead ingest`) -----------------------------------------
@dataclass
class IngestReport:
    read: int = 0
    published: int = 0
    rejected: int = 0


def _reject_line(bus: EventBus, line_no: int, raw: bytes, reason: str) -> None:
    # Shaped as the message it would have been, so the DLQ holds one kind of record.
    message = Message(TOPIC, 0, line_no, None, raw, int(time.time() * 1000))
    dead_letter(bus, message, f"line {line_no}: {reason}")


def ingest_lines(bus: EventBus, lines: Iterable[bytes | str]) -> IngestReport:
    """Check JSON lines with `check_search_event`; publish the good ones, dead-letter the rest."""

    report = IngestReport()
    pending: list[dict[str, Any]] = []
    for line_no, line in enumerate(lines, start=1):
        raw = line.encode() if isinstance(line, str) else line
        raw = raw.rstrip(b"\r\n")
        if not raw.strip():
            continue
        report.read += 1
        try:
            pending.append(check_search_event(decode(raw)))
        except ValueError as exc:
            _reject_line(bus, line_no, raw, str(exc))
            report.rejected += 1
        if len(pending) >= PUBLISH_CHUNK:
            report.published += publish(bus, pending)
            pending.clear()
    report.published += publish(bus, pending)
    return report


def read_lines(path: str) -> Iterator[bytes]:
    with open(path, "rb") as f:
        yield from f


def landing_work(settings: Settings, group: str, idle_s: float, _resources: Any,
                 on_batch: Callable[[LandingReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): land `search-events` in the lake."""

    def one_pass() -> dict[str, int]:
        report = land_search_events(settings, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        return {"received": report.received, "landed": report.landed, "rejected": report.rejected}

    return one_pass


def recent_work(settings: Settings, group: str, idle_s: float, resources: Any,
                on_batch: Callable[[RecentReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work: keep users' recent queries from `search-events` (one store for its life)."""
    from contextlib import closing

    store = resources.enter_context(closing(open_store(settings)))

    def one_pass() -> dict[str, int]:
        report = remember_search_events(settings, store=store, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        return {"received": report.received, "remembered": report.remembered, "skipped": report.skipped}

    return one_pass


def consumers() -> list[Any]:
    """Typeahead's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("search-events-landing", LANDING_GROUP, landing_work),
            Consumer("search-events-recent", RECENT_GROUP, recent_work)]
