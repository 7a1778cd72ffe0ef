"""Click events out of the redirect path: buffered in memory, published in batches by one thread.

A redirect appends `(key, ts, referrer host, user agent)` to a deque and returns; a thread puts
what gathered on the `url-clicks` topic every `flush_s` (or sooner past `batch` clicks), so the
redirect never waits on the event log. What a process holds when it is SIGKILLed (at most
`flush_s` of clicks) is lost: clicks are analytics, not data anyone wrote, and the course's
redirects must stay fast. A clean stop (`close`) publishes everything. If the log cannot take a
batch, it is kept and retried at the next flush, up to `max_pending` clicks; beyond that the
oldest are dropped and counted (`dropped`), so memory stays bounded while the log is down.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from schemas.records import EVENTS
from sixfold.platform import schema

EVENT = EVENTS["url-clicks"]
TOPIC = EVENT.topic
log = logging.getLogger("sixfold.shortener")


def referrer_host(referer: str | None) -> str | None:
    """The host of a Referer header (lower case), or None when there is none to tell."""
    if not referer:
        return None
    try:
        host = urlsplit(referer.strip()).hostname
    except ValueError:
        return None
    return host[:255] if host else None


def click_event(click_id: str, key: str, at: float, referer: str | None, user_agent: str | None) -> dict[str, Any]:
    return {"click_id": click_id, "key": key, "ts": datetime.fromtimestamp(at, UTC),
            "referrer_host": referrer_host(referer), "user_agent": (user_agent or None) and user_agent[:512]}


class ClickEmitter:
    def __init__(self, bus: Any, flush_s: float = 0.25, batch: int = 2000, max_pending: int = 1_000_000) -> None:
        self.bus = bus
        self.flush_s = flush_s
        self.batch = batch
        self.max_pending = max_pending
        self.published = 0
        self.dropped = 0
        self._pending: deque[tuple[str, str, float, str | None, str | None]] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._flush_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="click-emitter", daemon=True)
        self._thread.start()

    def record(self, key: str, referer: str | None, user_agent: str | None, at: float | None = None) -> None:
        # the id is made here, once: a batch published again after a failure repeats it, and landing collapses it
        self._pending.append((secrets.token_hex(12), key, time.time() if at is None else at, referer, user_agent))
        if len(self._pending) >= self.batch:
            self._wake.set()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.flush_s)
            self._wake.clear()
            self.flush()

    def flush(self) -> int:
        """Publish every pending click now; returns how many went out."""
        with self._flush_lock:
            sent = 0
            while self._pending:
                chunk = []
                while self._pending and len(chunk) < self.batch:
                    chunk.append(self._pending.popleft())
                items = [(c[1], schema.to_json_row(EVENT.record, click_event(*c))) for c in chunk]
                try:
                    self.bus.produce_many(TOPIC, items)
                except Exception as exc:  # noqa: BLE001 - keep them for the next flush
                    self._pending.extendleft(reversed(chunk))
                    overflow = len(self._pending) - self.max_pending
                    for _ in range(max(0, overflow)):
                        self._pending.popleft()
                        self.dropped += 1
                    log.warning("publishing %d clicks failed (%s); retrying in %.2f s", len(chunk), exc, self.flush_s)
                    break
                sent += len(chunk)
                self.published += len(chunk)
            return sent

    def close(self) -> None:
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout=10)
        self.flush()
