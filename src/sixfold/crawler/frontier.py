"""The URL frontier: Mercator's front queues (priority) and back queues (one per host), persisted.

`FrontierQueue` is the in-memory structure. New URLs enter a front queue by priority level
(0 seeds, 1 due revisits, 2 + depth for discovered links); `take` moves them to the back queue
of their host (a heap, so a host's URLs also leave in priority order) and serves from the host
whose next-allowed time is earliest (a heap of hosts). A served host is checked out: no other
worker gets a URL of it until `release`, which sets its next-allowed time to now + its delay.
So a host is never fetched by two workers at once, nor sooner than its delay after the previous
fetch finished.

`Frontier` adds persistence in the serving store (`crawl_frontier`, one row per URL, which is
also the URL seen-set): a URL is written as `queued` before it enters the queue (write-ahead),
and marked `done` with its revisit schedule only once its page is landed in the lake. A crash
therefore loses no queued URL, and a rerun refetches only URLs whose pages never landed.
A partitioned worker (`sixfold.crawler.partition`) reads every row as its seen-set but queues,
completes and writes only the rows of its own hosts (`owns`).
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from schemas.records import SERVING_TABLES
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

FRONTIER = SERVING_TABLES["crawl_frontier"]
SEED_PRIORITY, REVISIT_PRIORITY, LINK_PRIORITY = 0, 1, 2
LEVELS = 8  # front queues; deeper links share the last one


def link_priority(depth: int) -> int:
    return LINK_PRIORITY + depth


@dataclass
class FrontierEntry:
    url: str
    host: str
    priority: int
    depth: int = 0
    host_depth: int = 0
    found_on: str | None = None
    redirect_chain: list[str] = field(default_factory=list)
    seq: int = 0  # arrival order, the tie-break within a priority


class FrontierQueue:
    """Front queues by priority, back queues by host, and a heap of host next-allowed times."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._front: list[deque[FrontierEntry]] = [deque() for _ in range(LEVELS)]
        self._back: dict[str, list[tuple[int, int, FrontierEntry]]] = {}
        self._ready: list[tuple[float, int, str]] = []  # (next allowed, tie, host) of hosts waiting to be served
        self._scheduled: set[str] = set()
        self._next_allowed: dict[str, float] = {}
        self._checked_out: set[str] = set()
        self._seq = itertools.count()
        self._tie = itertools.count()
        self._size = 0

    def __len__(self) -> int:
        """URLs queued (not counting those handed out)."""
        return self._size

    @property
    def busy_hosts(self) -> int:
        return len(self._checked_out)

    def push(self, entry: FrontierEntry) -> None:
        entry.seq = next(self._seq)
        self._front[min(entry.priority, LEVELS - 1)].append(entry)
        self._size += 1

    def _refill(self) -> None:
        for queue in self._front:  # highest priority first
            while queue:
                entry = queue.popleft()
                heapq.heappush(self._back.setdefault(entry.host, []), (entry.priority, entry.seq, entry))
                self._schedule(entry.host)

    def _schedule(self, host: str) -> None:
        if host not in self._scheduled and host not in self._checked_out and self._back.get(host):
            self._scheduled.add(host)
            heapq.heappush(self._ready, (self._next_allowed.get(host, 0.0), next(self._tie), host))

    def take(self) -> FrontierEntry | float | None:
        """A URL whose host may be fetched now (the host is checked out), else seconds until one may,
        else None when nothing is queued outside checked-out hosts."""
        self._refill()
        if not self._ready:
            return None
        allowed, _, host = self._ready[0]
        wait = allowed - self.clock()
        if wait > 0:
            return wait
        heapq.heappop(self._ready)
        self._scheduled.discard(host)
        _, _, entry = heapq.heappop(self._back[host])
        if not self._back[host]:
            del self._back[host]
        self._checked_out.add(host)
        self._size -= 1
        return entry

    def release(self, host: str, delay_s: float | None, requeue: FrontierEntry | None = None) -> None:
        """The worker is done with `host`: it may be served again `delay_s` from now (None: no request
        was made, the earlier next-allowed time stands). `requeue` puts a handed-out URL back at the
        head of its host (e.g. after fetching robots.txt first)."""
        self._checked_out.discard(host)
        if delay_s is not None:
            self._next_allowed[host] = self.clock() + delay_s
        if requeue is not None:
            heapq.heappush(self._back.setdefault(host, []), (requeue.priority, requeue.seq, requeue))
            self._size += 1
        self._schedule(host)

    def park(self, host: str) -> list[FrontierEntry]:
        """Remove a host's queued URLs (deferred to a later crawl); returns them."""
        self._refill()
        self._checked_out.discard(host)
        entries = [e for _, _, e in self._back.pop(host, [])]
        self._size -= len(entries)
        if host in self._scheduled:
            self._scheduled.discard(host)
            self._ready = [item for item in self._ready if item[2] != host]
            heapq.heapify(self._ready)
        return entries


def next_interval(interval_s: float, changed: bool, settings: Settings) -> float:
    """Revisit sooner when a page changed, later when it did not (halve / grow by half), clamped."""
    factor = 0.5 if changed else 1.5
    return min(max(interval_s * factor, settings.crawler_revisit_min_s), settings.crawler_revisit_max_s)


@dataclass
class Completion:
    """What the frontier keeps about a fetched URL once its page is landed."""

    url: str
    content_sha256: str | None
    fetched_at: datetime
    answered: bool = True  # False: no response at all (refused address, DNS, timeout): stays queued


class Frontier:
    """The persisted frontier: queue + seen-set + revisit schedule in the serving store."""

    def __init__(self, store: ServingStore, settings: Settings,
                 clock: Callable[[], float] = time.monotonic, owns: Callable[[str], bool] | None = None) -> None:
        self.store = store
        self.settings = settings
        self.queue = FrontierQueue(clock)
        self.rows: dict[str, dict] = {}  # url -> persisted row (the seen-set)
        self.owns = owns or (lambda _host: True)  # a partitioned worker queues only its own hosts' URLs
        self.offered: set[str] = set()  # URLs put in another worker's inbox by this one (seen too)

    def read(self) -> None:
        """Read the persisted rows (the seen-set), without queueing anything yet."""
        self.rows = {row["url"]: row for row in self.store.scan(FRONTIER)}

    def enqueue_pending(self, now: datetime) -> tuple[int, int]:
        """Queue the persisted URLs still queued and the revisits due by `now`. Returns (queued, revisits)."""
        queued = revisits = 0
        for row in sorted(self.rows.values(), key=lambda r: (r["priority"], r["discovered_at"], r["url"])):
            if not self.owns(row["host"]):
                continue
            if row["state"] == "queued":
                queued += 1
            elif row["state"] == "done" and row["next_fetch_at"] <= now:
                revisits += 1
            else:
                continue
            priority = row["priority"] if row["state"] == "queued" else REVISIT_PRIORITY
            self.queue.push(FrontierEntry(row["url"], row["host"], priority, row["depth"], row["host_depth"],
                                          row.get("found_on"), list(row.get("redirect_chain") or [])))
        return queued, revisits

    def seen(self, url: str) -> bool:
        return url in self.rows or url in self.offered

    def add(self, entries: Iterable[FrontierEntry], now: datetime) -> list[FrontierEntry]:
        """Persist unseen entries as queued, then queue them (write-ahead). Returns those added."""
        fresh: dict[str, FrontierEntry] = {}
        for entry in entries:
            if entry.url not in self.rows and entry.url not in fresh:
                fresh[entry.url] = entry
        rows = [{
            "url": e.url, "host": e.host, "state": "queued", "priority": e.priority, "depth": e.depth,
            "host_depth": e.host_depth, "discovered_at": now, "next_fetch_at": now,
            "interval_s": self.settings.crawler_revisit_s, "fetch_count": 0, "change_count": 0,
            "found_on": e.found_on, "redirect_chain": e.redirect_chain,
        } for e in fresh.values()]
        if rows:
            self.store.upsert_many(FRONTIER, rows)
        for row, entry in zip(rows, fresh.values()):
            self.rows[entry.url] = row
            self.queue.push(entry)
        return list(fresh.values())

    def mark_dropped(self, url: str) -> None:
        row = self.rows.get(url)
        if row is not None and row["state"] != "dropped":
            row = {**row, "state": "dropped"}
            self.rows[url] = row
            self.store.upsert(FRONTIER, row)

    def complete(self, done: Iterable[Completion]) -> None:
        """Pages are landed: mark their URLs done and schedule the next visit from the change seen. A URL
        that got no response stays queued, so the next run tries it again (e.g. with a wider allow-list)."""
        updates = []
        for c in done:
            if not c.answered:
                continue
            row = dict(self.rows[c.url])
            fetches = row["fetch_count"] + 1
            previous = row.get("content_sha256")
            changed = fetches > 1 and previous != c.content_sha256
            interval = row["interval_s"] if fetches == 1 else next_interval(row["interval_s"], changed, self.settings)
            row.update(state="done", fetch_count=fetches, change_count=row["change_count"] + int(changed),
                       last_fetched_at=c.fetched_at, content_sha256=c.content_sha256, interval_s=interval,
                       next_fetch_at=c.fetched_at + timedelta(seconds=interval))
            self.rows[c.url] = row
            updates.append(row)
        if updates:
            self.store.upsert_many(FRONTIER, updates)

    def queued_urls(self) -> set[str]:
        """This worker's queued URLs (a partitioned worker's: its own hosts' only)."""
        return {url for url, row in self.rows.items() if row["state"] == "queued" and self.owns(row["host"])}


def utcnow() -> datetime:
    return datetime.now(UTC)
