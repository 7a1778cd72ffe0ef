"""Analytics events out of a request's path: buffered in memory, published in batches by one thread.

A request appends its item (cheap: a tuple, converted later) and returns; a thread puts what
gathered on the topic every `flush_s`, or sooner once `batch` items wait, so the request never
waits on the event log. What a process holds when it is SIGKILLed (at most `flush_s` of events)
is lost: these are analytics (clicks, views), not data anyone wrote, and the read paths they
count must stay fast. A clean stop (`close`) publishes everything. If the log cannot take a batch,
the batch stays for the next flush; past `max_pending` waiting items the oldest are dropped and
counted (`dropped`), so memory stays bounded while the log is down.

Each item should carry an id made when it was recorded: a batch published again after a failure
then repeats ids, and the landing or the counting collapses them.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
log = logging.getLogger("sixfold.emitter")


class BufferedPublisher(Generic[Item]):
    """`add(item)` from any thread; `to_message(item)` gives the (key, JSON value) published for it."""

    def __init__(self, bus: Any, topic: str, to_message: Callable[[Item], tuple[str | None, Any]], *,
                 flush_s: float = 0.25, batch: int = 2000, max_pending: int = 1_000_000,
                 name: str = "emitter") -> None:
        self.bus, self.topic, self.to_message = bus, topic, to_message
        self.flush_s, self.batch, self.max_pending = flush_s, batch, max_pending
        self.published = 0
        self.dropped = 0
        self._pending: deque[Item] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, item: Item) -> None:
        if len(self._pending) >= self.max_pending:
            try:
                self._pending.popleft()
                self.dropped += 1
            except IndexError:  # a flush took it meanwhile
                pass
        self._pending.append(item)
        if len(self._pending) >= self.batch:
            self._wake.set()

    def publish_or_queue(self, items: list[Item]) -> bool:
        """Publish `items` now if nothing is waiting and the log takes them (True); else queue them behind what
        waits, in order, for the thread's next flush (False). For messages that must not be lost while the log
        is down, yet should not wait `flush_s` when it is up (chat's deliveries)."""
        with self._flush_lock:  # a flush in progress publishes older items first
            if not self._pending:
                try:
                    self.bus.produce_many(self.topic, [self.to_message(item) for item in items])
                    self.published += len(items)
                    return True
                except Exception as exc:  # noqa: BLE001 - queued below, retried every flush_s
                    log.warning("publishing %d events to %s failed (%s); queued, retrying every %.2f s",
                                len(items), self.topic, exc, self.flush_s)
            for item in items:
                self.add(item)
            return False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Publish every pending item now; returns how many went out (a failed batch waits for the next flush)."""
        with self._flush_lock:
            sent = 0
            while self._pending:
                chunk = []
                while self._pending and len(chunk) < self.batch:
                    chunk.append(self._pending.popleft())
                try:
                    self.bus.produce_many(self.topic, [self.to_message(item) for item in chunk])
                except Exception as exc:  # noqa: BLE001 - keep them for the next flush
                    self._pending.extendleft(reversed(chunk))
                    for _ in range(max(0, len(self._pending) - self.max_pending)):
                        self._pending.popleft()
                        self.dropped += 1
                    log.warning("publishing %d events to %s failed (%s); retrying in %.2f s",
                                len(chunk), self.topic, exc, self.flush_s)
                    break
                sent += len(chunk)
                self.published += len(chunk)
            return sent

    def close(self, timeout_s: float = 10.0) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=timeout_s)
        self.flush()
