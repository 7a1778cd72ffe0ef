"""Sequencer worker ids leased from the serving store: distinct among live holders, reclaimed after
their lease, and never used past it. The oracle is the lease table itself and plain arithmetic."""

from __future__ import annotations

import threading

import pytest

from sixfold.platform.ids import SEQUENCE_BITS, WORKER_BITS
from sixfold.platform.store import SQLiteStore
from sixfold.platform.worker_ids import WORKERS, LeasedSequencer, NoFreeWorker, claim_worker

pytestmark = pytest.mark.unit


def worker_of(identifier: int) -> int:
    return (identifier >> SEQUENCE_BITS) & ((1 << WORKER_BITS) - 1)


def test_racing_processes_each_get_their_own_worker_id(tmp_path) -> None:
    path = tmp_path / "s.sqlite3"
    got: list[int] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8, timeout=60)

    def start(i: int) -> None:
        try:  # all eight open the new file at once: each switches it to WAL mode, or finds it switched
            store = SQLiteStore(path)  # each "process" its own connection
            barrier.wait()
            got.append(claim_worker(store, f"p{i}", space=8))
        except BaseException as exc:  # noqa: BLE001 - reported below, and the others are let go
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=start, args=(i,)) for i in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not [e for e in errors if not isinstance(e, threading.BrokenBarrierError)], errors
    assert sorted(got) == list(range(8))  # eight holders, eight ids: the whole space, each once
    with pytest.raises(NoFreeWorker, match="all 8 worker ids are leased"):
        claim_worker(SQLiteStore(path), "late", space=8)


def test_ids_carry_the_leased_worker_and_a_lapsed_lease_is_checked_before_the_next_id(tmp_path) -> None:
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])
    a = LeasedSequencer(store, owner="a", lease_s=100, wall=lambda: now[0], space=2)
    first = a.next_id()
    assert worker_of(first) == a.worker
    assert store.get(WORKERS, {"worker": a.worker})["owner"] == "a"
    now[0] += 60  # past half the lease: the next id renews it first
    a.next_id()
    now[0] += 90  # 150 s after the claim, 90 s after the renewal: still a's
    assert store.get(WORKERS, {"worker": a.worker})["owner"] == "a"
    b = LeasedSequencer(store, owner="b", lease_s=100, wall=lambda: now[0], space=2)
    assert b.worker != a.worker
    # a sits idle past its lease; c takes a's id; a's next id must use another one (here: none left)
    now[0] += 500
    b.next_id()  # b renews (its row lapsed too, nobody took it: it claims its own id again)
    c = LeasedSequencer(store, owner="c", lease_s=100, wall=lambda: now[0], space=2)
    assert c.worker == a.worker
    with pytest.raises(NoFreeWorker):
        a.next_id()
    assert len({worker_of(b.next_id()), worker_of(c.next_id())}) == 2
