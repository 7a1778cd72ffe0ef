"""Typeahead shards served by several processes: the shard map, registration in it, and forwarding.

The shard map says which servers own each trie shard (a shard id names the same prefix range's
slot in every region; `shard_map.json` beside the artifact gives the ranges, this gives the
servers). The course keeps this mapping in ZooKeeper; here its source is the serving store
every process of a deployment already shares (the SQLite file on one machine, Cassandra across
machines): table `typeahead_shard_owners`, one row per (shard, server URL), written with a TTL
lease of `LEASE_S` that the server renews every `LEASE_S / 3` while it runs and deletes when it
stops cleanly. So a server that starts is found by its peers without reconfiguring them, and
one that dies (SIGKILL, a lost host) drops out when its lease runs out. A static list of peers
in a setting was the alternative; it goes stale the moment a server dies or moves.

A server learns its own URL from SIXFOLD_TYPEAHEAD_URL (`sixfold serve` sets it from --host and
--port when it is unset); one without a URL serves what it owns but is not registered. It
registers the shards it owns (SIXFOLD_TYPEAHEAD_OWNED_SHARDS, or every shard). Giving each
shard to at least two servers (e.g. three servers owning 0,1 / 1,2 / 2,0) is what makes the
replica: the map has no separate notion of primary.

A request for a shard this server does not own is forwarded (`Forwarder`) to the shard's owners
in random order (spreading the load over the replicas), with the caller's Authorization header,
so personalised answers are computed by the owner exactly as they would be here. A forward that
cannot connect, times out or gets a 5xx goes on to the next owner at once, without waiting for
the lease to expire, and that owner is tried last for `SUSPECT_S`. The owner's answer (200 or
4xx) is passed back as it is. Only when no owner answers is the reply a 503 naming the shard and
what each owner did, with Retry-After. A forwarded request carries `FORWARDED_HEADER` and is never
forwarded again: an owner that no longer owns the shard (mid-swap of a trie with other ranges,
or a stale map) answers 503 itself, so there are no loops.

The timings are constants here (as the chat registry's and the sequencer lease's are): the
lease bounds how long a dead owner stays listed, and failover does not depend on it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.platform.worker_ids import process_owner

log = logging.getLogger("sixfold.typeahead.sharding")

OWNERS = SERVING_TABLES["typeahead_shard_owners"]
LEASE_S = 15  # a dead owner's rows are gone from the map after at most this long
RENEW_S = LEASE_S / 3
MAP_CACHE_S = 1.0  # a server reads a shard's owners from the store at most this often
CONNECT_TIMEOUT_S = 0.25
FORWARD_TIMEOUT_S = 1.0  # the whole forward to one owner; then the next owner is tried
SUSPECT_S = 5.0  # an owner that just failed is tried last for this long
RETRY_AFTER_S = 2
FORWARDED_HEADER = "x-sixfold-forwarded"


class ShardMap:
    """The owners of each shard, read from the store (cached for `MAP_CACHE_S`), and this server's rows."""

    def __init__(self, store: Any, self_url: str = "", clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.self_url = self_url
        self.server = process_owner()
        self.clock = clock
        self._cache: dict[int, tuple[float, list[str]]] = {}

    def owners(self, shard: int) -> list[str]:
        """Base URLs of the servers registered for `shard`, this server excluded."""
        now = self.clock()
        cached = self._cache.get(shard)
        if cached is not None and cached[0] > now:
            return cached[1]
        rows = self.store.query(OWNERS, {"shard": shard})
        urls = [row["url"] for row in rows if row["url"] != self.self_url]
        self._cache[shard] = (now + MAP_CACHE_S, urls)
        return urls

    def register(self, owned: Iterable[int], known: Iterable[int]) -> None:
        """Lease this server's rows for the shards it owns; drop its rows for the other `known` shards
        (left by an earlier run of this server with other shards)."""
        if not self.self_url:
            return
        owned = set(owned)
        stamp = datetime.now(UTC)
        self.store.upsert_many(OWNERS, [{"shard": shard, "url": self.self_url, "server": self.server,
                                         "renewed_at": stamp} for shard in sorted(owned)], ttl_s=LEASE_S)
        for shard in sorted(set(known) - owned):
            self.store.delete(OWNERS, {"shard": shard, "url": self.self_url})

    def deregister(self, shards: Iterable[int]) -> None:
        """Remove this server's rows (a clean stop), unless another process of the same URL renewed them."""
        if not self.self_url:
            return
        for shard in shards:
            row = self.store.get(OWNERS, {"shard": shard, "url": self.self_url})
            if row is not None and row["server"] == self.server:
                self.store.delete(OWNERS, {"shard": shard, "url": self.self_url})


class Registration:
    """Keeps this server's rows in the shard map alive: once at start, then every `RENEW_S`."""

    def __init__(self, shard_map: ShardMap, shards: Callable[[], tuple[set[int], set[int]]]) -> None:
        self.shard_map = shard_map
        self.shards = shards  # () -> (owned, known)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._registered: set[int] = set()

    def renew(self) -> None:
        owned, known = self.shards()
        self.shard_map.register(owned, known)
        self._registered = owned

    def start(self) -> None:
        try:
            self.renew()
        except Exception:  # noqa: BLE001 - the store may come back; the thread keeps trying
            log.exception("typeahead shard map: registering %s failed", self.shard_map.self_url)

        def loop() -> None:
            while not self._stop.wait(RENEW_S):
                try:
                    self.renew()
                except Exception:  # noqa: BLE001
                    log.exception("typeahead shard map: renewing %s failed", self.shard_map.self_url)

        self._thread = threading.Thread(target=loop, name="typeahead-shard-lease", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        try:
            self.shard_map.deregister(self._registered)
        except Exception:  # noqa: BLE001 - the lease runs out anyway
            log.exception("typeahead shard map: deregistering %s failed", self.shard_map.self_url)


@dataclass
class Forwarded:
    """What to answer: the owner's answer as it came, or the 503 when none answered."""

    status: int
    body: bytes
    headers: dict[str, str]


class NoOwnerAnswered(Exception):
    """No owner of the shard answered; the message says what each did (a 503 with Retry-After)."""

    headers = {"Retry-After": str(RETRY_AFTER_S)}


class Forwarder:
    """Sends a suggestions request on to an owner of its shard, failing over across the replicas."""

    PASSED_ON = ("authorization", "accept-language")

    def __init__(self, shard_map: ShardMap, clock: Callable[[], float] = time.monotonic) -> None:
        self.shard_map = shard_map
        self.clock = clock
        self._suspect: dict[str, float] = {}
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _http(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:  # one client per event loop (a test may run several)
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(FORWARD_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
                                             trust_env=False, follow_redirects=False)
            self._loop = loop
        return self._client

    def order(self, owners: list[str]) -> list[str]:
        """Owners shuffled (load over the replicas), those that failed in the last `SUSPECT_S` last."""
        now = self.clock()
        shuffled = random.sample(owners, len(owners))
        return sorted(shuffled, key=lambda url: self._suspect.get(url, 0.0) > now)

    async def forward(self, shard: int, region: str, path: str, query_string: str,
                      headers: dict[str, str]) -> Forwarded:
        """The answer of the first owner of `shard` that answers; NoOwnerAnswered when none does."""
        import httpx
        from starlette.concurrency import run_in_threadpool

        owners = await run_in_threadpool(self.shard_map.owners, shard)  # a store read at most every MAP_CACHE_S
        if not owners:
            raise NoOwnerAnswered(f"no server owns shard {shard} of region {region!r}: none is registered in the "
                                  f"shard map ({OWNERS.name}); start one with SIXFOLD_TYPEAHEAD_OWNED_SHARDS "
                                  f"including {shard}, or retry after {RETRY_AFTER_S} s")
        sent = {name: value for name, value in headers.items() if name in self.PASSED_ON}
        sent[FORWARDED_HEADER] = self.shard_map.self_url or "1"
        failures = []
        for url in self.order(owners):
            try:
                answer = await self._http().get(f"{url}{path}?{query_string}" if query_string else f"{url}{path}",
                                                headers=sent)
            except httpx.TimeoutException:
                failures.append(f"{url} timed out")
            except httpx.TransportError as exc:
                failures.append(f"{url} unreachable ({type(exc).__name__})")
            else:
                if answer.status_code < 500:
                    self._suspect.pop(url, None)
                    passed = {name: answer.headers[name] for name in ("content-type", "retry-after")
                              if name in answer.headers}
                    return Forwarded(answer.status_code, answer.content, passed)
                failures.append(f"{url} answered {answer.status_code}")
            self._suspect[url] = self.clock() + SUSPECT_S
        raise NoOwnerAnswered(f"no owner of shard {shard} of region {region!r} answered: {'; '.join(failures)}; "
                              f"retry after {RETRY_AFTER_S} s")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
