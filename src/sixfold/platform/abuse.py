"""Abuse limits: how often one client address and one user may sign up and write.

Counted with the `limits` library over a moving window (no burst at a window edge lets a
client through twice the rate), in process memory on the embedded profile, or in Redis when
`SIXFOLD_RATE_LIMIT_STORAGE` points at one, so several API processes share one count. A
refusal is a 429 whose `Retry-After` says when the oldest counted hit leaves the window.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from sixfold.platform.errors import RequestError, ServiceUnavailable
from sixfold.platform.settings import Settings


class AbuseLimits:
    """`signup(client)` and `write(client, user)` count a hit or raise RequestError(429)."""

    def __init__(self, settings: Settings) -> None:
        self.storage_uri = settings.rate_limit_storage
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.rate_limit_storage))
        self.rules: dict[str, list[RateLimitItem]] = {
            name: parse_many(value) if value else []
            for name, value in (("signup_per_client", settings.limit_signup_per_client),
                                ("writes_per_user", settings.limit_writes_per_user),
                                ("writes_per_client", settings.limit_writes_per_client))
        }

    def signup(self, client: str) -> None:
        self._hit("signup_per_client", client, "sign-ups from this address")

    def write(self, client: str, user: int | str) -> None:
        self._hit("writes_per_client", client, "writes from this address")
        self._hit("writes_per_user", str(user), f"writes by user {user}")

    def _hit(self, rule: str, key: str, what: str) -> None:
        for item in self.rules[rule]:
            try:
                allowed = self.limiter.hit(item, rule, key)
            except Exception as exc:  # noqa: BLE001 - e.g. Redis refused the connection
                raise ServiceUnavailable("rate-limit storage", self.storage_uri, str(exc),
                                         "start it or set SIXFOLD_RATE_LIMIT_STORAGE=memory://") from None
            if not allowed:
                reset = self.limiter.get_window_stats(item, rule, key).reset_time
                retry = max(1, math.ceil(reset - time.time()))
                raise RequestError(429, f"too many {what}: the limit is {item}; retry in {retry} s "
                                        f"(SIXFOLD_LIMIT_{rule.upper()} sets it)",
                                   headers={"Retry-After": str(retry)})
