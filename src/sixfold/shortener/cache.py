"""The read-through cache in front of the store, for the hot 20% of keys that get 80% of redirects.

An entry is what a redirect needs: `(long_url or None, expire_at in epoch seconds, state)`; it
carries the expiry, so a cached link still answers 410 from the instant it expires. Unknown keys
are not cached (a scan of random keys must not push the hot ones out).

* `LocalCache` (embedded): an LRU in this process (cachetools), entries kept `ttl_s` at most, so a
  delete made through another server shows here within that; this server's own deletes and
  purges drop the entry at once.
* `MemcachedCache` (cluster, the course's pick): one cache shared by every API process, so a
  delete anywhere invalidates everywhere at once. If Memcached does not answer, reads fall back
  to the store (a miss) and the failure is logged, never a failed redirect; after a few failures
  in a row its circuit breaker opens and redirects skip it (no timeout each) until a probe answers.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import orjson

from sixfold.platform.errors import ServiceUnavailable

Entry = tuple[str | None, float, str]
log = logging.getLogger("sixfold.shortener")


class LinkCache(Protocol):
    def get(self, key: str) -> Entry | None: ...
    def put(self, key: str, entry: Entry) -> None: ...
    def drop(self, key: str) -> None: ...


class NoCache:
    def get(self, key: str) -> Entry | None:
        return None

    def put(self, key: str, entry: Entry) -> None:
        pass

    def drop(self, key: str) -> None:
        pass


class LocalCache:
    def __init__(self, entries: int, ttl_s: float) -> None:
        from cachetools import TLRUCache

        # TLRU: least recently used goes first; an entry also goes at its TTL or the link's expiry
        self._entries = TLRUCache(maxsize=entries, ttu=lambda _k, v, now: now + ttl_s)
        self._lock = threading.Lock()

    def get(self, key: str) -> Entry | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: str, entry: Entry) -> None:
        with self._lock:
            self._entries[key] = entry

    def drop(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


def _memcached_failures() -> tuple[type[BaseException], ...]:
    """What the cache's guard counts as Memcached failing: socket errors and timeouts, a closed or garbled
    connection, a server error (not a refused key or value, which is this code's own mistake)."""
    from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError, MemcacheUnknownError

    return (OSError, MemcacheUnexpectedCloseError, MemcacheServerError, MemcacheUnknownError)


class MemcachedCache:
    """Every call goes through the Memcached guard (`sixfold.platform.resilience`): after a few failures in
    a row its breaker opens and redirects read the store at once instead of each waiting out the timeout."""

    PREFIX = "sixfold:url:"

    def __init__(self, host: str, port: int, ttl_s: float, timeout_s: float = 0.05, settings: Any = None) -> None:
        from pymemcache.client.base import PooledClient

        from sixfold.platform.resilience import guard

        self.ttl = max(1, int(ttl_s))
        self.where = f"{host}:{port}"
        self._client = PooledClient((host, port), connect_timeout=timeout_s, timeout=timeout_s, no_delay=True,
                                    max_pool_size=64)
        self._guard = guard("memcached", "Memcached", self.where, timeout_s=timeout_s, settings=settings,
                            failures=_memcached_failures())

    def get(self, key: str) -> Entry | None:
        try:  # a read, but not retried: a miss reads the store, sooner than a second wait on the cache
            raw = self._guard.call(self._client.get, self.PREFIX + key, idempotent=False)
        except ServiceUnavailable:  # breaker open or bulkhead full: a miss, said by the breaker's gauge
            return None
        except Exception as exc:  # noqa: BLE001 - a cache that is down is a miss
            log.warning("memcached %s: %s; reading the store", self.where, exc)
            return None
        if raw is None:
            return None
        url, expire, state = orjson.loads(raw)
        return url, expire, state

    def put(self, key: str, entry: Entry) -> None:
        try:  # not retried: a set that did not happen is a later miss, nothing worse
            self._guard.call(self._client.set, self.PREFIX + key, orjson.dumps(entry), expire=self.ttl, noreply=True,
                             idempotent=False)
        except ServiceUnavailable:
            pass
        except Exception as exc:  # noqa: BLE001
            log.warning("memcached %s: %s; not cached", self.where, exc)

    def drop(self, key: str) -> None:
        try:  # deleting twice is deleting once, and a missed delete serves a dead link until the TTL: retried
            self._guard.call(self._client.delete, self.PREFIX + key, noreply=False, idempotent=True)
        except Exception as exc:  # noqa: BLE001 - the entry still ends at its TTL
            log.warning("memcached %s: delete of %s failed (%s); it ends within %d s", self.where, key, exc, self.ttl)


def open_cache(settings) -> LinkCache:
    """Memcached when SIXFOLD_SHORTENER_MEMCACHED names one, else this process's LRU (or none at 0 entries)."""
    if settings.shortener_memcached:
        from sixfold.platform.settings import _parse_hostport

        host, port = _parse_hostport("SIXFOLD_SHORTENER_MEMCACHED", settings.shortener_memcached, 11211)
        return MemcachedCache(host, port, settings.shortener_cache_ttl_s, settings=settings)
    if settings.shortener_cache_entries <= 0:
        return NoCache()
    return LocalCache(settings.shortener_cache_entries, settings.shortener_cache_ttl_s)
