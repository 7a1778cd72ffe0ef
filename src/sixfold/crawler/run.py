"""One crawl cycle: workers take URLs from the frontier, fetch politely, extract, dedup, land pages.

The course's service host in one process: `concurrency` asyncio workers share one `Frontier`,
so each works on one host at a time, and each host is served no sooner than its politeness
delay after its previous fetch. Per URL: robots.txt (fetched first for a new host, cached) ->
fetch -> redirect hops back through the frontier, or extract -> checksum / SimHash dedup ->
links through the trap guard into the frontier (persisted before they count as queued). Pages
are buffered and landed in the lake (`var/lake/crawl/pages/`) every `crawler_flush_pages` pages
or `crawler_flush_s` seconds; only then are their URLs marked done. Originals' bodies go to the
blob store once, by checksum (`var/blobs/crawl/`); duplicates point to their original.

Running again with the same SIXFOLD_HOME resumes: queued URLs come back from the store, pages
that landed just before a crash are reconciled from the lake, nothing landed is fetched again
until its revisit time.

Past one process (`partition=Partition(i, N)`, `sixfold crawl run --partition i/N`): N such runs
share the frontier in the store, each fetching only the hosts that hash to it; links to other
workers' hosts go to their inboxes, and each worker stops once the whole crawl is out of work
(`sixfold.crawler.partition`). Pages are landed under a file lock, so two workers' merges into one
hour partition never lose each other's rows.
"""

from __future__ import annotations

import asyncio
import fcntl
import gzip
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from w3lib.encoding import html_to_unicode

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler.dedup import DuplicateEliminator, content_sha256, simhash, to_signed
from sixfold.crawler.dns import DnsCache
from sixfold.crawler.extract import canonical_url, extract, host_of
from sixfold.crawler.fetcher import (
    FetcherRegistry,
    FetchError,
    FetchNotEnabled,
    FetchResult,
    HostUnreachable,
    default_fetchers,
)
from sixfold.crawler.frontier import (
    SEED_PRIORITY,
    Completion,
    Frontier,
    FrontierEntry,
    link_priority,
    utcnow,
)
from sixfold.crawler.partition import Partition, WorkerBoard
from sixfold.crawler.politeness import AutoThrottle, RobotsCache, politeness_delay, retry_after_s
from sixfold.crawler.ssrf import SsrfGuard
from sixfold.crawler.traps import Drop, TrapGuard
from sixfold.platform.lake import ArrowLake, partition_of, partition_span
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore, open_store

PAGES = LAKE_TABLES["crawl_pages"]
DROPS = SERVING_TABLES["crawl_drops"]
Progress = Callable[[int, int], None]  # (pages fetched this run, max pages)


@dataclass
class CrawlReport:
    cycle_id: str
    pages: int = 0  # fetches landed this run (every status, duplicates included)
    duplicates: int = 0
    exact_duplicates: int = 0
    near_duplicates: int = 0
    dropped: dict[str, int] = field(default_factory=dict)  # reason -> URLs refused this run
    errors: int = 0  # fetches with no usable response or a 4xx/5xx status
    seconds: float = 0.0
    pages_per_s: float = 0.0
    resumed: int = 0  # URLs still queued from an earlier run
    revisits: int = 0  # due revisits queued at start
    queued_left: int = 0  # URLs left queued (max pages reached, or hosts deferred)
    deferred_hosts: list[str] = field(default_factory=list)  # robots.txt stayed unreachable
    dns_lookups: int = 0
    error_samples: dict[str, str] = field(default_factory=dict)  # url -> error, the first few
    partition: str | None = None  # "i/N" of a partitioned worker
    round: int = 0  # the partitioned crawl's round this worker joined
    offered: int = 0  # links put in other workers' inboxes
    adopted: int = 0  # links taken from this worker's inbox into its frontier


class PageBlobs:
    """Bodies of original pages, gzip'd, named by their SHA-256 (stored once however often seen)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.html.gz"

    def put(self, sha256: str, body: bytes) -> None:
        target = self.path(sha256)
        if target.exists():
            return
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        scratch.write_bytes(gzip.compress(body, mtime=0))
        scratch.replace(target)

    def get(self, sha256: str) -> bytes | None:
        target = self.path(sha256)
        return gzip.decompress(target.read_bytes()) if target.exists() else None


def _row_identity(row: dict[str, Any]) -> bytes:
    return orjson.dumps([row["url"], row["fetched_at"]], option=orjson.OPT_UTC_Z)


def land_pages(lake: ArrowLake, rows: list[dict[str, Any]]) -> None:
    """Merge rows into their hour partitions (a replayed row collapses with its twin) and rewrite them,
    holding the table's landing lock: partitioned workers on one lake take turns."""
    lock_path = lake.table_dir(PAGES) / "_landing.lock"  # a leading underscore: hidden from Spark and pyarrow
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            _merge_pages(lake, rows)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _merge_pages(lake: ArrowLake, rows: list[dict[str, Any]]) -> None:
    by_partition: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_partition.setdefault(partition_of(PAGES, row["fetched_at"]), []).append(row)
    merged: list[dict[str, Any]] = []
    for partition, new in by_partition.items():
        start, end = partition_span(PAGES, partition)
        unique = {_row_identity(r): r for r in lake.read(PAGES, start, end).to_pylist()}
        for r in new:
            unique[_row_identity(r)] = r
        merged.extend(unique.values())
    if merged:
        lake.overwrite_partitions(PAGES, merged)


def page_row(entry: FrontierEntry, cycle_id: str, fetched_at: datetime, *, status: int, final_url: str | None = None,
             error: str | None = None, content_type: str | None = None, sha: str | None = None,
             fingerprint: int | None = None, title: str | None = None, description: str | None = None,
             text: str | None = None, out_links: list[str] | None = None,
             duplicate: tuple[str, str] | None = None, fetch_ms: float | None = None,
             nbytes: int | None = None) -> dict[str, Any]:
    """One `crawl_page` row."""
    return {
        "url": entry.url, "final_url": final_url or entry.url, "status": status, "fetched_at": fetched_at,
        "cycle_id": cycle_id, "depth": entry.depth, "content_type": content_type, "content_sha256": sha,
        "simhash": None if fingerprint is None else to_signed(fingerprint), "title": title,
        "description": description, "text": text, "out_links": out_links or [],
        "duplicate_of": duplicate[1] if duplicate else None, "duplicate_kind": duplicate[0] if duplicate else None,
        "error": error, "bytes": nbytes, "fetch_ms": fetch_ms,
    }


class Crawl:
    """One crawl run: the frontier, politeness, fetchers, dedup and traps wired to `concurrency` workers."""

    def __init__(self, settings: Settings, allow_hosts: list[str] | tuple[str, ...] = (), *,
                 concurrency: int | None = None, store: ServingStore | None = None,
                 fetchers: FetcherRegistry | None = None, cycle_id: str | None = None,
                 partition: Partition | None = None) -> None:
        self.settings = settings
        self.partition = partition
        self.concurrency = concurrency or settings.crawler_concurrency
        self.store = store or open_store(settings)
        self.lake = ArrowLake(settings)
        self.blobs = self.blobs_for(settings)
        self.guard = SsrfGuard([*settings.crawler_allow_hosts, *allow_hosts])
        self.dns = DnsCache(settings.crawler_dns_ttl_s)
        self.fetchers = fetchers or default_fetchers(settings, self.dns, self.guard)
        self.robots = RobotsCache(settings, store=self.store)
        self.throttle = AutoThrottle(settings)
        self.traps = TrapGuard(settings)
        self.frontier = Frontier(self.store, settings, owns=partition.owns if partition else None)
        self.dedup = DuplicateEliminator(self.store, settings.crawler_simhash_distance, shared=partition is not None)
        self.board = WorkerBoard(self.store, partition, settings.crawler_partition_poll_s) if partition else None
        self._over = partition is None  # a partitioned worker waits for its peers before it stops
        started = utcnow()
        self.cycle_id = cycle_id or f"{started:%Y%m%dT%H%M%S}.{started.microsecond // 1000:03d}Z"
        self.report = CrawlReport(self.cycle_id, partition=str(partition) if partition else None)
        self.dropped: set[str] = {row["url"] for row in self.store.scan(DROPS)}
        self.unreachable: dict[str, str] = {}  # host -> why it has no usable address
        self.deferred: set[str] = set()  # hosts whose robots.txt stayed unreachable this run
        self._rows: list[dict[str, Any]] = []
        self._done: list[Completion] = []
        self._wake = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._fetches = 0
        self._finished = 0
        self._max_pages = 0
        self._progress: Progress | None = None
        self._flushing: asyncio.Task | None = None
        self._stopping = asyncio.Event()
        self._bodies: dict[str, bytes] = {}  # sha256 -> body of originals waiting to be landed
        self.scope: set[str] | None = None if settings.crawler_external_links else set()

    @staticmethod
    def blobs_for(settings: Settings) -> PageBlobs:
        return PageBlobs(settings.blob_dir / "crawl")

    # ---- set-up ----------------------------------------------------------------------------------
    def _load_state(self) -> None:
        """The persisted frontier as the seen-set, reconciled with the lake; trap counters and scope replayed."""
        self.frontier.read()
        pending = self.frontier.queued_urls()
        if pending:  # pages landed just before a crash, whose URLs were not marked done yet
            table = self.lake.read(PAGES).select(["url", "content_sha256", "fetched_at", "status"])
            landed = {r["url"]: Completion(r["url"], r["content_sha256"], r["fetched_at"])
                      for r in sorted(table.to_pylist(), key=lambda r: r["fetched_at"])
                      if r["url"] in pending and r["status"] != 0}
            self.frontier.complete(landed.values())
        for url, row in self.frontier.rows.items():
            if row["state"] != "dropped":
                self.traps.admit(url)
            if row["priority"] == SEED_PRIORITY and self.scope is not None:
                self.scope.add(row["host"])

    def _resume(self) -> None:
        self._load_state()
        self.report.resumed, self.report.revisits = self.frontier.enqueue_pending(utcnow())

    def _seed(self, seeds: list[str]) -> None:
        entries = []
        for raw in seeds:
            url = canonical_url(raw)
            if url is None:
                raise ValueError(f"seed {raw!r} is not an http(s):// or ftp:// URL; write one absolute URL per line")
            entries.append(FrontierEntry(url, host_of(url), SEED_PRIORITY))
            if self.scope is not None:
                self.scope.add(host_of(url))
        mine = [e for e in entries if self.frontier.owns(e.host)]
        self._offer([e for e in entries if not self.frontier.owns(e.host) and not self.frontier.seen(e.url)])
        added = self.frontier.add(mine, utcnow())
        for entry in added:
            self.traps.admit(entry.url)

    # ---- partitioned: offers to and from peers ------------------------------------------------
    def _offer(self, entries: list[FrontierEntry]) -> None:
        """Links of other workers' hosts: into their inboxes (seen here from now on)."""
        if self.board is None or not entries:
            return
        self.board.offer(entries, utcnow())
        self.frontier.offered.update(e.url for e in entries)
        self.report.offered += len(entries)

    def _adopt(self, offers: list[dict[str, Any]]) -> int:
        """Offers of this worker's hosts: through the seen-set and trap guard into the frontier
        (persisted), then deleted from the inbox. Returns the URLs queued."""
        if not offers:
            return 0
        entries = [FrontierEntry(o["url"], o["host"], o["priority"], o["depth"], o["host_depth"], o.get("found_on"),
                                 list(o.get("redirect_chain") or [])) for o in offers]
        admitted = self._admit(entries, offered=True)
        assert self.board is not None
        self.board.clear(offers)
        self.report.adopted += admitted
        return admitted

    async def _inbox(self) -> None:
        """Every poll: take this worker's offers, beat, and when idle check whether the crawl is over."""
        assert self.board is not None
        poll = self.settings.crawler_partition_poll_s
        while not self._over and not self._stopping.is_set():
            try:
                offers = self.board.inbox()
                if offers:
                    self.board.took_offers()
                    self._adopt(offers)
                    self._wake.set()
                elif len(self.frontier.queue) or self.frontier.queue.busy_hosts:
                    self.board.beat("busy")
                else:
                    self.board.beat("idle")
                    if self.board.over():
                        self._over = True
                        self._wake.set()
                        return
            except BaseException:  # the workers would wait for an end nobody decides: stop them, then raise
                self._over = True
                self._max_pages = 0
                self._wake.set()
                raise
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=poll)
            except TimeoutError:
                pass

    # ---- the loop ---------------------------------------------------------------------------------
    async def run(self, seeds: list[str], max_pages: int, progress: Progress | None = None) -> CrawlReport:
        if self.board is not None:
            self.report.round = self.board.join()
        try:
            self._resume()
            if self.board is not None:  # offers left by an earlier run (any N) for this worker's hosts
                self._adopt(self.board.leftovers())
            self._seed(seeds)
            return await self._drive(max_pages, progress)
        finally:
            if self.board is not None:
                self.board.finish()

    async def _drive(self, max_pages: int, progress: Progress | None) -> CrawlReport:
        """Run the workers until the queue is empty or `max_pages` fetches were made; land everything."""
        began = time.monotonic()
        self._max_pages, self._progress = max_pages, progress
        flusher = asyncio.create_task(self._flush_every())
        inbox = asyncio.create_task(self._inbox()) if self.board is not None else None
        try:
            await asyncio.gather(*(self._worker() for _ in range(self.concurrency)))
        finally:
            self._stopping.set()  # never cancel a flush: its rows would be neither landed nor requeued
            await asyncio.gather(flusher, *([self._flushing] if self._flushing else []), *([inbox] if inbox else []),
                                 return_exceptions=True)
            await self._flush()
            await self.fetchers.aclose()
        if inbox is not None and not inbox.cancelled() and inbox.exception() is not None:
            raise inbox.exception()  # type: ignore[misc]
        self.report.seconds = time.monotonic() - began
        self.report.pages_per_s = self.report.pages / self.report.seconds if self.report.seconds else 0.0
        self.report.queued_left = len(self.frontier.queued_urls())
        self.report.dns_lookups = self.dns.lookups
        self.report.duplicates = self.report.exact_duplicates + self.report.near_duplicates
        return self.report

    async def _next(self) -> FrontierEntry | None:
        while True:
            if self._fetches >= self._max_pages:
                return None
            got = self.frontier.queue.take()
            if isinstance(got, FrontierEntry):
                return got
            if got is None and self.frontier.queue.busy_hosts == 0:
                if self._over:
                    return None
                got = self.settings.crawler_partition_poll_s  # a peer may still send links: the inbox loop wakes us
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=got)
            except TimeoutError:
                pass

    def _release(self, host: str, delay_s: float | None, requeue: FrontierEntry | None = None) -> None:
        self.frontier.queue.release(host, delay_s, requeue)
        self._wake.set()

    async def _worker(self) -> None:
        try:
            while (entry := await self._next()) is not None:
                await self._visit(entry)
        finally:
            self._wake.set()  # a worker leaving may be the last one other workers wait for

    def _delay(self, host: str) -> float:
        crawl_delay = self.robots.crawl_delay(host)
        floor = self.settings.crawler_default_delay_s if crawl_delay is None else crawl_delay
        return politeness_delay(crawl_delay, self.settings.crawler_default_delay_s, self.throttle.delay(host, floor))

    async def _visit(self, entry: FrontierEntry) -> None:
        host, scheme = entry.host, urlsplit(entry.url).scheme
        if host in self.deferred:  # URLs found after the host was deferred stay queued in the store
            self._defer(host)
            return
        if scheme in ("http", "https") and host not in self.unreachable and self.robots.needs_fetch(host):
            await self._read_robots(entry)
            return
        if scheme in ("http", "https") and host not in self.unreachable and not self.robots.allows(host, entry.url):
            if self.robots.rules[host].kind == "unreachable":
                if self.robots.gave_up(host):
                    self._defer(host)
                else:  # RFC 9309: disallow all for now, ask again later
                    self._release(host, self.settings.crawler_robots_retry_s, requeue=entry)
                return
            self._drop([(entry.url, Drop("robots", "disallowed by robots.txt"), entry.found_on)])
            self.frontier.mark_dropped(entry.url)
            self._release(host, None)
            return
        if self._fetches >= self._max_pages:  # another worker used the last fetch while this one waited
            self._release(host, None, requeue=entry)
            return
        self._fetches += 1
        started = time.monotonic()
        try:
            if host in self.unreachable:
                raise HostUnreachable(self.unreachable[host])
            result = await self.fetchers.fetch(entry.url)
        except FetchError as exc:
            if isinstance(exc, HostUnreachable):
                self.unreachable.setdefault(host, str(exc))
            network = not isinstance(exc, (FetchNotEnabled, HostUnreachable))
            if network:
                self.throttle.observe(host, time.monotonic() - started, exc.status, self._floor(host))
            self._release(host, self._delay(host) if network else None)
            self._record(entry, status=exc.status, error=str(exc), fetch_ms=(time.monotonic() - started) * 1000)
            return
        self.throttle.observe(host, result.elapsed_s, result.status, self._floor(host))
        wait = self._delay(host)
        if result.status in (429, 503):
            asked = retry_after_s(result.headers.get("retry-after"))
            if asked is not None:
                wait = max(wait, min(asked, self.settings.crawler_max_delay_s))
        self._release(host, wait)
        self._handle(entry, result)

    def _floor(self, host: str) -> float:
        crawl_delay = self.robots.crawl_delay(host)
        return self.settings.crawler_default_delay_s if crawl_delay is None else crawl_delay

    async def _read_robots(self, entry: FrontierEntry) -> None:
        """Fetch the host's robots.txt while holding the host, then put the URL back at its head."""
        host = entry.host
        url = f"{urlsplit(entry.url).scheme}://{host}/robots.txt"
        status, body = 0, None
        for _ in range(5):  # RFC 9309: follow at least five redirects
            try:
                result = await self.fetchers.fetch(url, read_any=True)
            except HostUnreachable as exc:
                self.unreachable[host] = str(exc)
                self._release(host, None, requeue=entry)
                return
            except FetchError:
                break
            status = result.status
            if result.location and 300 <= status < 400:
                url = result.location
                continue
            body = result.body.decode("utf-8", errors="replace") if result.body is not None else None
            break
        self.robots.store(host, status, body)
        self._release(host, self._delay(host), requeue=entry)

    def _defer(self, host: str) -> None:
        """robots.txt stayed unreachable: leave the host's URLs queued in the store for a later crawl."""
        self.frontier.queue.park(host)
        if host not in self.deferred:
            self.deferred.add(host)
            self.report.deferred_hosts.append(host)
        self._wake.set()

    # ---- one response -------------------------------------------------------------------------------
    def _handle(self, entry: FrontierEntry, result: FetchResult) -> None:
        ms = result.elapsed_s * 1000
        if result.location is not None and 300 <= result.status < 400:
            target = canonical_url(result.location)
            if target is None:
                self._record(entry, status=result.status, error=f"redirect to {result.location!r}, not crawlable",
                             fetch_ms=ms)
                return
            self._record(entry, status=result.status, final_url=target, fetch_ms=ms)
            self._follow_redirect(entry, target)
            return
        if result.body is None or result.status >= 400 or result.status < 200:
            self._record(entry, status=result.status, content_type=result.content_type, fetch_ms=ms,
                         nbytes=result.bytes_read)
            return
        _, text = html_to_unicode(result.content_type, result.body)
        page = extract(text, entry.url)
        sha = content_sha256(result.body)
        fingerprint = simhash(page.text)
        duplicate = self.dedup.classify(entry.url, sha, fingerprint)
        if duplicate is None:
            self._bodies[sha] = result.body  # written with the landing, off the event loop
        else:
            if duplicate[0] == "exact":
                self.report.exact_duplicates += 1
            else:
                self.report.near_duplicates += 1
        self._follow_links(entry, page.links)
        self._record(entry, status=result.status, content_type=result.content_type, sha=sha,
                     fingerprint=fingerprint, title=page.title, description=page.description,
                     text=page.text if duplicate is None else None, out_links=page.links,
                     duplicate=duplicate, fetch_ms=ms, nbytes=result.bytes_read)

    def _follow_redirect(self, entry: FrontierEntry, target: str) -> None:
        """A redirect hop goes back through the frontier (robots, delay, seen-set), loops and limits dropped."""
        drop = self.traps.check_redirect(entry.redirect_chain, entry.url, target)
        if drop is not None:
            self._drop([(target, drop, entry.url)])
            return
        same_host = host_of(target) == entry.host
        self._admit([FrontierEntry(target, host_of(target), entry.priority, entry.depth,
                                   entry.host_depth if same_host else 0, entry.url, [*entry.redirect_chain, entry.url])])

    def _follow_links(self, entry: FrontierEntry, links: list[str]) -> None:
        self._admit([FrontierEntry(link, host_of(link), link_priority(entry.depth + 1), entry.depth + 1,
                                   entry.host_depth + 1 if host_of(link) == entry.host else 0, entry.url)
                     for link in links])

    def _admit(self, candidates: list[FrontierEntry], offered: bool = False) -> int:
        """Trap-check unseen candidates, record the drops, persist and queue the rest; a partitioned
        worker offers other workers' hosts' links to them instead (their owner checks the traps; the
        scope was checked here, by the worker that found them: `offered`). Returns the URLs queued."""
        drops: list[tuple[str, Drop, str | None]] = []
        admitted: list[FrontierEntry] = []
        foreign: list[FrontierEntry] = []
        taken: set[str] = set()
        for c in candidates:
            if self.frontier.seen(c.url) or c.url in self.dropped or c.url in taken:
                continue
            mine = self.frontier.owns(c.host)
            drop = self.traps.check(c.url, c.host_depth) if mine else None
            if not offered and self.scope is not None and c.host not in self.scope:
                drop = Drop("external", f"{c.host} is not a seed's host (SIXFOLD_CRAWLER_EXTERNAL_LINKS=1 follows it)")
            if drop is not None:
                drops.append((c.url, drop, c.found_on))
                continue
            taken.add(c.url)
            if not mine:
                foreign.append(c)
                continue
            self.traps.admit(c.url)
            admitted.append(c)
        self._drop(drops)
        self._offer(foreign)
        if admitted:
            self.frontier.add(admitted, utcnow())
            self._wake.set()
        return len(admitted)

    def _drop(self, drops: list[tuple[str, Drop, str | None]]) -> None:
        rows = []
        now = utcnow()
        for url, drop, found_on in drops:
            if url in self.dropped:
                continue
            self.dropped.add(url)
            self.report.dropped[drop.reason] = self.report.dropped.get(drop.reason, 0) + 1
            rows.append({"reason": drop.reason, "url": url, "host": host_of(url), "dropped_at": now,
                         "cycle_id": self.cycle_id, "detail": drop.detail, "found_on": found_on})
        if rows:
            self.store.upsert_many(DROPS, rows)

    def _record(self, entry: FrontierEntry, *, status: int, final_url: str | None = None, error: str | None = None,
                content_type: str | None = None, sha: str | None = None, fingerprint: int | None = None,
                title: str | None = None, description: str | None = None, text: str | None = None,
                out_links: list[str] | None = None, duplicate: tuple[str, str] | None = None,
                fetch_ms: float | None = None, nbytes: int | None = None) -> None:
        fetched_at = parse_timestamp(utcnow())  # the lake's and the store's millisecond precision
        if error is not None or status >= 400 or status == 0:
            self.report.errors += 1
            if error is not None and len(self.report.error_samples) < 5:
                self.report.error_samples[entry.url] = error
        self._rows.append(page_row(
            entry, self.cycle_id, fetched_at, status=status, final_url=final_url, error=error,
            content_type=content_type, sha=sha, fingerprint=fingerprint, title=title, description=description,
            text=text, out_links=out_links, duplicate=duplicate, fetch_ms=fetch_ms, nbytes=nbytes))
        self._done.append(Completion(entry.url, sha, fetched_at, answered=status != 0))
        self._finished += 1
        if self._progress is not None:
            self._progress(self._finished, self._max_pages)
        if len(self._rows) >= self.settings.crawler_flush_pages and self._flushing is None:
            self._flushing = asyncio.get_running_loop().create_task(self._flush())
            self._flushing.add_done_callback(lambda _task: setattr(self, "_flushing", None))

    # ---- landing --------------------------------------------------------------------------------------
    async def _flush_every(self) -> None:
        while not self._stopping.is_set():
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self.settings.crawler_flush_s)
            except TimeoutError:
                await self._flush()

    def _land(self, rows: list[dict[str, Any]], bodies: dict[str, bytes]) -> None:
        for sha, body in bodies.items():
            self.blobs.put(sha, body)
        land_pages(self.lake, rows)

    async def _flush(self) -> None:
        """Land buffered pages in the lake, then (only then) mark their URLs done in the frontier."""
        async with self._flush_lock:
            rows, done, bodies = self._rows, self._done, self._bodies
            if not rows:
                return
            self._rows, self._done, self._bodies = [], [], {}
            await asyncio.to_thread(self._land, rows, bodies)
            self.frontier.complete(done)
            self.report.pages += len(rows)


def crawl(settings: Settings, seeds: list[str], max_pages: int, allow_hosts: list[str] | tuple[str, ...] = (), *,
          concurrency: int | None = None, progress: Progress | None = None,
          partition: Partition | None = None) -> CrawlReport:
    """Crawl from `seeds` until nothing is left or `max_pages` fetches were made; resumes a crawl that
    was interrupted in the same SIXFOLD_HOME. With `partition` (i of N), only the hosts that hash to
    i, until all N workers are out of work; `max_pages` is this worker's budget."""
    if max_pages < 1:
        raise ValueError("max_pages must be at least 1")
    return asyncio.run(Crawl(settings, allow_hosts, concurrency=concurrency, partition=partition)
                       .run(seeds, max_pages, progress))


def read_seeds(path: Path) -> list[str]:
    """Seed URLs from a file: one per line; blank lines and lines starting with # are skipped."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise ValueError(f"cannot read the seeds file {path}: {exc.strerror}") from None
    seeds = [line.strip() for line in lines if line.strip() and not line.strip().startswith("#")]
    if not seeds:
        raise ValueError(f"{path} has no seed URLs; write one absolute URL per line")
    return seeds

