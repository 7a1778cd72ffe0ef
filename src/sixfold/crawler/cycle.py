"""The crawl as a batch cycle, as Apache Nutch runs it: generate -> fetch -> parse -> dedup -> update frontier.

What the `crawl_cycle` DAG's tasks call. Each stage reads what the previous one left under
`var/crawl/cycles/<cycle_id>/` and is idempotent for its cycle id, so Airflow may retry any of
them:

- generate: due URLs from the persisted frontier (seeds first admitted), best priority first, into
  `fetchlist.jsonl`; an existing fetch list is kept, so a retry fetches the same URLs.
- fetch: the fetch list with the online crawler's machinery (robots.txt, per-host delay, SSRF
  guard, DNS cache), appending one line per response to `fetched.jsonl` (bodies in the blob
  store by checksum); a retry skips what is already there. Partitioned (`i/N`, the DAG's mapped
  fetch tasks), a task fetches only the URLs of the hosts that hash to i and writes
  `fetched-i-of-N.jsonl`: each host is fetched by one task at its delay; later stages read every file.
- parse: every fetched HTML body -> title, description, text, links, SimHash (`parsed.jsonl`,
  rewritten whole).
- dedup: checksum and SimHash verdicts, pages landed in the lake (a replayed row collapses with
  its twin); a near duplicate's body leaves the blob store.
- update frontier: fetched URLs marked done with their revisit time (once: a retry sees the
  same fetch time), redirect targets and links through the trap guard into the frontier.

`sixfold crawl run` does all five per URL in one pass; this is the same work in batches.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from w3lib.encoding import html_to_unicode

from sixfold.crawler.dedup import content_sha256, simhash
from sixfold.crawler.extract import canonical_url, extract
from sixfold.crawler.fetcher import FetcherRegistry, FetchResult
from sixfold.crawler.frontier import REVISIT_PRIORITY, Completion, FrontierEntry, utcnow
from sixfold.crawler.partition import Partition, parse_partition
from sixfold.crawler.run import Crawl, land_pages, page_row, read_seeds
from sixfold.platform.processes import read_jsonl
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings


def cycle_id_for(when: datetime) -> str:
    """The cycle of a DAG run: its data interval's start, to the minute."""
    return f"{parse_timestamp(when):%Y%m%dT%H%MZ}"


def cycle_dir(settings: Settings, cycle_id: str) -> Path:
    return settings.var / "crawl" / "cycles" / cycle_id


def _read_lines(path: Path) -> list[dict[str, Any]]:
    return read_jsonl(path)  # a line cut short by a crash is skipped: that fetch is redone


def _write_lines(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write a whole file atomically (beside it, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    n = 0
    with open(scratch, "w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row, sort_keys=True) + "\n")
            n += 1
    scratch.replace(path)
    return n


def _entry(line: dict[str, Any]) -> FrontierEntry:
    return FrontierEntry(line["url"], line["host"], line["priority"], line["depth"], line["host_depth"],
                         line.get("found_on"), list(line.get("redirect_chain") or []))


def _offline(settings: Settings, cycle_id: str) -> Crawl:
    """The crawl's state without fetchers: frontier, dedup, traps, drops."""
    crawl = Crawl(settings, cycle_id=cycle_id, fetchers=FetcherRegistry([]))
    crawl._load_state()
    return crawl


# ---- generate ------------------------------------------------------------------------------------------
def generate(settings: Settings, cycle_id: str, max_pages: int, seeds: list[str] | tuple[str, ...] = ()) -> dict:
    path = cycle_dir(settings, cycle_id) / "fetchlist.jsonl"
    if path.exists():
        return {"cycle_id": cycle_id, "urls": len(_read_lines(path)), "reused": True}
    crawl = _offline(settings, cycle_id)
    crawl._seed(list(seeds))
    now = utcnow()
    due = [row for row in crawl.frontier.rows.values()
           if row["state"] == "queued" or (row["state"] == "done" and row["next_fetch_at"] <= now)]
    due.sort(key=lambda r: (r["priority"] if r["state"] == "queued" else REVISIT_PRIORITY, r["discovered_at"], r["url"]))
    chosen = [{"url": r["url"], "host": r["host"], "depth": r["depth"], "host_depth": r["host_depth"],
               "found_on": r.get("found_on"), "redirect_chain": r.get("redirect_chain") or [],
               "priority": r["priority"] if r["state"] == "queued" else REVISIT_PRIORITY} for r in due[:max_pages]]
    n = _write_lines(path, chosen)
    return {"cycle_id": cycle_id, "urls": n, "reused": False, "due": len(due)}


# ---- fetch -------------------------------------------------------------------------------------------------
class FetchStage(Crawl):
    """The online crawler's fetch loop over a fixed fetch list; responses are written, not processed."""

    def __init__(self, settings: Settings, allow_hosts: list[str] | tuple[str, ...], cycle_id: str,
                 out: TextIO) -> None:
        super().__init__(settings, allow_hosts, cycle_id=cycle_id)
        self._file = out

    async def fetch_list(self, entries: list[FrontierEntry]) -> None:
        self._load_state()
        for entry in entries:
            self.frontier.queue.push(entry)
        await self._drive(len(entries), None)

    def _write(self, entry: FrontierEntry, **fields: Any) -> None:
        line = {**asdict(entry), "fetched_at": parse_timestamp(utcnow()).isoformat(), **fields}
        line.pop("seq", None)
        self._file.write(json.dumps(line, sort_keys=True) + "\n")
        self._file.flush()

    def _handle(self, entry: FrontierEntry, result: FetchResult) -> None:
        sha = None
        if result.body is not None and 200 <= result.status < 300:
            sha = content_sha256(result.body)
            self.blobs.put(sha, result.body)
        self._write(entry, status=result.status, content_type=result.content_type, location=result.location,
                    sha256=sha, fetch_ms=result.elapsed_s * 1000, bytes=result.bytes_read, error=None)

    def _record(self, entry: FrontierEntry, *, status: int, error: str | None = None, fetch_ms: float | None = None,
                **_: Any) -> None:
        self._write(entry, status=status, content_type=None, location=None, sha256=None, fetch_ms=fetch_ms,
                    bytes=None, error=error)

    async def _flush(self) -> None:
        return None


def _fetched_lines(directory: Path) -> list[dict[str, Any]]:
    """Every fetch task's lines: `fetched.jsonl` and each partition's `fetched-i-of-N.jsonl`."""
    return [line for path in sorted(directory.glob("fetched*.jsonl")) for line in _read_lines(path)]


def fetch(settings: Settings, cycle_id: str, allow_hosts: list[str] | tuple[str, ...] = (),
          partition: Partition | None = None) -> dict:
    directory = cycle_dir(settings, cycle_id)
    listed = [_entry(line) for line in _read_lines(directory / "fetchlist.jsonl")]
    if not listed and not (directory / "fetchlist.jsonl").exists():
        raise FileNotFoundError(f"cycle {cycle_id} has no fetch list; run its generate step first")
    mine = [e for e in listed if partition is None or partition.owns(e.host)]
    done = {line["url"] for line in _fetched_lines(directory)}
    todo = [e for e in mine if e.url not in done]
    name = "fetched.jsonl" if partition is None else f"fetched-{partition.index}-of-{partition.count}.jsonl"
    with open(directory / name, "a", encoding="utf-8") as out:
        stage = FetchStage(settings, allow_hosts, cycle_id, out)
        asyncio.run(stage.fetch_list(todo))
    fetched = {line["url"] for line in _fetched_lines(directory)}
    return {"cycle_id": cycle_id, "partition": str(partition) if partition else None, "listed": len(listed),
            "mine": len(mine), "fetched": len(fetched & {e.url for e in mine}), "this_attempt": len(todo),
            "deferred_hosts": stage.report.deferred_hosts}


def _latest_fetches(directory: Path) -> list[dict[str, Any]]:
    """One line per URL (a cut-short attempt may have left an earlier one), in fetch order."""
    latest: dict[str, dict[str, Any]] = {}
    for line in sorted(_fetched_lines(directory), key=lambda line: line["fetched_at"]):
        latest[line["url"]] = line
    return sorted(latest.values(), key=lambda line: (line["fetched_at"], line["url"]))


# ---- parse ---------------------------------------------------------------------------------------------------
def parse(settings: Settings, cycle_id: str) -> dict:
    directory = cycle_dir(settings, cycle_id)
    blobs = Crawl.blobs_for(settings)
    parsed = []
    for line in _latest_fetches(directory):
        body = blobs.get(line["sha256"]) if line.get("sha256") else None
        if body is None:
            continue
        _, text = html_to_unicode(line.get("content_type"), body)
        page = extract(text, line["url"])
        fingerprint = simhash(page.text)
        parsed.append({"url": line["url"], "title": page.title, "description": page.description, "text": page.text,
                       "links": page.links, "simhash": fingerprint})
    n = _write_lines(directory / "parsed.jsonl", parsed)
    return {"cycle_id": cycle_id, "parsed": n}


# ---- dedup -----------------------------------------------------------------------------------------------------
def dedup(settings: Settings, cycle_id: str) -> dict:
    directory = cycle_dir(settings, cycle_id)
    parsed = {p["url"]: p for p in _read_lines(directory / "parsed.jsonl")}
    crawl = _offline(settings, cycle_id)
    rows, near_bodies, originals = [], set(), set()
    counts = {"exact": 0, "near": 0}
    for line in _latest_fetches(directory):
        entry, at = _entry(line), parse_timestamp(line["fetched_at"])
        p = parsed.get(line["url"])
        if p is None:
            target = canonical_url(line["location"]) if line.get("location") else None
            rows.append(page_row(entry, cycle_id, at, status=line["status"], final_url=target, error=line.get("error"),
                                 content_type=line.get("content_type"), fetch_ms=line.get("fetch_ms"),
                                 nbytes=line.get("bytes")))
            continue
        duplicate = crawl.dedup.classify(line["url"], line["sha256"], p["simhash"])
        if duplicate is None:
            originals.add(line["sha256"])
        else:
            counts[duplicate[0]] += 1
            if duplicate[0] == "near":
                near_bodies.add(line["sha256"])
        rows.append(page_row(entry, cycle_id, at, status=line["status"], content_type=line.get("content_type"),
                             sha=line["sha256"], fingerprint=p["simhash"], title=p["title"],
                             description=p["description"], text=p["text"] if duplicate is None else None,
                             out_links=p["links"], duplicate=duplicate, fetch_ms=line.get("fetch_ms"),
                             nbytes=line.get("bytes")))
    if rows:
        land_pages(crawl.lake, rows)
    for sha in near_bodies - originals:  # a near duplicate's content is the original's: not kept twice
        crawl.blobs.path(sha).unlink(missing_ok=True)
    return {"cycle_id": cycle_id, "pages": len(rows), **counts}


# ---- update frontier ---------------------------------------------------------------------------------------------
def update_frontier(settings: Settings, cycle_id: str) -> dict:
    directory = cycle_dir(settings, cycle_id)
    parsed = {p["url"]: p for p in _read_lines(directory / "parsed.jsonl")}
    crawl = _offline(settings, cycle_id)
    completions = []
    for line in _latest_fetches(directory):
        entry, at = _entry(line), parse_timestamp(line["fetched_at"])
        row = crawl.frontier.rows.get(entry.url)
        if row is not None and row.get("last_fetched_at") != at:  # a retry finds its own fetch time: skip
            completions.append(Completion(entry.url, line.get("sha256"), at, answered=line["status"] != 0))
        if line.get("location") and 300 <= line["status"] < 400:
            target = canonical_url(line["location"])
            if target is not None:
                crawl._follow_redirect(entry, target)
        elif entry.url in parsed:
            crawl._follow_links(entry, parsed[entry.url]["links"])
    crawl.frontier.complete(completions)
    return {"cycle_id": cycle_id, "completed": len(completions), "queued": len(crawl.frontier.queued_urls()),
            "dropped": crawl.report.dropped}


# ---- what the DAG's tasks call ----------------------------------------------------------------------------------
def dag_generate(data_interval_start: datetime, params: dict[str, Any]) -> dict:
    settings = Settings.from_env()
    seeds = read_seeds(Path(params["seeds_file"])) if params.get("seeds_file") else []
    return generate(settings, cycle_id_for(data_interval_start), int(params.get("max_pages", 1000)), seeds)


def dag_partitions(params: dict[str, Any]) -> list[str]:
    """The fetch tasks to map: "0/N" .. "N-1/N", N from the run's `partitions` param (0: the
    SIXFOLD_CRAWLER_PARTITIONS setting, 1 by default)."""
    n = int(params.get("partitions") or 0) or Settings.from_env().crawler_partitions
    return [str(Partition(i, n)) for i in range(n)]


def dag_fetch(data_interval_start: datetime, params: dict[str, Any], partition: str = "0/1") -> dict:
    worker = parse_partition(partition)
    return fetch(Settings.from_env(), cycle_id_for(data_interval_start), list(params.get("allow_hosts") or []),
                 worker if worker.count > 1 else None)


def dag_parse(data_interval_start: datetime) -> dict:
    return parse(Settings.from_env(), cycle_id_for(data_interval_start))


def dag_dedup(data_interval_start: datetime) -> dict:
    return dedup(Settings.from_env(), cycle_id_for(data_interval_start))


def dag_update_frontier(data_interval_start: datetime) -> dict:
    return update_frontier(Settings.from_env(), cycle_id_for(data_interval_start))
