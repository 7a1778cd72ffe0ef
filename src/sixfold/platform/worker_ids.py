"""Sequencer worker ids leased from the serving store, so server processes never share one.

A Snowflake-style id is unique only while no two live processes use the same 10 worker bits.
`LeasedSequencer` claims a free worker id in `sequencer_workers` with the store's
`insert_if_absent` (a Cassandra lightweight transaction; SQLite's write lock) for `lease_s`,
starting from a random id. It makes ids only inside its lease: once half the lease has passed it
checks its row before the next id, renewing it while the row is still its own (or gone, then it
claims the same id again), and claiming another id if a process took this one meanwhile. So a
process that sat idle past its lease never makes an id with a worker id someone else holds.
"""

from __future__ import annotations

import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from schemas.records import SERVING_TABLES
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.ids import MAX_WORKER, Sequencer
from sixfold.platform.store import ServingStore

WORKERS = SERVING_TABLES["sequencer_workers"]
LEASE_S = 3600


class NoFreeWorker(ServiceUnavailable):
    """Every worker id is leased: the server cannot make ids (a 503, not a 500)."""


def process_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def claim_worker(store: ServingStore, owner: str, lease_s: int = LEASE_S, space: int = MAX_WORKER + 1,
                 wall: Callable[[], float] = time.time, prefer: int | None = None) -> int:
    """A worker id in 0..space-1 that no live lease holds, now leased to `owner` for `lease_s`."""
    start = random.randrange(space) if prefer is None else prefer
    for i in range(space):
        worker = (start + i) % space
        row = {"worker": worker, "owner": owner, "claimed_at": datetime.fromtimestamp(wall(), UTC)}
        if store.insert_if_absent(WORKERS, row, ttl_s=lease_s):
            return worker
    raise NoFreeWorker("id sequencer", f"table {WORKERS.name}", f"all {space} worker ids are leased",
                       f"stop a server, or wait up to {lease_s} s for the leases of stopped ones to expire")


class LeasedSequencer(Sequencer):
    """A Sequencer whose worker id is a lease in the serving store (see the module text)."""

    def __init__(self, store: ServingStore, owner: str | None = None, lease_s: int = LEASE_S,
                 wall: Callable[[], float] = time.time, space: int = MAX_WORKER + 1) -> None:
        self.store = store
        self.owner = owner or process_owner()
        self.lease_s = lease_s
        self.wall = wall
        self.space = space
        super().__init__(worker=claim_worker(store, self.owner, lease_s, space, wall),
                         clock_ms=lambda: int(wall() * 1000))
        self._check_at = wall() + lease_s / 2
        self._lease_lock = threading.Lock()

    def next_id(self) -> int:
        if self.wall() >= self._check_at:
            self._renew()
        return super().next_id()

    def _renew(self) -> None:
        with self._lease_lock:
            now = self.wall()
            if now < self._check_at:
                return
            row = self.store.get(WORKERS, {"worker": self.worker})
            stamp = datetime.fromtimestamp(now, UTC)
            if row is not None and row["owner"] == self.owner:
                self.store.upsert(WORKERS, {"worker": self.worker, "owner": self.owner, "claimed_at": stamp},
                                  ttl_s=self.lease_s)
            else:  # gone (claim it again) or somebody else's now (claim another)
                worker = claim_worker(self.store, self.owner, self.lease_s, self.space, self.wall, prefer=self.worker)
                with self._lock:
                    self.worker = worker
            self._check_at = now + self.lease_s / 2
