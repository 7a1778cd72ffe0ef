"""Per-API-key quotas with the course's fixed-window counter.

Time is cut into windows aligned to the clock (each minute starts at :00); a key may make `limit`
requests in a window and its count starts again at the next one. One counter per key and window
is all it stores, which is why the course picks it; the price is the edge: a client can spend a
whole window's quota in its last second and the next window's in the first, twice the rate over
those two seconds. A sliding window (the platform's abuse limits use `limits`' moving window) is
fairer when that burst matters, at a counter per request or two windows per check.

Counts live in this process (`memory://`) or in Redis (`redis://`, shared by every API process:
INCRBY and EXPIREAT in one transaction), the same storage setting as the abuse limits.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sixfold.platform.errors import RequestError

UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86_400}
_RATE = re.compile(r"^\s*(\d+)\s*(?:/|per)\s*(second|minute|hour|day)s?\s*$")


@dataclass(frozen=True)
class Window:
    limit: int
    seconds: int

    def __str__(self) -> str:
        unit = next(name for name, s in UNITS.items() if s == self.seconds)
        return f"{self.limit}/{unit}"


def parse_windows(text: str) -> tuple[Window, ...]:
    """`"100/minute;10000/day"` -> windows; an empty string means no quota."""
    windows = []
    for part in filter(str.strip, text.split(";")):
        match = _RATE.match(part)
        if match is None or int(match.group(1)) <= 0:
            raise ValueError(f"{part.strip()!r} is not a quota; write N/second|minute|hour|day, several joined by ';'")
        windows.append(Window(int(match.group(1)), UNITS[match.group(2)]))
    return tuple(windows)


class QuotaExceeded(RequestError):
    def __init__(self, window: Window, retry_after_s: int) -> None:
        super().__init__(429, f"this API key made its {window} requests (SIXFOLD_SHORTENER_LIMIT_PER_KEY); "
                              f"the window starts again in {retry_after_s} s",
                         headers={"Retry-After": str(retry_after_s)})


class FixedWindowQuota:
    """`hit(api_key_id, cost)` counts `cost` requests in every window, or raises QuotaExceeded (429)."""

    def __init__(self, windows: tuple[Window, ...] | str, storage: str = "memory://",
                 clock: Callable[[], float] = time.time) -> None:
        self.windows = parse_windows(windows) if isinstance(windows, str) else windows
        self.clock = clock
        self._lock = threading.Lock()
        self._counts: dict[tuple[str, int, int], int] = {}
        self._redis = None
        if storage.startswith(("redis://", "rediss://")):
            import redis

            self._redis = redis.Redis.from_url(storage)

    def hit(self, who: str, cost: int = 1) -> None:
        if not self.windows:
            return
        now = self.clock()
        starts = [int(now // w.seconds) * w.seconds for w in self.windows]
        counts = self._add(who, starts, cost)
        for window, start, count in zip(self.windows, starts, counts, strict=True):
            if count > window.limit:
                self._add(who, starts, -cost)  # a refused request spends nothing
                raise QuotaExceeded(window, max(1, math.ceil(start + window.seconds - now)))

    def _add(self, who: str, starts: list[int], delta: int) -> list[int]:
        keys = [(who, w.seconds, start) for w, start in zip(self.windows, starts, strict=True)]
        if self._redis is not None:
            pipe = self._redis.pipeline(transaction=True)
            for (_, seconds, start), name in zip(keys, self._names(keys), strict=True):
                pipe.incrby(name, delta)
                pipe.expireat(name, start + seconds + 1)
            return [int(v) for v in pipe.execute()[::2]]
        with self._lock:
            if len(self._counts) > 100_000:  # forget windows that are over
                now = self.clock()
                self._counts = {k: v for k, v in self._counts.items() if k[2] + k[1] > now}
            out = []
            for k in keys:
                self._counts[k] = self._counts.get(k, 0) + delta
                out.append(self._counts[k])
            return out

    @staticmethod
    def _names(keys: list[tuple[str, int, int]]) -> list[str]:
        return [f"sixfold:quota:{who}:{seconds}:{start}" for who, seconds, start in keys]
