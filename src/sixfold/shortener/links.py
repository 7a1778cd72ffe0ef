"""Short links: create (generated key or custom alias), resolve, delete, and purge the expired.

A link is one `short_urls` row keyed by its key, plus a `url_expiry` row under the UTC day it
expires, so the purge reads only days that are over. Deleting or expiring a link keeps its row as
a tombstone (state `deleted` or `expired`, no long URL): the key answers 410 from then on and can
never be issued again, as a generated key or as an alias.

Keys: generated ones come from `KeyPool` (base-58 of ids from 1e9 up, so at least six
characters); a custom alias is 4 to 32 letters, digits, `-` or `_`, and may not be a base-58
number at or above 1e9 (that range is the generator's) nor a path the server itself answers.
Claims go through `insert_if_absent` (SQLite's write lock; a Cassandra lightweight transaction),
so two requests racing for one alias cannot both win.
"""

from __future__ import annotations

import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.platform.errors import RequestError
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore
from sixfold.shortener import base58
from sixfold.shortener.cache import Entry, LinkCache, NoCache
from sixfold.shortener.keys import FIRST_ID, KeyPool

LINKS = SERVING_TABLES["short_urls"]
EXPIRY = SERVING_TABLES["url_expiry"]
MAX_URL_LENGTH = 2048
ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]{4,32}$")
KEY_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# first path segments the server answers itself, whatever routers are mounted (the API adds its own)
RESERVED = frozenset({"v1", "v2", "api", "s", "docs", "redoc", "openapi.json", "static", "feed", "typeahead",
                      "chat", "crawl", "admin", "health", "healthz", "readyz", "metrics", "favicon.ico",
                      "robots.txt", "login", "signup"})
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".home.arpa", ".localdomain")


class LinkError(RequestError):
    """A refused link operation: 4xx with the reason."""


class _Taken(Exception):
    """The key of a link being created is taken (rolls its transaction back)."""


def check_long_url(url: Any, allow_private: bool = False) -> str:
    """The URL to redirect to, made safe for a Location header (IDNA host, percent-encoded path),
    or LinkError(422) saying what is wrong with it."""
    from urllib.parse import urlsplit

    from w3lib.url import safe_url_string

    if not isinstance(url, str) or not url.strip():
        raise LinkError(422, "long_url: give the http(s) URL to shorten")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise LinkError(422, f"long_url: {len(url)} characters; at most {MAX_URL_LENGTH}")
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a port that is not a number or out of range
    except ValueError as exc:
        raise LinkError(422, f"long_url: not a URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise LinkError(422, f"long_url: scheme {parts.scheme or '(none)'!r} is not allowed; use http or https")
    if not host:
        raise LinkError(422, "long_url: no host; write it in full, e.g. https://example.com/page")
    if parts.username is not None or parts.password is not None:
        raise LinkError(422, "long_url: credentials in a URL (user@host) are refused: they disguise where it leads")
    if not allow_private:
        why = _private_host(host)
        if why:
            raise LinkError(422, f"long_url: {host} is {why}; short links lead to public hosts "
                                 "(SIXFOLD_SHORTENER_ALLOW_PRIVATE=1 allows it)")
    try:
        safe = safe_url_string(url)
    except (UnicodeError, ValueError) as exc:
        raise LinkError(422, f"long_url: the host cannot be encoded ({exc})") from None
    if len(safe) > MAX_URL_LENGTH:
        raise LinkError(422, f"long_url: {len(safe)} characters once percent-encoded; at most {MAX_URL_LENGTH}")
    return safe


def _private_host(host: str) -> str | None:
    from sixfold.crawler.ssrf import refusal_reason

    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(_LOCAL_SUFFIXES):
        return "a local name"
    try:
        address = ipaddress.ip_address(name)
    except ValueError:
        return None  # a name: where it resolves can change after creation; the clicker's browser resolves it
    why = refusal_reason(address)
    return f"a {why} address" if why else None


def check_alias(alias: Any, reserved: frozenset[str] = RESERVED) -> str:
    if not isinstance(alias, str) or not ALIAS_RE.match(alias):
        raise LinkError(422, f"custom_alias {alias!r}: use 4 to 32 letters, digits, '-' or '_'")
    if alias.lower() in reserved:
        raise LinkError(422, f"custom_alias {alias!r} is a path this server answers itself; choose another")
    if base58.is_canonical(alias) and base58.decode(alias) >= FIRST_ID:
        raise LinkError(422, f"custom_alias {alias!r} reads as a generated key (base-58 at or above 1,000,000,000); "
                             "add '-' or '_', or a character outside base-58 (0, O, I, l)")
    return alias


@dataclass(frozen=True)
class Resolution:
    status: int  # 302, 404 or 410
    long_url: str | None = None
    reason: str = ""


def _epoch(when: datetime) -> float:
    return when.timestamp()


def _day(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%d")


class Links:
    def __init__(self, store: ServingStore, settings: Settings, pool: KeyPool | None = None,
                 cache: LinkCache | None = None, clock: Callable[[], float] = time.time,
                 reserved: frozenset[str] = RESERVED) -> None:
        self.store = store
        self.settings = settings
        self._pool = pool
        self.cache = cache if cache is not None else NoCache()  # an empty LocalCache is falsy
        self.clock = clock
        self.reserved = reserved

    @property
    def pool(self) -> KeyPool:
        if self._pool is None:
            self._pool = KeyPool(self.store, block=self.settings.shortener_key_block)
        return self._pool

    # ---- create -------------------------------------------------------------------------------
    def _expiry(self, expire_at: datetime | None) -> datetime:
        now = datetime.fromtimestamp(self.clock(), UTC)
        if expire_at is None:
            return now + timedelta(days=self.settings.shortener_default_expiry_days)
        if expire_at.tzinfo is None:
            expire_at = expire_at.replace(tzinfo=UTC)
        if expire_at <= now:
            raise LinkError(422, f"expire_at {expire_at.isoformat()} is not in the future (now {now.isoformat()})")
        latest = now + timedelta(days=self.settings.shortener_max_expiry_days)
        if expire_at > latest:
            raise LinkError(422, f"expire_at {expire_at.isoformat()} is past the longest life of a link, "
                                 f"{self.settings.shortener_max_expiry_days} days ({latest.date().isoformat()})")
        return expire_at.astimezone(UTC)

    def create(self, owner_id: int, long_url: Any, custom_alias: str | None = None,
               expire_at: datetime | None = None) -> dict[str, Any]:
        """The new link's row; LinkError 422 for a bad URL, alias or expiry, 409 for a taken alias."""
        url = check_long_url(long_url, self.settings.shortener_allow_private)
        expires = self._expiry(expire_at)
        now = datetime.fromtimestamp(self.clock(), UTC)
        row = {"long_url": url, "owner_id": owner_id, "created_at": now, "expire_at": expires, "state": "active"}
        if custom_alias is not None:
            alias = check_alias(custom_alias, self.reserved)
            row |= {"key": alias, "custom": True}
            if not self._insert(row, expires):
                raise LinkError(409, f"custom_alias {alias!r} is taken; choose another (or leave it out for a "
                                     "generated key)")
            self.cache.drop(alias)
            return row
        for _ in range(5):
            key = base58.encode(self.pool.take())
            row |= {"key": key, "custom": False}
            if self._insert(row, expires):
                return row
            # never expected (counters are leased once); if the secret were replaced it could happen
        raise LinkError(503, "could not find a free generated key in 5 draws; the key generator's secret "
                             "may have changed (table shortener_secrets)")

    def _insert(self, row: dict[str, Any], expires: datetime) -> bool:
        """The link and its expiry index entry, unless its key is taken (False). One transaction on the
        embedded store (one write lock, one commit); on Cassandra the index entry goes first, so a crash
        between the two leaves an index entry the purge skips, never a link the purge cannot find."""
        try:
            with self.store.batch():
                self.store.upsert(EXPIRY, {"day": _day(expires), "key": row["key"]})
                if not self.store.insert_if_absent(LINKS, row):
                    raise _Taken  # the index entry goes too (embedded)
        except _Taken:
            return False
        return True

    def create_many(self, owner_id: int, items: Iterable[dict[str, Any]]) -> list[dict[str, Any] | LinkError]:
        out: list[dict[str, Any] | LinkError] = []
        for item in items:
            try:
                out.append(self.create(owner_id, item.get("long_url"), item.get("custom_alias"),
                                       item.get("expire_at")))
            except LinkError as exc:
                out.append(exc)
        return out

    # ---- read ---------------------------------------------------------------------------------
    def entry(self, key: str) -> Entry | None:
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        if not KEY_RE.match(key):
            return None
        row = self.store.get(LINKS, {"key": key})
        if row is None:
            return None
        entry = (row.get("long_url"), _epoch(row["expire_at"]), row["state"])
        self.cache.put(key, entry)
        return entry

    def resolve(self, key: str) -> Resolution:
        entry = self.entry(key)
        if entry is None:
            return Resolution(404, reason=f"no short link {key!r}")
        url, expires, state = entry
        if state != "active":
            return Resolution(410, reason=f"short link {key!r} was {state}")
        if self.clock() >= expires:
            return Resolution(410, reason=f"short link {key!r} expired at "
                                          f"{datetime.fromtimestamp(expires, UTC).isoformat()}")
        return Resolution(302, url)

    def owned(self, acting: int, key: str) -> dict[str, Any]:
        """The link's row when `acting` owns it; 404 unknown, 403 someone else's."""
        row = self.store.get(LINKS, {"key": key}) if KEY_RE.match(key) else None
        if row is None:
            raise LinkError(404, f"no short link {key!r}")
        if row["owner_id"] != acting:
            raise LinkError(403, f"short link {key!r} belongs to another user; only its owner's API key may "
                                 "delete it or read its stats")
        return row

    # ---- end ----------------------------------------------------------------------------------
    def _tombstone(self, row: dict[str, Any], state: str) -> None:
        self.store.upsert(LINKS, {**row, "long_url": None, "state": state})
        self.cache.drop(row["key"])

    def delete(self, acting: int, key: str) -> bool:
        """Delete the owner's link (True), or say it was already gone (False); 404 / 403 otherwise."""
        row = self.owned(acting, key)
        if row["state"] != "active":
            return False
        self._tombstone(row, "deleted")
        return True

    def purge(self, now: datetime | None = None, days_back: int = 7) -> dict[str, Any]:
        """Tombstone every link expired by `now`: the expiry index's days up to `now`'s, looked back
        `days_back` days past the last day already purged clean (the first purge looks back
        `shortener_max_expiry_days`)."""
        now = now or datetime.fromtimestamp(self.clock(), UTC)
        if now.tzinfo is None:
            now = now.replace(tzinfo=UTC)
        purged = skipped = 0
        days = []
        for back in range(self._look_back(now, days_back), -1, -1):
            day = _day(now - timedelta(days=back))
            entries = self.store.query(EXPIRY, {"day": day})
            done = 0
            for entry in entries:
                row = self.store.get(LINKS, {"key": entry["key"]})
                if row is None or row["state"] != "active" or row["expire_at"] > now:
                    if row is None or row["state"] != "active":
                        self.store.delete(EXPIRY, {"day": day, "key": entry["key"]})
                    skipped += 1
                    continue
                self._tombstone(row, "expired")
                self.store.delete(EXPIRY, {"day": day, "key": entry["key"]})
                purged += 1
                done += 1
            if entries:
                days.append({"day": day, "expired": done})
        return {"purged": purged, "kept": skipped, "days": days, "as_of": now.isoformat()}

    def _look_back(self, now: datetime, days_back: int) -> int:
        return days_back if days_back >= 0 else self.settings.shortener_max_expiry_days


def purge_expired(settings: Settings, now: datetime | None = None, days_back: int = 7) -> dict[str, Any]:
    """`sixfold shortener purge` and the url_expiry DAG: tombstone links expired by `now` (default: now)."""
    from sixfold.platform.store import open_store

    store = open_store(settings)
    try:
        return Links(store, settings).purge(now, days_back)
    finally:
        store.close()
