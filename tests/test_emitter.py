"""The buffered publisher behind click and view events: nothing lost on a clean stop or a failing log,
memory bounded while the log is down, the items' own ids repeated (never new ones) on a retry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sixfold.platform.bus import SpoolBus
from sixfold.platform.emitter import BufferedPublisher
from sixfold.shortener.clicks import host_of, referrer_host

pytestmark = pytest.mark.unit


class FlakyBus:
    """A real spool bus that refuses the first `failures` batches (as a log that is down would)."""

    def __init__(self, root: Path, failures: int) -> None:
        self.bus, self.failures = SpoolBus(root), failures

    def produce_many(self, topic: str, items: Any) -> int:
        if self.failures > 0:
            self.failures -= 1
            raise ConnectionError("log down")
        return self.bus.produce_many(topic, items)


def published(root: Path, topic: str) -> list[int]:
    consumer = SpoolBus(root).consumer(topic, "reader")
    return [m.json()["n"] for m in consumer.poll(max_records=100_000, timeout_s=0.2)]


def test_a_clean_stop_publishes_every_item_once_in_order(tmp_path: Path) -> None:
    bus = SpoolBus(tmp_path)
    emitter = BufferedPublisher(bus, "t", lambda n: (None, {"n": n}), flush_s=60, batch=7)
    for n in range(100):
        emitter.add(n)
    emitter.close()
    assert published(tmp_path, "t") == list(range(100))
    assert (emitter.published, emitter.dropped) == (100, 0)


def test_a_failed_batch_waits_for_the_next_flush_and_goes_out_once(tmp_path: Path) -> None:
    flaky = FlakyBus(tmp_path, failures=2)
    emitter = BufferedPublisher(flaky, "t", lambda n: (None, {"n": n}), flush_s=60, batch=100)  # no early wake
    for n in range(25):
        emitter.add(n)
    assert emitter.flush() == 0 and emitter.flush() == 0  # the log is down: all kept
    assert emitter.flush() == 25
    emitter.close()
    assert published(tmp_path, "t") == list(range(25))


def test_publish_or_queue_goes_out_at_once_or_in_order_behind_what_waits(tmp_path: Path) -> None:
    flaky = FlakyBus(tmp_path, failures=2)
    emitter = BufferedPublisher(flaky, "t", lambda n: (None, {"n": n}), flush_s=60, batch=100)
    assert emitter.publish_or_queue([0, 1]) is False  # the log refused: queued
    assert emitter.publish_or_queue([2]) is False  # something waits: behind it, not tried (no failure used)
    assert emitter.flush() == 0 and emitter.pending == 3  # the second failure
    assert emitter.publish_or_queue([3]) is False and emitter.flush() == 4
    assert emitter.publish_or_queue([4, 5]) is True and emitter.pending == 0  # nothing waits: at once
    emitter.close()
    assert published(tmp_path, "t") == [0, 1, 2, 3, 4, 5]


def test_memory_stays_bounded_while_the_log_is_down_and_the_oldest_are_dropped(tmp_path: Path) -> None:
    flaky = FlakyBus(tmp_path, failures=1)
    emitter = BufferedPublisher(flaky, "t", lambda n: (None, {"n": n}), flush_s=60, batch=1000, max_pending=50)
    for n in range(80):
        emitter.add(n)
    assert emitter.dropped == 30 and emitter.flush() == 0  # the failure keeps the 50 newest
    emitter.close()
    assert published(tmp_path, "t") == list(range(30, 80))


@pytest.mark.parametrize("referrer, host", [
    (None, None), ("", None), ("https://News.Example.org/a?b=c", "news.example.org"),
    ("news.example.org", "news.example.org"), ("t.co.:443", "t.co"), ("http://[::1", "http://[::1"),
])
def test_one_host_rule_for_the_event_and_the_lake(referrer: str | None, host: str | None) -> None:
    assert host_of(referrer) == host
    assert referrer_host(referrer) == (host or "(direct)")
