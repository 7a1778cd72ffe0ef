"""Contract of the serving store, run against SQLite and against a real Cassandra server."""

from __future__ import annotations

import itertools
import os
import signal
import time
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import Field, Record, ServingTable
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.store import CassandraStore, SQLiteStore

ITEM = Record(
    "contract_item",
    (
        Field("owner", "string"),
        Field("made_at", "timestamp"),
        Field("seq", "long"),
        Field("title", "string", required=False),
        Field("score", "double", required=False),
        Field("flag", "bool", required=False),
        Field("tags", "list<string>", required=False),
        Field("blob", "bytes", required=False),
        Field("small", "int", required=False),
    ),
)
_names = itertools.count()
T0 = datetime(2026, 11, 26, 12, 0, 0, 123000, tzinfo=timezone.utc)


def new_table(descending: bool = True) -> ServingTable:
    return ServingTable(f"contract_item_{os.getpid()}_{next(_names)}", ITEM, partition_key=("owner",),
                        clustering_key=("made_at", "seq"), clustering_descending=descending)


def row(owner: str, i: int, **extra) -> dict:
    base = {"owner": owner, "made_at": T0 + timedelta(seconds=i), "seq": i, "title": f"t{i}", "score": i / 2,
            "flag": i % 2 == 0, "tags": [f"x{i}", "y"], "blob": bytes([i % 256]) * 3, "small": i}
    base.update(extra)
    return base


@pytest.fixture(scope="module", params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
def store(request, tmp_path_factory):
    if request.param == "sqlite":
        s = SQLiteStore(tmp_path_factory.mktemp("store") / "store.sqlite3")
    else:
        import dataclasses

        settings = request.getfixturevalue("services_running")
        s = CassandraStore(dataclasses.replace(settings, cassandra_keyspace="sixfold_contract"))
    yield s
    s.close()


def test_upsert_then_get_returns_the_row(store):
    t = new_table()
    r = row("ann", 1)
    store.upsert(t, r)
    assert store.get(t, {"owner": "ann", "made_at": r["made_at"], "seq": 1}) == r
    assert store.get(t, {"owner": "ann", "made_at": r["made_at"], "seq": 2}) is None


def test_upsert_is_idempotent_and_last_write_wins(store):
    t = new_table()
    r = row("bob", 3)
    store.upsert(t, r)
    store.upsert(t, r)
    assert store.query(t, {"owner": "bob"}) == [r]
    changed = dict(r, title="new", tags=[])
    store.upsert(t, changed)
    assert store.query(t, {"owner": "bob"}) == [changed]


def test_optional_columns_may_be_null_and_lists_read_back_empty(store):
    t = new_table()
    r = {"owner": "cy", "made_at": T0, "seq": 0}
    store.upsert(t, r)
    got = store.get(t, {"owner": "cy", "made_at": T0, "seq": 0})
    assert got == {**r, "title": None, "score": None, "flag": None, "tags": [], "blob": None, "small": None}


@pytest.mark.parametrize("descending", [True, False])
def test_query_returns_partition_in_clustering_order_with_limit(store, descending):
    t = new_table(descending)
    rows = [row("dee", i) for i in (5, 1, 9, 3)] + [row("eve", 7)]
    store.upsert_many(t, rows)
    expected = sorted((r for r in rows if r["owner"] == "dee"), key=lambda r: (r["made_at"], r["seq"]), reverse=descending)
    assert store.query(t, {"owner": "dee"}) == expected
    assert store.query(t, {"owner": "dee"}, limit=2) == expected[:2]
    assert store.query(t, {"owner": "nobody"}) == []


def test_delete_by_full_key_and_by_partition(store):
    t = new_table()
    rows = [row("fay", i) for i in range(4)]
    store.upsert_many(t, rows)
    store.delete(t, {"owner": "fay", "made_at": rows[1]["made_at"], "seq": 1})
    assert [r["seq"] for r in store.query(t, {"owner": "fay"})] == [3, 2, 0]
    store.delete(t, {"owner": "fay"})
    assert store.query(t, {"owner": "fay"}) == []


def test_ttl_rows_expire_and_others_stay(store):
    t = new_table()
    short, lasting = row("gus", 1), row("gus", 2)
    written = time.monotonic()
    store.upsert(t, short, ttl_s=4)
    store.upsert(t, lasting)
    first_read = {r["seq"] for r in store.query(t, {"owner": "gus"})}
    if time.monotonic() - written < 3.5:  # a loaded box may take seconds to get here
        assert first_read == {1, 2}
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and len(store.query(t, {"owner": "gus"})) > 1:
        time.sleep(0.25)
    assert store.query(t, {"owner": "gus"}) == [lasting]


def test_rewrite_without_ttl_keeps_the_row(store):
    t = new_table()
    r = row("hal", 1)
    store.upsert(t, r, ttl_s=1)
    store.upsert(t, r)
    time.sleep(1.6)
    assert store.query(t, {"owner": "hal"}) == [r]


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"owner": "x", "made_at": T0}, "seq: required"),
        ({"owner": "x", "made_at": T0, "seq": "one"}, "seq: expected an integer"),
        ({"owner": "x", "made_at": "not a time", "seq": 1}, "made_at"),
        ({"owner": "x", "made_at": T0, "seq": 1, "color": "red"}, "unknown field"),
        ({"owner": "x", "made_at": T0, "seq": 1, "small": 2**40}, "outside the int range"),
    ],
)
def test_bad_rows_are_rejected_with_the_reason(store, bad, message):
    with pytest.raises(ValueError, match=message):
        store.upsert(new_table(), bad)


def test_bad_keys_and_ttl_are_rejected(store):
    t = new_table()
    with pytest.raises(ValueError, match="partition"):
        store.query(t, {"seq": 1})
    with pytest.raises(ValueError, match="in order"):
        store.query(t, {"owner": "x", "seq": 1})
    with pytest.raises(ValueError, match="ttl_s"):
        store.upsert(t, row("x", 1), ttl_s=0)


@hsettings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["p", "q"]), st.integers(0, 5), st.text(max_size=8)), max_size=25))
def test_any_sequence_of_upserts_matches_a_dict_oracle(store, writes):
    t = new_table()
    oracle: dict[tuple, dict] = {}
    for owner, i, title in writes:
        r = {"owner": owner, "made_at": T0 + timedelta(milliseconds=i), "seq": i, "title": title}
        store.upsert(t, r)
        oracle[(owner, i)] = {**r, "score": None, "flag": None, "tags": [], "blob": None, "small": None}
    for owner in ("p", "q"):
        expected = sorted((v for (o, _), v in oracle.items() if o == owner), key=lambda r: r["seq"], reverse=True)
        assert store.query(t, {"owner": owner}) == expected


def test_sqlite_ttl_follows_an_injected_clock(tmp_path):
    now = [1_000_000.0]
    s = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])
    t = new_table()
    s.upsert(t, row("ida", 1), ttl_s=60)
    now[0] += 59.9
    assert len(s.query(t, {"owner": "ida"})) == 1
    now[0] += 0.1
    assert s.query(t, {"owner": "ida"}) == []
    assert s.purge_expired(t) == 1


@pytest.mark.integration
def test_unreachable_cassandra_fails_at_startup_with_the_fix(services_running):
    import dataclasses

    bad = dataclasses.replace(services_running, cassandra_contact=("127.0.0.1", 1), connect_timeout_s=3)
    with pytest.raises(ServiceUnavailable, match=r"Cassandra at 127.0.0.1:1 .*SIXFOLD_CASSANDRA_HOST"):
        CassandraStore(bad)


@pytest.mark.integration
@pytest.mark.destructive
def test_killing_cassandra_mid_test_gives_a_clear_error_not_a_hang(services_running):
    import dataclasses

    from sixfold.platform.services.runner import Cassandra

    settings = dataclasses.replace(services_running, cassandra_keyspace="sixfold_contract", connect_timeout_s=5)
    s = CassandraStore(settings)
    t = new_table()
    s.upsert(t, row("kim", 1))
    server = Cassandra(services_running)
    pid = server.pid()
    assert pid, "the Cassandra started by `sixfold services up` should be running"
    os.killpg(pid, signal.SIGKILL)
    try:
        with pytest.raises(ServiceUnavailable, match="Cassandra at 127.0.0.1:9042"):
            for i in range(50):  # the driver may need a request or two to notice the node is gone
                s.upsert(t, row("kim", i))
                time.sleep(0.2)
    finally:
        s.close()
        server.start(log=lambda _m: None)
    s2 = CassandraStore(settings)
    assert s2.query(t, {"owner": "kim"})[-1] == row("kim", 1)  # durable before the kill (commitlog replay)
    s2.close()


@pytest.mark.parametrize("descending", [True, False])
def test_query_after_a_cursor_walks_the_partition_in_pages(store, descending):
    t = ServingTable(f"paged_{os.getpid()}_{next(_names)}", ITEM, partition_key=("owner",),
                     clustering_key=("seq", "made_at"), clustering_descending=descending)
    rows = [row("pat", i) for i in (4, 9, 1, 7, 3, 8)]
    store.upsert_many(t, rows)
    expected = sorted(rows, key=lambda r: r["seq"], reverse=descending)
    pages, after = [], None
    while True:
        page = store.query(t, {"owner": "pat"}, limit=4, after=after)
        if not page:
            break
        pages.append(page)
        after = page[-1]["seq"]
    assert [r for p in pages for r in p] == expected and [len(p) for p in pages] == [4, 2]
    with pytest.raises(ValueError, match="after"):
        store.query(t, {"owner": "pat", "seq": 1}, after=3)


def test_scan_returns_every_live_row(store):
    t = new_table()
    rows = [row(owner, i) for owner in ("sam", "sue") for i in range(3)]
    store.upsert_many(t, rows)
    store.upsert(t, row("sid", 9), ttl_s=1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(store.scan(t)) > len(rows):
        time.sleep(0.25)
    key = lambda r: (r["owner"], r["seq"])  # noqa: E731
    assert sorted(store.scan(t), key=key) == sorted(rows, key=key)


KEYED = Record("contract_keyed", (Field("id", "long"), Field("name", "string", required=False),
                                  Field("tags", "list<string>", required=False)))


@hsettings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(present=st.sets(st.integers(0, 1200), max_size=60), asked=st.lists(st.integers(0, 1200), max_size=700))
def test_get_many_answers_like_one_get_per_key_in_the_asked_order(store, present, asked):
    # one-column key (SQLite answers with IN, chunked at 500) and a composite key (the generic path)
    single = ServingTable(f"contract_keyed_{os.getpid()}_{next(_names)}", KEYED, partition_key=("id",))
    composite = new_table()
    store.upsert_many(single, [{"id": i, "name": f"n{i}"} for i in present])
    store.upsert_many(composite, [row("o", i % 50) for i in present])
    oracle = {i: {"id": i, "name": f"n{i}", "tags": []} for i in present}
    asked = asked + sorted(present)[:3]  # some hits even when the draw misses
    assert store.get_many(single, [{"id": i} for i in asked]) == [oracle.get(i) for i in asked]
    keys = [{"owner": "o", "made_at": T0 + timedelta(seconds=i % 50), "seq": i % 50} for i in asked[:40]]
    assert store.get_many(composite, keys) == [store.get(composite, k) for k in keys]
    assert store.get_many(single, []) == []


def test_query_can_read_only_some_columns(store):
    t = new_table()
    store.upsert_many(t, [row("c", i) for i in range(5)])
    full = store.query(t, {"owner": "c"}, limit=3, after=T0 + timedelta(seconds=4))
    assert [r["seq"] for r in full] == [3, 2, 1]
    some = store.query(t, {"owner": "c"}, limit=3, after=T0 + timedelta(seconds=4), columns=("seq", "tags"))
    assert some == [{"seq": r["seq"], "tags": r["tags"]} for r in full]
    with pytest.raises(ValueError, match="no column"):
        store.query(t, {"owner": "c"}, columns=("nope",))


def test_insert_if_absent_lets_exactly_one_of_many_racing_writers_win(store):
    import threading

    t = ServingTable(f"contract_claim_{os.getpid()}_{next(_names)}", KEYED, partition_key=("id",))
    store.ensure_table(t)
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def claim(name: str) -> None:
        barrier.wait()
        if store.insert_if_absent(t, {"id": 7, "name": name}):
            wins.append(name)

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 1
    assert store.get(t, {"id": 7})["name"] == wins[0]  # the winner's row, not a later loser's overwrite
    assert store.insert_if_absent(t, {"id": 8, "name": "free"}) is True


def test_insert_if_absent_with_a_ttl_frees_the_key_once_it_expires(store):
    import time

    t = ServingTable(f"contract_lease_{os.getpid()}_{next(_names)}", KEYED, partition_key=("id",))
    assert store.insert_if_absent(t, {"id": 5, "name": "first"}, ttl_s=4)
    assert not store.insert_if_absent(t, {"id": 5, "name": "second"}, ttl_s=4)  # held (a loaded box has 4 s)
    time.sleep(4)  # the lease runs out (Cassandra counts TTLs in whole seconds: allow it one more)
    deadline = time.monotonic() + 10
    while not store.insert_if_absent(t, {"id": 5, "name": "second"}):
        assert time.monotonic() < deadline, "the expired lease still holds the key"
        time.sleep(0.2)
    assert store.get(t, {"id": 5})["name"] == "second"
    with pytest.raises(ValueError, match="ttl_s"):
        store.insert_if_absent(t, {"id": 6, "name": "x"}, ttl_s=0)


def test_sqlite_insert_if_absent_holds_across_connections_and_ignores_expired_rows(tmp_path):
    now = [1_000_000.0]
    a = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])
    b = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])  # another process's connection
    t = ServingTable("claims", KEYED, partition_key=("id",))
    assert a.insert_if_absent(t, {"id": 1, "name": "a"}) and not b.insert_if_absent(t, {"id": 1, "name": "b"})
    a.upsert(t, {"id": 2, "name": "short"}, ttl_s=5)
    assert not b.insert_if_absent(t, {"id": 2, "name": "b"})
    now[0] += 6
    assert b.insert_if_absent(t, {"id": 2, "name": "b"}) and a.get(t, {"id": 2})["name"] == "b"


TALLY = Record("contract_tally", (Field("id", "long"), Field("kind", "string"), Field("n", "long"),
                                  Field("note", "string", required=False)))


def new_tally() -> ServingTable:
    return ServingTable(f"contract_tally_{os.getpid()}_{next(_names)}", TALLY, partition_key=("id",),
                        clustering_key=("kind",))


def test_add_counts_from_zero_and_leaves_the_other_columns_alone(store):
    t = new_tally()
    assert store.add(t, {"id": 1, "kind": "a"}, "n", 5) == 5
    assert store.add(t, {"id": 1, "kind": "a"}, "n", -7) == -2
    store.upsert(t, {"id": 2, "kind": "a", "n": 40, "note": "kept"})
    assert store.add(t, {"id": 2, "kind": "a"}, "n", 2) == 42
    assert store.get(t, {"id": 2, "kind": "a"}) == {"id": 2, "kind": "a", "n": 42, "note": "kept"}
    assert store.get(t, {"id": 1, "kind": "a"}) == {"id": 1, "kind": "a", "n": -2, "note": None}
    with pytest.raises(ValueError, match="whole primary key"):
        store.add(t, {"id": 1}, "n", 1)
    with pytest.raises(ValueError, match="integer column outside the key"):
        store.add(t, {"id": 1, "kind": "a"}, "note", 1)
    with pytest.raises(ValueError, match="outside the long range"):
        store.add(t, {"id": 2, "kind": "a"}, "n", 2**63 - 1)
    assert store.get(t, {"id": 2, "kind": "a"})["n"] == 42  # a refused add changes nothing


def test_racing_adds_each_see_their_own_new_value(store, request, tmp_path):
    import dataclasses
    import threading

    t = new_tally()
    store.ensure_table(t)
    if isinstance(store, SQLiteStore):  # a second server: its own connections to the same file
        other = SQLiteStore(store.path)
    else:
        settings = request.getfixturevalue("services_running")
        other = CassandraStore(dataclasses.replace(settings, cassandra_keyspace="sixfold_contract"))
    seen: list[int] = []
    per_store, adds = (3, 15) if isinstance(store, SQLiteStore) else (2, 8)  # Paxos rounds are slow here
    barrier = threading.Barrier(2 * per_store)

    def bump(s) -> None:
        barrier.wait()
        for _ in range(adds):
            seen.append(s.add(t, {"id": 9, "kind": "x"}, "n", 1))

    threads = [threading.Thread(target=bump, args=(s,)) for s in (store, other) * per_store]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    other.close()
    total = 2 * per_store * adds
    assert sorted(seen) == list(range(1, total + 1))  # no lost update and no value handed out twice
    assert store.get(t, {"id": 9, "kind": "x"})["n"] == total


def test_delete_if_present_is_true_for_exactly_one_racing_caller(store):
    import threading

    t = new_tally()
    store.upsert(t, {"id": 3, "kind": "k", "n": 1})
    wins: list[int] = []
    barrier = threading.Barrier(6)

    def remove(i: int) -> None:
        barrier.wait()
        if store.delete_if_present(t, {"id": 3, "kind": "k"}):
            wins.append(i)

    threads = [threading.Thread(target=remove, args=(i,)) for i in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(wins) == 1 and store.get(t, {"id": 3, "kind": "k"}) is None
    assert store.delete_if_present(t, {"id": 3, "kind": "k"}) is False
    with pytest.raises(ValueError, match="whole primary key"):
        store.delete_if_present(t, {"id": 3})


def test_sqlite_add_holds_across_connections_and_restarts_an_expired_row(tmp_path):
    now = [1_000_000.0]
    a = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])
    b = SQLiteStore(tmp_path / "s.sqlite3", clock=lambda: now[0])  # another process's connection
    t = ServingTable("tally", TALLY, partition_key=("id",), clustering_key=("kind",))
    assert a.add(t, {"id": 1, "kind": "a"}, "n", 1) == 1 and b.add(t, {"id": 1, "kind": "a"}, "n", 1) == 2
    a.upsert(t, {"id": 2, "kind": "a", "n": 10}, ttl_s=5)
    now[0] += 6
    assert b.add(t, {"id": 2, "kind": "a"}, "n", 1) == 1 and not b.delete_if_present(t, {"id": 9, "kind": "a"})


def test_sqlite_batches_commit_together_and_roll_back_whole(tmp_path) -> None:
    from sixfold.platform.store import SQLiteStore

    store, other = SQLiteStore(tmp_path / "b.sqlite3"), SQLiteStore(tmp_path / "b.sqlite3")
    t = new_table()
    other.ensure_table(t)  # (creating a table is a write: it would wait for the batch)
    with store.batch():
        store.upsert(t, row("ivy", 1))
        with store.batch():  # nested: joins the outer transaction
            store.upsert_many(t, [row("ivy", 2), row("ivy", 3)])
        assert other.query(t, {"owner": "ivy"}) == []  # another connection sees nothing before the commit
    assert sorted(r["seq"] for r in other.query(t, {"owner": "ivy"})) == [1, 2, 3]
    with pytest.raises(RuntimeError):
        with store.batch():
            store.delete(t, {"owner": "ivy"})
            store.upsert(t, row("jon", 1))
            raise RuntimeError("half way")
    assert sorted(r["seq"] for r in other.query(t, {"owner": "ivy"})) == [1, 2, 3]  # nothing of it stayed
    assert other.query(t, {"owner": "jon"}) == []
    fresh = new_table()  # a table first used inside a batch that rolls back is gone with it ...
    with pytest.raises(RuntimeError):
        with store.batch():
            store.upsert(fresh, row("kim", 1))
            raise RuntimeError("half way")
    store.upsert(fresh, row("kim", 2))  # ... and made again on its next use, not "no such table"
    assert [r["seq"] for r in other.query(fresh, {"owner": "kim"})] == [2]


def test_sqlite_logs_are_checkpointed_in_the_background_not_by_the_writers(tmp_path) -> None:
    """Small transactions, far fewer pages than a writer's own checkpoint threshold: the database file alone
    (a copy without its -wal log) ends up holding every row, which only a checkpoint can have put there."""
    import shutil
    import sqlite3

    from sixfold.platform.store import WAL_AUTOCHECKPOINT_PAGES

    store = SQLiteStore(tmp_path / "c.sqlite3")
    t = new_table()
    for i in range(300):
        store.upsert(t, row("lee", i))
    log_pages = os.path.getsize(tmp_path / "c.sqlite3-wal") // 4096
    assert 0 < log_pages < WAL_AUTOCHECKPOINT_PAGES  # the writer never reached its own threshold

    def file_alone_holds_every_row() -> bool:
        copy = tmp_path / f"copy-{time.monotonic_ns()}.sqlite3"
        shutil.copyfile(tmp_path / "c.sqlite3", copy)  # the main file only: no -wal beside it
        try:
            with sqlite3.connect(copy) as conn:
                return conn.execute(f'SELECT count(*) FROM "{t.name}"').fetchone()[0] == 300
        except sqlite3.Error:  # copied mid-checkpoint: try again
            return False

    deadline = time.monotonic() + 30
    while not file_alone_holds_every_row():
        assert time.monotonic() < deadline, "the log was not checkpointed into the database file within 30 s"
        time.sleep(0.1)
    assert sorted(r["seq"] for r in store.query(t, {"owner": "lee"})) == list(range(300))


def test_sqlite_new_file_opened_by_many_threads_at_once_opens_for_each(tmp_path) -> None:
    """Eight connections open one new file at the same instant, 100 times over: each switches it to WAL mode
    or finds it switched, and none is told "database is locked" (SQLite's answer, without waiting, to one
    that meets another mid-switch: about one round in 30 here before `_into_wal` retried)."""
    import threading

    table = ServingTable(f"contract_plain_open_{os.getpid()}", PLAIN, partition_key=("owner",),
                         clustering_key=("made_at", "seq"))
    failures: list[str] = []
    for round_ in range(100):
        path = tmp_path / f"new-{round_}.sqlite3"
        barrier = threading.Barrier(8, timeout=60)

        def open_it(path=path, barrier=barrier) -> None:
            try:
                barrier.wait()
                SQLiteStore(path).upsert(table, {"owner": "o", "made_at": T0, "seq": 1})
            except Exception as exc:  # noqa: BLE001 - collected and asserted below
                failures.append(f"round {round_}: {exc!r}")

        threads = [threading.Thread(target=open_it) for _ in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert failures == []


def test_sqlite_writer_waits_for_another_process_lock_and_then_writes(tmp_path, monkeypatch) -> None:
    """A connection outside this store (as another process's) holds the write lock; a write through the store
    waits for it, in short pauses, and lands after it is released: not an error, not lost."""
    import sqlite3
    import threading

    path = tmp_path / "w.sqlite3"
    store = SQLiteStore(path)
    t = new_table()
    store.upsert(t, row("lee", 0))
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    released = threading.Event()

    def release() -> None:
        time.sleep(0.5)
        released.set()
        other.execute("COMMIT")

    threading.Thread(target=release).start()
    store.upsert(t, row("lee", 1))  # waits for the other's lock
    assert released.is_set()
    assert sorted(r["seq"] for r in store.query(t, {"owner": "lee"})) == [0, 1]
    other.execute("BEGIN IMMEDIATE")  # and a lock never released is a clear error once the wait is over
    monkeypatch.setattr("sixfold.platform.store.LOCK_WAIT_S", 0.3)
    try:
        with pytest.raises(ServiceUnavailable, match="another process held the write lock"):
            store.upsert(t, row("lee", 2))
    finally:
        monkeypatch.undo()
        other.execute("ROLLBACK")
        other.close()
    store.upsert(t, row("lee", 2))
    assert sorted(r["seq"] for r in store.query(t, {"owner": "lee"})) == [0, 1, 2]


PLAIN = Record("contract_plain", (Field("owner", "string", max_length=16), Field("made_at", "timestamp"),
                                  Field("seq", "long"), Field("small", "int", required=False),
                                  Field("score", "double", required=False)))


@pytest.mark.parametrize("ttl", [None, 3600])
def test_upsert_table_stores_what_upsert_many_of_its_rows_stores(store, ttl) -> None:
    """An Arrow table of canonical rows (the landing's batches) is written column by column; the oracle is the
    same rows through `upsert_many`, one dict each, into a twin table. A table that is not plainly canonical
    (a string past its length, a timestamp finer than a millisecond) takes the checked path and is refused
    with the same reason."""
    import pyarrow as pa

    twin = [ServingTable(f"contract_plain_{os.getpid()}_{next(_names)}", PLAIN, partition_key=("owner",),
                         clustering_key=("made_at", "seq")) for _ in range(2)]
    rows = [{"owner": f"o{i % 3}", "made_at": T0 + timedelta(milliseconds=7 * i), "seq": i,
             "small": None if i % 4 == 0 else i - 5, "score": i / 3} for i in range(40)]
    arrow = pa.Table.from_pylist(rows, schema=pa.schema([
        ("owner", pa.string()), ("made_at", pa.timestamp("us", tz="UTC")), ("seq", pa.int64()),
        ("small", pa.int32()), ("score", pa.float64())]))
    assert store.upsert_table(twin[0], arrow, ttl_s=ttl) == 40
    assert store.upsert_many(twin[1], rows, ttl_s=ttl) == 40
    for owner in ("o0", "o1", "o2"):
        assert store.query(twin[0], {"owner": owner}) == store.query(twin[1], {"owner": owner})
    assert len(store.scan(twin[0])) == 40

    too_long = arrow.set_column(0, "owner", pa.array(["x" * 17] * 40))
    with pytest.raises(ValueError, match="owner"):
        store.upsert_table(twin[0], too_long)
    finer = arrow.set_column(1, "made_at", pa.array([T0 + timedelta(microseconds=1)] * 40,
                                                    type=pa.timestamp("us", tz="UTC")))
    finer = finer.set_column(2, "seq", pa.array(range(1000, 1040), type=pa.int64()))
    store.upsert_table(twin[0], finer.slice(0, 1))  # accepted as upsert_many accepts it: cut to the millisecond
    assert store.get(twin[0], {"owner": "o0", "made_at": T0, "seq": 1000})["made_at"] == T0
