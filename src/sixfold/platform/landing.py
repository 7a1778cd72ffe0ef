"""Land validated events from the bus into the lake, one file per consumed batch.

A batch is polled, each message checked against its schema (bad ones go to the dead-letter topic
with the reason), and its good rows written as the batch's own file in each lake partition they
fall into, named by where the batch came from (topic, bus partition, first offset), and only then
committed. (Files are named by the consumer group too: two groups landing one topic never
overwrite each other's.) Nothing already in the lake is read, so the cost per event stays flat however large the
window grows, and memory is bounded by the batch. A crash before the commit replays the batch from
the same offset: it rewrites the same file (the way Kafka Connect's S3 sink makes its output
exactly-once). A row redelivered in a later batch (a producer's retry) lands in another file; the
lake's readers drop exact duplicates across a partition's files, and `compact_partitions` folds a
closed partition's files into one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from schemas.records import Event, LakeTable, Record
from sixfold.platform import schema
from sixfold.platform.bus import EventBus, Message, dead_letter, decode
from sixfold.platform.lake import ArrowLake, batch_file_name, partition_of

if TYPE_CHECKING:
    import pyarrow as pa

MAX_BATCH = 5000  # messages per poll: the landing's memory bound


@dataclass
class LandingReport:
    received: int = 0
    landed: int = 0
    rejected: int = 0
    partitions: set[str] = field(default_factory=set)


def columns_of(record: Record, rows: list[dict[str, Any]]) -> pa.Table:
    """Canonical rows of `record` as an Arrow table, built column by column (no per-row dicts)."""
    import pyarrow as pa

    arrow = schema.arrow_schema(record)
    return pa.Table.from_arrays([pa.array([r[f.name] for r in rows], type=f.type) for f in arrow], schema=arrow)


class CheckedBatch(NamedTuple):
    """A batch of raw messages checked at once (a `check_batch` of `land_batch`)."""

    rows: Any  # the good events' rows, an Arrow table in the lake table's schema, in message order
    positions: Any  # each row's message position (an Arrow int64 array)
    bad: list[tuple[int, str]]  # (position, reason) of each bad message, in order


# A UTC time to the millisecond written with Z (`schema.to_json_value`'s form), which Arrow casts exactly
CANONICAL_TS = r"^[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{3}(000)?)?Z$"


def canonical_times(texts: Any, type_: Any) -> Any | None:
    """Arrow timestamps (`type_`) of strings matching `CANONICAL_TS`, or None when one is no date (month 13):
    then the caller checks its batch one message at a time, which explains."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return pc.cast(pc.cast(texts, pa.timestamp("us", tz="UTC")), pa.timestamp("ms", tz="UTC")).cast(type_)
    except pa.ArrowInvalid:
        return None


def read_string_objects(raws: list[bytes], names: Iterable[str]) -> pa.Table | None:
    """A batch of raw messages read by Arrow's JSON reader as flat objects of string (or null) fields
    `names`, a row per message; None when it cannot be read so (a message that is not JSON or spans
    lines, a number where a string belongs, a field too many, a lone-surrogate escape that orjson refuses
    and Arrow might not): then the caller checks every message of the batch one at a time."""
    import pyarrow as pa
    import pyarrow.json as pj

    buffer = b"\n".join(raws)
    if not raws or buffer.count(b"\n") != len(raws) - 1 or b"\\ud" in buffer.lower():
        return None
    try:
        table = pj.read_json(pa.py_buffer(buffer),
                             read_options=pj.ReadOptions(use_threads=False, block_size=len(buffer) + 1),
                             parse_options=pj.ParseOptions(explicit_schema=pa.schema([(n, pa.string()) for n in names]),
                                                           unexpected_field_behavior="error"))
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        return None
    return table if table.num_rows == len(raws) else None


def merge_checked(raws: list[bytes], fast: pa.Table, fast_positions: Any, slow: Iterable[int],
                  check_one: Callable[[Any], dict[str, Any]], record: Record) -> CheckedBatch:
    """A `CheckedBatch` of the rows Arrow's kernels already made (`fast`, at `fast_positions`) and of the
    messages at `slow` checked one at a time by `check_one` (the decoded message -> the row, or ValueError
    with the reason), in message order."""
    import pyarrow as pa
    import pyarrow.compute as pc

    good_positions, good_rows, bad = [], [], []
    for position in slow:
        try:
            good_rows.append(check_one(decode(raws[position])))
            good_positions.append(position)
        except ValueError as exc:
            bad.append((position, str(exc)))
    positions = pc.cast(fast_positions, pa.int64())
    if good_rows:
        both = pa.concat_tables([fast, columns_of(record, good_rows)])
        positions = pa.concat_arrays([positions, pa.array(good_positions, pa.int64())])
        order = pc.sort_indices(positions)
        fast, positions = both.take(order), positions.take(order)
    return CheckedBatch(fast, positions, bad)


def land_batch(
    bus: EventBus,
    lake: ArrowLake,
    event: Event,
    table: LakeTable,
    messages: list[Message],
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row,
    *,
    check: Callable[[Any], dict[str, Any]] | None = None,
    group: str = "",
    check_batch: Callable[[list[bytes]], CheckedBatch] | None = None,
) -> LandingReport:
    """Check and write one polled batch as its own files; the caller commits the consumer afterwards.

    `check` turns a decoded message into the event's canonical row or raises ValueError with the
    reason (default: the event record's validation); `prepare` maps it to the lake table's row.
    `check_batch` checks, and prepares, the raw messages all at once instead (`check` and `prepare` are
    then unused): a `CheckedBatch` of the lake table's rows, e.g. `typeahead.collection.check_search_batch`.
    `group`, the consumer group, is part of the files' names (see `batch_file_name`).
    """
    if check_batch is not None:
        return _land_checked_batch(bus, lake, event, table, messages, check_batch, group)
    report = LandingReport(received=len(messages))
    check = partial(schema.validate_event, event) if check is None else check
    same_record = event.record is table.record
    rows_by_source: dict[int, list[dict[str, Any]]] = {}
    first_offset: dict[int, int] = {}
    for message in messages:
        source = message.partition
        if source not in first_offset or message.offset < first_offset[source]:
            first_offset[source] = message.offset
        try:
            row = prepare(check(message.json()))
        except ValueError as exc:
            dead_letter(bus, message, str(exc))
            report.rejected += 1
            continue
        rows_by_source.setdefault(source, []).append(row if same_record else schema.validate(table.record, row))
    for source, rows in sorted(rows_by_source.items()):
        name = batch_file_name(event.topic, source, first_offset[source], group)
        report.partitions.update(lake.put_batch(table, name, columns_of(table.record, rows)))
        report.landed += len(rows)
    return report


def _land_checked_batch(bus: EventBus, lake: ArrowLake, event: Event, table: LakeTable, messages: list[Message],
                        check_batch: Callable[[list[bytes]], CheckedBatch],
                        group: str) -> LandingReport:
    """`land_batch` with the whole batch checked at once: no Python row per event."""
    import pyarrow as pa
    import pyarrow.compute as pc

    report = LandingReport(received=len(messages))
    rows, positions, bad = check_batch([m.raw for m in messages])
    for position, reason in bad:
        dead_letter(bus, messages[position], reason)
    report.rejected = len(bad)
    first_offset: dict[int, int] = {}
    for message in messages:
        if message.partition not in first_offset or message.offset < first_offset[message.partition]:
            first_offset[message.partition] = message.offset
    if len(first_offset) == 1:
        by_source = {next(iter(first_offset)): rows}
    else:  # several bus partitions in one poll (Kafka): a file per partition, as the row path writes them
        sources = pa.array([m.partition for m in messages], pa.int64()).take(positions)
        by_source = {p: rows.filter(pc.equal(sources, p)) for p in sorted(first_offset)}
    for source, part in sorted(by_source.items()):
        if part.num_rows:
            name = batch_file_name(event.topic, source, first_offset[source], group)
            report.partitions.update(lake.put_batch(table, name, part))
            report.landed += part.num_rows
    return report


def land(
    bus: EventBus,
    lake: ArrowLake,
    event: Event,
    table: LakeTable,
    group: str,
    *,
    idle_timeout_s: float = 1.0,
    max_batches: int | None = None,
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row,
    on_batch: Callable[[LandingReport], None] | None = None,
    before_commit: Callable[[LandingReport], None] | None = None,
    check: Callable[[Any], dict[str, Any]] | None = None,
    max_records: int = MAX_BATCH,
    check_batch: Callable[[list[bytes]], CheckedBatch] | None = None,
    linger_s: float = 0.0,
) -> LandingReport:
    """Consume `event.topic` until it is idle for `idle_timeout_s`, landing every batch.

    `linger_s`, after a batch smaller than `max_records`, waits that long before the next poll (Kafka's
    `fetch.max.wait.ms`): a steady stream then lands as a few large files, not a small file per poll, at
    a fraction of the fixed cost per batch (a Parquet file, a commit); what it costs is that much delay.

    `before_commit` runs after a batch's files are written and before its offsets are
    committed: a further effect of the batch (e.g. a serving-store upsert) made there is
    replayed, never lost, after a crash, so it must be idempotent.
    """
    total = LandingReport()
    consumer = bus.consumer(event.topic, group)
    try:
        batches = 0
        while max_batches is None or batches < max_batches:
            messages = consumer.poll(max_records=max_records, timeout_s=idle_timeout_s)
            if not messages:
                break
            report = land_batch(bus, lake, event, table, messages, prepare, check=check, group=group,
                                check_batch=check_batch)
            if before_commit:
                before_commit(report)
            consumer.commit()  # only after the files are durable
            batches += 1
            total.received += report.received
            total.landed += report.landed
            total.rejected += report.rejected
            total.partitions |= report.partitions
            if on_batch:
                on_batch(report)
            if linger_s and len(messages) < max_records:
                time.sleep(linger_s)
    finally:
        consumer.close()
    return total


def compact_partitions(lake: ArrowLake, table: LakeTable, partitions: Iterable[str]) -> dict[str, dict[str, int]]:
    """Compact each partition (`ArrowLake.compact`): one file each, duplicates removed; a rerun
    writes the same bytes. Returns {partition: {"files", "rows_in", "rows"}}."""
    return {p: lake.compact(table, p) for p in partitions}


def compact_closed(lake: ArrowLake, table: LakeTable, before: datetime) -> dict[str, dict[str, int]]:
    """Compact every partition that ended by `before` and still holds several files (a job reading a
    landed table folds what the landing has moved past; the open partition keeps its batch files)."""
    from sixfold.platform.lake import partition_span

    closed = [p for p in lake.partitions_between(table, None, before)
              if partition_span(table, p)[1] <= before and len(lake.data_files(table, p)) > 1]
    return compact_partitions(lake, table, closed)


def compact_window(lake: ArrowLake, table: LakeTable, start: datetime, end: datetime) -> dict[str, dict[str, int]]:
    """Compact every partition of [start, end) (a closed window: the landing has moved past it)."""
    chosen = [p for p in lake.partitions_between(table, start, end) if p != partition_of(table, end)]
    return compact_partitions(lake, table, chosen)
