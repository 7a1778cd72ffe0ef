"""Click events out of the redirect path (`sixfold.platform.emitter`: buffered, published in batches).

A redirect appends `(click id, key, ts, Referer, User-Agent)` and returns; the emitter's thread
turns them into `url-clicks` events and publishes them every `flush_s`. A SIGKILL loses at most
`flush_s` of clicks (analytics; the redirects must stay fast); a clean stop publishes everything.
"""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime
from typing import Any

from schemas.records import EVENTS
from sixfold.platform.emitter import BufferedPublisher
from sixfold.shortener.clicks import host_of

EVENT = EVENTS["url-clicks"]
TOPIC = EVENT.topic
Click = tuple[str, str, float, "str | None", "str | None"]  # (click_id, key, at, referer, user agent)


def click_event(click_id: str, key: str, at: float, referer: str | None, user_agent: str | None) -> dict[str, Any]:
    ms = int(at * 1000)  # to the millisecond, as the lake keeps it (and the landing's fast path reads it)
    return {"click_id": click_id, "key": key,
            "ts": datetime.fromtimestamp(ms // 1000, UTC).replace(microsecond=ms % 1000 * 1000),
            "referrer_host": host_of(referer, bare_host=False), "user_agent": (user_agent or None) and user_agent[:512]}


def _message(click: Click) -> tuple[str, dict[str, Any]]:
    """`schema.to_json_row` of `click_event(*click)`, written out for the one record (a click a redirect)."""
    click_id, key, at, referer, user_agent = click
    ms = int(at * 1000)
    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + (f".{ms % 1000:03d}000Z" if ms % 1000 else "Z")
    return key, {"click_id": click_id, "key": key, "ts": ts, "referrer_host": host_of(referer, bare_host=False),
                 "user_agent": (user_agent or None) and user_agent[:512]}


class ClickEmitter(BufferedPublisher[Click]):
    def __init__(self, bus: Any, flush_s: float = 0.25, batch: int = 2000, max_pending: int = 1_000_000) -> None:
        super().__init__(bus, TOPIC, _message, flush_s=flush_s, batch=batch, max_pending=max_pending,
                         name="click-emitter")

    def record(self, key: str, referer: str | None, user_agent: str | None, at: float | None = None) -> None:
        # the id is made here, once: a batch published again after a failure repeats it, and landing collapses it
        self.add((secrets.token_hex(12), key, time.time() if at is None else at, referer, user_agent))
