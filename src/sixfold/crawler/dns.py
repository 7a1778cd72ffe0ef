"""The crawler's own DNS resolver cache (the course's custom resolver): one lookup per host per TTL.

The system resolver is asked through the event loop (`getaddrinfo` in a thread); answers are
kept for `ttl_s`, and concurrent lookups of one host share a single query.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable


class ResolutionFailed(OSError):
    """A host name did not resolve."""


class DnsCache:
    def __init__(self, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self.lookups = 0  # queries that went to the system resolver
        self._answers: dict[str, tuple[float, list[str]]] = {}
        self._pending: dict[str, asyncio.Future[list[str]]] = {}

    async def resolve(self, host: str) -> list[str]:
        """The addresses of `host`, from the cache while fresh."""
        cached = self._answers.get(host)
        if cached is not None and cached[0] > self.clock():
            return cached[1]
        pending = self._pending.get(host)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._pending[host] = future
        try:
            self.lookups += 1
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                raise ResolutionFailed(f"DNS lookup of {host} failed: {exc}") from exc
            addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
            self._answers[host] = (self.clock() + self.ttl_s, addresses)
            future.set_result(addresses)
            return addresses
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved here, so an unawaited future does not warn
            raise
        finally:
            del self._pending[host]
