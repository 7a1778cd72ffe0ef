"""Partitioned crawling: N worker processes share one frontier, each fetching only its own hosts.

A host belongs to partition `blake2b(hostname) mod N`: a stable hash (Python's `hash()` is salted
per process, so two workers would disagree about who owns a host). The port is left out, so every
port of one machine has one owner. A worker fetches only its hosts, so each host is still fetched
by one worker at a time at its politeness delay, and the frontier rows of a host are written by its
owner alone: no URL is fetched by two workers and no row is overwritten by a peer.

A link a worker finds on another worker's host goes to that worker's inbox (`crawl_offers`, one
partition of the table per (N, i): the course's sub-queue per worker). The owner empties its inbox
into its frontier every `crawler_partition_poll_s`, through its own seen-set and trap guard (host
budgets and query variants are counted where the host is crawled), and only then deletes the
offers, so a crash in between loses nothing: the next run takes them again.

When is a partitioned crawl over? A worker with nothing queued may still be sent links by a busy
peer. Each worker keeps a row in `crawl_workers`: state (busy, idle, done), an activity counter
bumped each time it takes offers, a heartbeat. An idle worker stops when two checks in a row, a
poll apart, see the same thing: every peer of this round idle or done with unchanged activity, and
no offers waiting for a peer that is still running (Mattern's counting idea: any work between the
two checks changes a counter or leaves an offer). A busy or idle peer whose heartbeat is older than
`stale_s` is dead: its queued URLs and offers stay in the store for the next run. Rows carry a
round, so the rows a finished earlier run left are not taken for this run's peers: a worker joins
the round of the live peers it finds, or starts the next one, and moves up to a later round a live
peer started (a peer that took it for dead while it was slow to beat).
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from schemas.records import SERVING_TABLES
from sixfold.platform.store import ServingStore

OFFERS = SERVING_TABLES["crawl_offers"]
WORKERS = SERVING_TABLES["crawl_workers"]


class PartitionError(ValueError):
    """A --partition value that names no worker; the message says what to write."""


def host_partition(host: str, count: int) -> int:
    """The partition (0..count-1) of a host ("name" or "name:port"): a stable hash of the name."""
    name = (urlsplit(f"//{host}").hostname or host).lower()
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % count


@dataclass(frozen=True)
class Partition:
    """Worker `index` of `count`: it fetches the hosts whose partition is `index`."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise PartitionError(f"partition {self.index}/{self.count}: need 0 <= i < N, e.g. 0/2 and 1/2 "
                                 f"for two workers")

    def owns(self, host: str) -> bool:
        return host_partition(host, self.count) == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_partition(text: str) -> Partition:
    """'i/N' -> Partition(i, N); anything else is a PartitionError saying what to write."""
    index, slash, count = text.strip().partition("/")
    if not slash or not index.strip().isdigit() or not count.strip().isdigit():
        raise PartitionError(f"--partition {text!r}: write i/N, worker i of N counting from 0 (e.g. 0/2, 1/2)")
    if int(count) < 1:
        raise PartitionError(f"--partition {text!r}: N must be at least 1")
    if int(index) >= int(count):
        raise PartitionError(f"--partition {text!r}: i must be below N (workers are 0..{int(count) - 1})")
    return Partition(int(index), int(count))


def _seconds(at: datetime) -> float:
    return at.timestamp()


class WorkerBoard:
    """This worker's inbox and row in `crawl_workers`, and the peers' rows: when the crawl is over."""

    def __init__(self, store: ServingStore, partition: Partition, poll_s: float,
                 wall: Callable[[], float] = time.time) -> None:
        self.store = store
        self.partition = partition
        self.wall = wall
        self.stale_s = max(15.0, 50 * poll_s)  # a loaded box stalls a worker's beats for seconds
        self.round = 0
        self.activity = 0
        self.state = "busy"
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.waiting_for: list[int] = []  # peers not (yet) in this round, for the log
        self._last_view: tuple | None = None

    # ---- this worker's row -----------------------------------------------------------------------
    def _rows(self) -> dict[int, dict[str, Any]]:
        return {r["partition"]: r for r in self.store.query(WORKERS, {"partitions": self.partition.count})}

    def _alive(self, row: dict[str, Any]) -> bool:
        return self.wall() - _seconds(row["heartbeat_at"]) < self.stale_s

    def join(self) -> int:
        """Join the round of the live peers, or start the next one; the row says busy."""
        rows = self._rows()
        live = [r["round"] for p, r in rows.items()
                if p != self.partition.index and r["state"] != "done" and self._alive(r)]
        self.round = max(live) if live else max((r["round"] for r in rows.values()), default=0) + 1
        self.beat("busy")
        return self.round

    def beat(self, state: str) -> None:
        self.state = state
        self.store.upsert(WORKERS, {"partitions": self.partition.count, "partition": self.partition.index,
                                    "round": self.round, "state": state, "activity": self.activity,
                                    "heartbeat_at": datetime.fromtimestamp(self.wall(), UTC),
                                    "worker": self.worker})

    def took_offers(self) -> None:
        """About to work on offers: a peer checking for the end sees the counter move."""
        self.activity += 1
        self._last_view = None
        self.beat("busy")

    # ---- inboxes ----------------------------------------------------------------------------------
    def inbox(self, partition: int | None = None) -> list[dict[str, Any]]:
        index = self.partition.index if partition is None else partition
        return self.store.query(OFFERS, {"partitions": self.partition.count, "partition": index})

    def offer(self, entries: Iterable[Any], now: datetime) -> int:
        """Put links of other workers' hosts in their inboxes (an offer of a URL twice is one row)."""
        rows = [{"partitions": self.partition.count, "partition": host_partition(e.host, self.partition.count),
                 "url": e.url, "host": e.host, "priority": e.priority, "depth": e.depth, "host_depth": e.host_depth,
                 "found_on": e.found_on, "redirect_chain": e.redirect_chain, "offered_by": self.partition.index,
                 "offered_at": now} for e in entries]
        return self.store.upsert_many(OFFERS, rows) if rows else 0

    def clear(self, offers: Iterable[dict[str, Any]]) -> None:
        for row in offers:
            self.store.delete(OFFERS, {"partitions": row["partitions"], "partition": row["partition"],
                                       "url": row["url"]})

    def leftovers(self) -> list[dict[str, Any]]:
        """Offers of any earlier partitioning (any N) for hosts this worker owns now."""
        return [r for r in self.store.scan(OFFERS) if self.partition.owns(r["host"])]

    # ---- the end ----------------------------------------------------------------------------------
    def _catch_up(self, rows: dict[int, dict[str, Any]]) -> None:
        """Move up to the latest round a live, unfinished peer is in. A worker slow to beat (a loaded
        box, a long start-up) can look dead to a peer joining then, which starts the next round; without
        this each would wait for the other to join its own round, forever."""
        later = [r["round"] for p, r in rows.items() if p != self.partition.index and r["round"] > self.round
                 and r["state"] != "done" and self._alive(r)]
        if later:
            self.round = max(later)
            self._last_view = None
            self.beat(self.state)

    def _view(self) -> tuple | None:
        """What an idle worker sees of the crawl: None while any peer may still work or send links."""
        count = self.partition.count
        waiting = [p for p in range(count) if self.inbox(p)]  # inboxes first, then the rows (see the docstring)
        rows = self._rows()
        self._catch_up(rows)
        view, self.waiting_for = [], []
        for p in range(count):
            row = rows.get(p)
            if row is None or row["round"] != self.round:
                self.waiting_for.append(p)
                continue
            alive = self._alive(row)
            finished = row["state"] == "done" or not alive
            if not finished and (row["state"] == "busy" or p in waiting):
                return None
            view.append((p, row["state"] if alive else "dead", row["activity"]))
        return None if self.waiting_for else tuple(view)

    def over(self) -> bool:
        """Called when this worker is idle: True once two checks in a row saw the same quiet crawl."""
        view = self._view()
        done = view is not None and view == self._last_view
        self._last_view = view
        return done

    def finish(self) -> None:
        self.beat("done")
