"""Land validated events from the bus into the lake, partition by partition.

A batch is polled, each message validated against its schema (bad ones go to the dead-letter
topic with the reason), merged with what its partitions already hold (duplicates from
redelivery collapse), written as whole partitions, and only then committed. A crash anywhere
before the commit replays the batch; the merge makes the replay harmless.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.records import Event, LakeTable
from sixfold.platform import schema
from sixfold.platform.bus import EventBus, Message, dead_letter
from sixfold.platform.lake import ArrowLake, partition_of, partition_span


@dataclass
class LandingReport:
    received: int = 0
    landed: int = 0
    rejected: int = 0
    partitions: set[str] = field(default_factory=set)


def _identity(record_names: tuple[str, ...], row: dict[str, Any]) -> bytes:
    return orjson.dumps([row[n] for n in record_names], option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC)


def land_batch(
    bus: EventBus,
    lake: ArrowLake,
    event: Event,
    table: LakeTable,
    messages: list[Message],
    prepare: Callable[[dict[str, Any]], dict[str, Any]] = lambda row: row,
) -> LandingReport:
    """Validate and write one polled batch; the caller commits the consumer afterwards."""
    report = LandingReport(received=len(messages))
    new: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        try:
            row = prepare(schema.validate_event(event, message.json()))
        except ValueError as exc:
            dead_letter(bus, message, str(exc))
            report.rejected += 1
            continue
        new.setdefault(partition_of(table, row[table.time_field]), []).append(row)
    names = table.record.names
    merged: list[dict[str, Any]] = []
    for partition, rows in new.items():
        start, end = partition_span(table, partition)
        existing = lake.read(table, start, end).to_pylist()
        unique = {_identity(names, r): r for r in existing}
        for r in rows:
            unique.setdefault(_identity(names, r), r)
        merged.extend(unique.values())
        report.landed += len(rows)
        report.partitions.add(partition)
    if merged:
        lake.overwrite_partitions(table, merged)
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
) -> LandingReport:
    """Consume `event.topic` until it is idle for `idle_timeout_s`, landing every batch.

    `before_commit` runs after a batch's partitions are written and before its offsets are
    committed: a further effect of the batch (e.g. a serving-store upsert) made there is
    replayed, never lost, after a crash, so it must be idempotent.
    """
    total = LandingReport()
    consumer = bus.consumer(event.topic, group)
    try:
        batches = 0
        while max_batches is None or batches < max_batches:
            messages = consumer.poll(max_records=5000, timeout_s=idle_timeout_s)
            if not messages:
                break
            report = land_batch(bus, lake, event, table, messages, prepare)
            if before_commit:
                before_commit(report)
            consumer.commit()  # only after the partitions are durable
            batches += 1
            total.received += report.received
            total.landed += report.landed
            total.rejected += report.rejected
            total.partitions |= report.partitions
            if on_batch:
                on_batch(report)
    finally:
        consumer.close()
    return total
