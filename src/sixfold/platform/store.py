"""The serving store: rows addressed by key, with TTL and idempotent upserts.

Two implementations of one contract: `SQLiteStore` (embedded; TTL emulated with an expiry
column filtered on read) and `CassandraStore` (cluster; Cassandra's native `USING TTL`).
Rows are plain dicts in canonical form (see `sixfold.platform.schema.validate`).
"""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
import weakref
from contextlib import contextmanager
from datetime import datetime, timezone
from functools import cache, partial
from itertools import repeat
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Protocol

from schemas.records import Field, Record, ServingTable
from sixfold.platform import schema
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.resilience import guard
from sixfold.platform.settings import Settings


class ServingStore(Protocol):
    def ensure_table(self, table: ServingTable) -> None: ...
    def upsert(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> None: ...
    def upsert_many(self, table: ServingTable, rows: Iterable[dict[str, Any]], ttl_s: int | None = None) -> int: ...
    def upsert_table(self, table: ServingTable, data: Any, ttl_s: int | None = None) -> int: ...
    def insert_if_absent(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> bool: ...
    def get(self, table: ServingTable, key: dict[str, Any]) -> dict[str, Any] | None: ...
    def get_many(self, table: ServingTable, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]: ...
    def query(self, table: ServingTable, partition: dict[str, Any], limit: int | None = None,
              after: Any = None, columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]: ...
    def scan(self, table: ServingTable) -> list[dict[str, Any]]: ...
    def delete(self, table: ServingTable, key: dict[str, Any]) -> None: ...
    def delete_if_present(self, table: ServingTable, key: dict[str, Any]) -> bool: ...
    def add(self, table: ServingTable, key: dict[str, Any], column: str, delta: int) -> int: ...
    def batch(self) -> Any: ...
    def close(self) -> None: ...


def _whole_key(table: ServingTable, key: dict[str, Any], operation: str) -> list[tuple[Field, Any]]:
    """The canonical key of an operation on one row: every primary-key column, nothing else."""
    if set(key) != set(table.primary_key):
        raise ValueError(f"{table.name}: {operation} needs the whole primary key {list(table.primary_key)}")
    return _canonical_key(table, key)


def _counter(table: ServingTable, key: dict[str, Any], column: str, delta: int) -> tuple[list[tuple[Field, Any]], Field]:
    """The checked whole key and counter field of an `add`: an integer column outside the key, on a
    table whose other columns may be left empty (a new row holds only its key and the count)."""
    canon = _whole_key(table, key, "add")
    f = table.record.field(column)
    if f.type not in schema.INT_RANGES or column in table.primary_key:
        raise ValueError(f"{table.name}.{column}: add needs an integer column outside the key")
    required = [g.name for g in table.record.fields
                if g.required and g.name != column and g.name not in table.primary_key]
    if required:
        raise ValueError(f"{table.name}: add would leave required column(s) {required} empty")
    if isinstance(delta, bool) or not isinstance(delta, int):
        raise ValueError(f"add: delta must be an integer, got {delta!r}")
    return canon, f


_ABSENT = object()


_PLAIN_TYPES: dict[str, type | None] = {"string": str, "int": int, "long": int, "double": float, "bool": bool,
                                       "timestamp": datetime}


@cache
def _plain_checks(record: Record) -> tuple[tuple[str, type | None, Any, bool], ...]:
    """(name, canonical Python type or None when always validated, bound, required) per field."""
    out = []
    for f in record.fields:
        bound = schema.INT_RANGES.get(f.type) if f.type in schema.INT_RANGES else f.max_length
        out.append((f.name, _PLAIN_TYPES.get(f.type), bound, f.required))
    return tuple(out)


def _plain_values(checks: tuple[tuple[str, type | None, Any, bool], ...], row: Any) -> list[Any] | None:
    """The row's values in field order when it is already canonical (a dict of exactly the record's
    fields, each already in the form `schema.validate` would return it; `checks`: `_plain_checks`),
    else None: landing writes millions of checked rows, and validating them again would accept them
    unchanged."""
    if type(row) is not dict or len(row) != len(checks):
        return None
    values = []
    for name, kind, bound, required in checks:
        value = row.get(name, _ABSENT)
        if value is None and not required:
            values.append(None)
            continue
        if kind is None or type(value) is not kind:
            return None
        if kind is str:
            if bound is not None and len(value) > bound:
                return None
        elif kind is int:
            if not bound[0] <= value <= bound[1]:
                return None
        elif kind is datetime and (value.tzinfo is not timezone.utc or value.microsecond % 1000):
            return None  # schema.parse_timestamp gives UTC to the millisecond
        values.append(value)
    return values


_ARROW_PLAIN = {"string": ("string",), "long": ("int64",), "int": ("int32",), "double": ("double",),
                "timestamp": ("timestamp[ms, tz=UTC]", "timestamp[us, tz=UTC]")}


def _arrow_plain(record: Record, data: Any) -> bool:
    """Whether an Arrow table's rows are already canonical rows of `record`, judged per column: each field's
    column is there with its Arrow type (`_ARROW_PLAIN`), required ones have no nulls, strings fit their
    maximum length and integers their range. Then no row needs `schema.validate`, and none is made a dict."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if set(data.column_names) != set(record.names):
        return False
    for f in record.fields:
        col = data.column(f.name)
        if str(col.type) not in _ARROW_PLAIN.get(f.type, ()) or (f.required and col.null_count):
            return False
        if len(col) == col.null_count:
            continue
        if f.type == "timestamp":
            try:  # canonical timestamps are whole milliseconds (Cassandra's precision): a safe cast says so
                pc.cast(col, pa.timestamp("ms", tz="UTC"))
            except pa.ArrowInvalid:
                return False
        if f.type == "string" and f.max_length is not None and pc.max(pc.utf8_length(col)).as_py() > f.max_length:
            return False
        if f.type in schema.INT_RANGES:
            low, high = schema.INT_RANGES[f.type]
            bounds = pc.min_max(col).as_py()
            if bounds["min"] < low or bounds["max"] > high:
                return False
    return True


def _check_ttl(ttl_s: int | None) -> None:
    if ttl_s is not None and (not isinstance(ttl_s, int) or ttl_s <= 0):
        raise ValueError(f"ttl_s must be a positive number of seconds, got {ttl_s!r}")


# Types SQLite hands back in canonical form (schema.from_sqlite and _normalise leave them alone).
_STORED_AS_IS = frozenset({"int", "long", "double", "string"})


@cache
def _integer_ranges(record: Record) -> tuple[tuple[str, int, int], ...] | None:
    """(name, low, high) of every field when all of them are integers, else None."""
    if not all(f.type in schema.INT_RANGES for f in record.fields):
        return None
    return tuple((f.name, *schema.INT_RANGES[f.type]) for f in record.fields)


def _plain_integers(ranges: tuple[tuple[str, int, int], ...], row: Any) -> list[int] | None:
    """The row's values in field order when it is already canonical (a dict of exactly the record's
    integer fields, each an in-range int), else None: bulk writers of key-only tables (timelines)
    send millions of such rows, and validation would accept them unchanged."""
    if type(row) is not dict or len(row) != len(ranges):
        return None
    values = []
    for name, low, high in ranges:
        value = row.get(name)
        if type(value) is not int or not low <= value <= high:
            return None
        values.append(value)
    return values


def _key_columns(table: ServingTable, key: dict[str, Any], *, partition_only: bool = False) -> list[Field]:
    """The key fields given, checked: the partition key in full, then a prefix of the clustering key."""
    wanted = table.partition_key if partition_only else table.primary_key
    missing = [c for c in table.partition_key if c not in key]
    if missing:
        raise ValueError(f"{table.name}: key is missing partition column(s) {missing}")
    extra = sorted(set(key) - set(wanted))
    if extra:
        raise ValueError(f"{table.name}: {extra} are not key columns of {list(wanted)}")
    cols = list(table.partition_key)
    for c in table.clustering_key:
        if c in key and not partition_only:
            cols.append(c)
        elif any(later in key for later in table.clustering_key[table.clustering_key.index(c):]):
            raise ValueError(f"{table.name}: clustering columns must be given in order; {c!r} is missing")
        else:
            break
    return [table.record.field(c) for c in cols]


def _memo(memo: dict[tuple, tuple[Any, Any]], table: ServingTable, shape: tuple, make: Callable[[], Any]) -> Any:
    """`make()` for this table and call shape, computed once: hot read paths ask the same question
    thousands of times a second. The entry remembers the very table object it was made for, so two
    tables that share a name (tests make throwaway ones) never see each other's answers."""
    entry = memo.get((table.name, shape))
    if entry is None or entry[0] is not table:
        entry = (table, make())
        if len(memo) > 10_000:
            memo.clear()
        memo[(table.name, shape)] = entry
    return entry[1]


_KEY_COLUMNS: dict[tuple, tuple[Any, Any]] = {}
_CHECKED_COLUMNS: dict[tuple, tuple[Any, Any]] = {}


def _canonical_key(table: ServingTable, key: dict[str, Any], *, partition_only: bool = False) -> list[tuple[Field, Any]]:
    fields = _memo(_KEY_COLUMNS, table, (*key, partition_only),
                   lambda: _key_columns(table, key, partition_only=partition_only))
    return [(f, schema.coerce(f, key[f.name])) for f in fields]


def _check_columns(table: ServingTable, columns: tuple[str, ...]) -> bool:
    unknown = [c for c in columns if c not in table.record.names]
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {unknown}; it has {list(table.record.names)}")
    return True


def _normalise(table: ServingTable, row: dict[str, Any]) -> dict[str, Any]:
    # Cassandra reads an empty collection back as null; both stores answer [] instead.
    for f in table.record.fields:
        if f.type == "list<string>" and f.name in row and row[f.name] is None:
            row[f.name] = []
    return row


class _KeyedReads:
    """get and query, shared: each store only knows how to select rows by a checked key prefix."""

    def _select(self, table: ServingTable, key: list[tuple[Field, Any]], limit: int | None,
                after: tuple[Field, str, Any] | None = None, columns: tuple[str, ...] | None = None,
                ) -> list[dict[str, Any]]:
        raise NotImplementedError

    def get(self, table: ServingTable, key: dict[str, Any]) -> dict[str, Any] | None:
        rows = self._select(table, _whole_key(table, key, "get"), 1)
        return rows[0] if rows else None

    def get_many(self, table: ServingTable, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        """`get` for many whole keys in one round trip where the store can; answers in `keys` order."""
        return [self.get(table, key) for key in keys]

    def scan(self, table: ServingTable) -> list[dict[str, Any]]:
        """Every live row of a table, for batch maintenance (purges, repairs); not for request paths."""
        return self._select(table, [], None)

    def query(self, table: ServingTable, partition: dict[str, Any], limit: int | None = None,
              after: Any = None, columns: tuple[str, ...] | None = None) -> list[dict[str, Any]]:
        """Rows of a partition in clustering order; `after` continues past that value of the first
        clustering column (a cursor: with a descending order, rows below it). `columns` reads only
        those (hot read paths skip decoding what they do not use)."""
        if columns is not None:
            _memo(_CHECKED_COLUMNS, table, columns, lambda: _check_columns(table, columns))
        key = _canonical_key(table, partition)
        bound = None
        if after is not None:
            if not table.clustering_key or len(key) != len(table.partition_key):
                raise ValueError(f"{table.name}: `after` needs a clustering key and only the partition key given")
            f = table.record.field(table.clustering_key[0])
            bound = (f, "<" if table.clustering_descending else ">", schema.coerce(f, after))
        return self._select(table, key, limit, bound, columns)


# An SQLite row is live until its `_expires_at` (microseconds; NULL: never); the `?` is now.
_LIVE = '("_expires_at" IS NULL OR "_expires_at" > ?)'


def _sqlite_match(key: list[tuple[Field, Any]]) -> tuple[str, list[Any]]:
    """WHERE text and parameters matching a canonical key in SQLite."""
    return " AND ".join(f'"{f.name}" = ?' for f, _ in key), [schema.to_sqlite(f, v) for f, v in key]


_WRITE_LOCKS: dict[str, threading.RLock] = {}
_WRITE_LOCKS_GUARD = threading.Lock()


def _write_lock(path: Path) -> threading.RLock:
    """One lock per database file in this process: its threads take turns to write instead of meeting
    SQLite's busy handler, which sleeps with growing back-off (up to 100 ms a try) and starves some
    writers for a second under a few dozen concurrent ones. Other processes still meet at SQLite's lock."""
    key = str(path.resolve())
    with _WRITE_LOCKS_GUARD:
        return _WRITE_LOCKS.setdefault(key, threading.RLock())


WAL_AUTOCHECKPOINT_PAGES = 4000  # a writer checkpoints itself only past this (16 MB); the checkpointer is first
CHECKPOINT_EVERY_S = 0.1


class _Checkpointer:
    """Copies each open database's write-ahead log back into it from a thread of its own, so a writer's
    COMMIT never does it. SQLite's default, a writer checkpointing at its commit once the log passes 1,000
    pages (4 MB), stalls that commit for the copy and the log's fsync: 15-40 ms here, every few hundred
    small transactions, on whatever thread wrote them (the serving event loop, on the embedded profile).
    A PASSIVE checkpoint blocks no reader and no writer, and sqlite3 lets go of the GIL while it runs;
    once it has copied everything the next writer starts the log again from its beginning. One thread per
    process for every database file of its live stores (it ends when none is left)."""

    def __init__(self) -> None:
        self._stores: dict[str, weakref.WeakSet] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = 0

    def watch(self, store: SQLiteStore) -> None:
        with self._lock:
            self._stores.setdefault(str(store.path.resolve()), weakref.WeakSet()).add(store)
            if self._thread is None or self._pid != os.getpid():  # none yet, or this is a forked child
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="sqlite-checkpointer", daemon=True)
                self._thread.start()

    def _paths(self) -> list[str]:
        with self._lock:
            for path in [p for p, stores in self._stores.items() if not len(stores) or not os.path.exists(p)]:
                del self._stores[path]
            if not self._stores:
                self._thread = None  # a later `watch` starts another
            return list(self._stores)

    def _run(self) -> None:
        conns: dict[str, sqlite3.Connection] = {}
        done: dict[str, tuple[int, int]] = {}  # the log's (size, mtime) after the last checkpoint of each file
        try:
            while True:
                time.sleep(CHECKPOINT_EVERY_S)
                paths = self._paths()
                for gone in set(conns) - set(paths):
                    conns.pop(gone).close()
                    done.pop(gone, None)
                if not paths:
                    return
                for path in paths:
                    try:
                        stat = os.stat(path + "-wal")
                    except FileNotFoundError:
                        continue
                    if stat.st_size == 0 or done.get(path) == (stat.st_size, stat.st_mtime_ns):
                        continue
                    try:
                        conn = conns.get(path) or conns.setdefault(path, sqlite3.connect(
                            path, timeout=0, isolation_level=None, check_same_thread=False))
                        conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                        done[path] = (stat.st_size, stat.st_mtime_ns)
                    except sqlite3.Error:  # busy, or the file went away: the next round, or the writers, do it
                        continue
        finally:
            for conn in conns.values():
                conn.close()


_CHECKPOINTER = _Checkpointer()

WAL_SWITCH_WAIT_S = 30.0
LOCK_WAIT_S = 30.0  # a writer waits this long for another process's write lock, then "database is locked"
LOCK_PAUSE_S = (0.0002, 0.005)  # its first pause between tries, and the longest


def _begin_immediate(conn: sqlite3.Connection, where: str = "the serving store") -> None:
    """BEGIN IMMEDIATE, waiting for a write lock another process holds with pauses of 0.2 ms doubling to
    5 ms. SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25 ... 100 ms between its tries, so a
    writer meeting another process's transaction of a millisecond waited 3-30 ms: on the serving event
    loop, every request of the process waited with it (two `sixfold serve` workers creating links)."""
    conn.execute("PRAGMA busy_timeout=0")  # each try answers at once (5 us for the two pragmas)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        pause, longest = LOCK_PAUSE_S
        while True:
            try:
                conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                if time.monotonic() > deadline:  # a 503 with Retry-After, not a 500
                    raise ServiceUnavailable("SQLite", where, f"another process held the write lock for "
                                             f"{LOCK_WAIT_S:.0f} s", "find the process holding the database "
                                             "file open (a stuck job or shell) and stop it") from None
            time.sleep(pause)
            pause = min(pause * 2, longest)
    finally:
        conn.execute(f"PRAGMA busy_timeout={int(LOCK_WAIT_S * 1000)}")


def _into_wal(conn: sqlite3.Connection) -> None:
    """Put the file in WAL mode (it stays so). On a new file, connections opening it at once all try to
    switch; SQLite answers "database is locked" to those that find another mid-switch without calling its
    busy handler (waiting there could deadlock), so they retry here until the file is switched."""
    deadline = time.monotonic() + WAL_SWITCH_WAIT_S
    pause = 0.001
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.05)


class SQLiteStore(_KeyedReads):
    """Embedded serving store in one SQLite file (WAL mode, safe across threads of one process; its log is
    checkpointed in the background, see `_Checkpointer`)."""

    def __init__(self, path: Path | str, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self._local = threading.local()
        self._tables: set[str] = set()
        self._plans: dict[tuple, tuple[Any, Any]] = {}
        self._lock = threading.Lock()
        self._write = _write_lock(self.path)
        self._conn()  # fail now, not on first use, when the path is unusable
        _CHECKPOINTER.watch(self)

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(self.path, timeout=LOCK_WAIT_S, isolation_level=None, check_same_thread=False)
            except sqlite3.OperationalError as exc:
                raise ServiceUnavailable("SQLite", str(self.path), str(exc), "check SIXFOLD_HOME is writable") from exc
            _into_wal(conn)
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
            self._local.conn = conn
        return conn

    def _now_us(self) -> int:
        return int(self.clock() * 1_000_000)

    def _expiry(self, ttl_s: int | None) -> int | None:
        return None if ttl_s is None else self._now_us() + ttl_s * 1_000_000

    @contextmanager
    def batch(self) -> Iterator[None]:
        """This thread's writes inside the block as one transaction: one commit instead of one per
        call, and all or nothing (a raise rolls every one back). Nested blocks join the outer one."""
        if getattr(self._local, "depth", 0):
            self._local.depth += 1
            try:
                yield
            finally:
                self._local.depth -= 1
            return
        with self._transaction():
            self._local.depth = 1
            try:
                yield
            finally:
                self._local.depth = 0

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One transaction on this thread's connection: committed when the block ends, rolled back
        when it raises. Every one takes the file's write lock at its start (`_begin_immediate`), so a
        read-then-write step inside it sees no other writer. Inside `batch` it is part of the batch's
        transaction."""
        conn = self._conn()
        if getattr(self._local, "depth", 0):
            yield conn
            return
        with self._write:
            _begin_immediate(conn, str(self.path))
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # the block raised, or COMMIT failed (a full disk) and left it open
                    conn.execute("ROLLBACK")
                with self._lock:  # a table created inside the transaction is gone again: create it on next use
                    self._tables.clear()
                raise

    def ensure_table(self, table: ServingTable) -> None:
        if table.name in self._tables:
            return
        with self._write, self._lock:  # DDL is a write: the same order of locks as every other write
            self._conn().execute(schema.sqlite_ddl(table))
            self._tables.add(table.name)

    def upsert(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> None:
        self.upsert_many(table, [row], ttl_s)

    @staticmethod
    def _upsert_sql(table: ServingTable) -> str:
        fields = table.record.fields
        cols = ", ".join(f'"{f.name}"' for f in fields) + ', "_expires_at"'
        marks = ", ".join("?" for _ in range(len(fields) + 1))
        return f'INSERT OR REPLACE INTO "{table.name}" ({cols}) VALUES ({marks})'

    def upsert_table(self, table: ServingTable, data: Any, ttl_s: int | None = None) -> int:
        """`upsert_many` of an Arrow table's rows (one column per field), column by column: no dict per row.
        A table that is not plainly canonical (`_arrow_plain`) takes `upsert_many`, which checks each row."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not _arrow_plain(table.record, data):
            return self.upsert_many(table, data.to_pylist(), ttl_s)
        _check_ttl(ttl_s)
        self.ensure_table(table)
        columns = []
        for f in table.record.fields:
            col = data.column(f.name)
            if f.type == "timestamp":  # microseconds since the epoch, as `schema.to_sqlite` stores them
                col = pc.cast(pc.cast(col, pa.timestamp("us", tz="UTC")), pa.int64())
            columns.append(col.to_pylist())
        with self._transaction() as conn:
            conn.executemany(self._upsert_sql(table), zip(*columns, repeat(self._expiry(ttl_s))))
        return data.num_rows

    def upsert_many(self, table: ServingTable, rows: Iterable[dict[str, Any]], ttl_s: int | None = None) -> int:
        _check_ttl(ttl_s)
        self.ensure_table(table)
        fields = table.record.fields
        sql = self._upsert_sql(table)
        expires = self._expiry(ttl_s)
        ranges = _integer_ranges(table.record)
        checks = _plain_checks(table.record)
        # strings and numbers are stored as they are; the other types are converted
        convert = [None if f.type in ("string", "int", "long", "double") else partial(schema.to_sqlite, f)
                   for f in fields]
        params = []
        for row in rows:
            values = _plain_integers(ranges, row) if ranges else None
            if values is None:
                plain = _plain_values(checks, row)
                if plain is None:
                    canon = schema.validate(table.record, row)
                    plain = [canon[f.name] for f in fields]
                values = [v if c is None or v is None else c(v) for c, v in zip(convert, plain)]
            values.append(expires)
            params.append(values)
        with self._transaction() as conn:
            conn.executemany(sql, params)
        return len(params)

    def _select(self, table: ServingTable, key: list[tuple[Field, Any]], limit: int | None,
                after: tuple[Field, str, Any] | None = None, columns: tuple[str, ...] | None = None,
                ) -> list[dict[str, Any]]:
        self.ensure_table(table)
        shape = (tuple(f.name for f, _ in key), None if after is None else (after[0].name, after[1]), columns,
                 limit is not None)
        sql, fields, names = _memo(self._plans, table, shape, lambda: self._plan(table, key, after, columns, limit))
        params: list[Any] = [schema.to_sqlite(f, v) for f, v in key]
        if after is not None:
            params.append(schema.to_sqlite(after[0], after[2]))
        params.append(self._now_us())
        if limit is not None:
            params.append(limit)
        cur = self._conn().execute(sql, params)
        if names is not None:
            return [dict(zip(names, values)) for values in cur.fetchall()]
        return [_normalise(table, {f.name: schema.from_sqlite(f, v) for f, v in zip(fields, values)})
                for values in cur.fetchall()]

    @staticmethod
    def _plan(table: ServingTable, key: list[tuple[Field, Any]], after: tuple[Field, str, Any] | None,
              columns: tuple[str, ...] | None, limit: int | None) -> tuple[str, tuple[Field, ...], list[str] | None]:
        """(SQL, fields read, their names when every one comes back as stored) for one shape of select."""
        fields = table.record.fields if columns is None else tuple(table.record.field(c) for c in columns)
        where = " AND ".join(f'"{f.name}" = ?' for f, _ in key) or "1 = 1"
        if after is not None:
            where += f' AND "{after[0].name}" {after[1]} ?'
        order = " DESC" if table.clustering_descending else ""
        order_by = ", ".join(f'"{c}"{order}' for c in table.clustering_key) or "rowid"
        cols = ", ".join(f'"{f.name}"' for f in fields)
        sql = f'SELECT {cols} FROM "{table.name}" WHERE {where} AND {_LIVE} ORDER BY {order_by}'
        if limit is not None:
            sql += " LIMIT ?"
        as_is = all(f.type in _STORED_AS_IS for f in fields)
        return sql, fields, [f.name for f in fields] if as_is else None

    def insert_if_absent(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> bool:
        """Write `row` only if no live row has its key, atomically across every process on the file
        (a write lock from BEGIN IMMEDIATE); True when this call wrote it."""
        _check_ttl(ttl_s)
        self.ensure_table(table)
        fields = table.record.fields
        canon = schema.validate(table.record, row)
        where, params = _sqlite_match(_canonical_key(table, {k: canon[k] for k in table.primary_key}))
        cols = ", ".join(f'"{f.name}"' for f in fields) + ', "_expires_at"'
        marks = ", ".join("?" for _ in range(len(fields) + 1))
        with self._transaction() as conn:
            if conn.execute(f'SELECT 1 FROM "{table.name}" WHERE {where} AND {_LIVE}',
                            [*params, self._now_us()]).fetchone() is not None:
                return False
            conn.execute(f'INSERT OR REPLACE INTO "{table.name}" ({cols}) VALUES ({marks})',
                         [schema.to_sqlite(f, canon[f.name]) for f in fields] + [self._expiry(ttl_s)])
            return True

    def get_many(self, table: ServingTable, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        if len(table.primary_key) != 1 or len(keys) < 2:
            return super().get_many(table, keys)
        self.ensure_table(table)
        f = table.record.field(table.primary_key[0])
        wanted = [_canonical_key(table, k)[0][1] for k in keys]
        found: dict[Any, dict[str, Any]] = {}
        for i in range(0, len(wanted), 500):  # well under SQLite's bound-parameter limit
            chunk = [schema.to_sqlite(f, v) for v in wanted[i:i + 500]]
            marks = ", ".join("?" for _ in chunk)
            cur = self._conn().execute(
                f'SELECT * FROM "{table.name}" WHERE "{f.name}" IN ({marks}) AND {_LIVE}', [*chunk, self._now_us()])
            names = [d[0] for d in cur.description]
            for values in cur.fetchall():
                raw = dict(zip(names, values))
                row = _normalise(table, {g.name: schema.from_sqlite(g, raw[g.name]) for g in table.record.fields})
                found[row[f.name]] = row
        return [found.get(v) for v in wanted]

    def delete(self, table: ServingTable, key: dict[str, Any]) -> None:
        self.ensure_table(table)
        where, params = _sqlite_match(_canonical_key(table, key))
        with self._write:
            self._conn().execute(f'DELETE FROM "{table.name}" WHERE {where}', params)

    def delete_if_present(self, table: ServingTable, key: dict[str, Any]) -> bool:
        """Delete the live row with this whole key; True when this call deleted it (one statement,
        so of several racing callers exactly one sees True)."""
        where, params = _sqlite_match(_whole_key(table, key, "delete_if_present"))
        self.ensure_table(table)
        with self._write:
            cur = self._conn().execute(f'DELETE FROM "{table.name}" WHERE {where} AND {_LIVE}',
                                       [*params, self._now_us()])
        return cur.rowcount == 1

    def add(self, table: ServingTable, key: dict[str, Any], column: str, delta: int) -> int:
        """Add `delta` to an integer column and return the new value, atomically across every process
        on the file (BEGIN IMMEDIATE); an absent or expired row counts as 0."""
        canon, f = _counter(table, key, column, delta)
        self.ensure_table(table)
        where, params = _sqlite_match(canon)
        with self._transaction() as conn:
            now = conn.execute(f'SELECT "{column}" FROM "{table.name}" WHERE {where} AND {_LIVE}',
                               [*params, self._now_us()]).fetchone()
            value = schema.coerce(f, (now[0] if now is not None and now[0] is not None else 0) + delta)
            if now is not None:
                conn.execute(f'UPDATE "{table.name}" SET "{column}" = ? WHERE {where}', [value, *params])
            else:
                cols = ", ".join([*(f'"{g.name}"' for g, _ in canon), f'"{column}"'])
                marks = ", ".join("?" for _ in range(len(canon) + 1))
                conn.execute(f'INSERT OR REPLACE INTO "{table.name}" ({cols}) VALUES ({marks})', [*params, value])
        return value

    def purge_expired(self, table: ServingTable) -> int:
        """Physically remove expired rows (reads already hide them); returns how many went."""
        self.ensure_table(table)
        with self._write:
            cur = self._conn().execute(f'DELETE FROM "{table.name}" WHERE "_expires_at" <= ?', [self._now_us()])
        return cur.rowcount

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


# Every Cassandra store this process opened and has not closed. A driver Cluster left open keeps a
# heartbeat thread and an executor alive; at interpreter exit Python joins that executor's workers, so
# one forgotten store can keep a finished process from exiting. `close_open_cassandra_stores` ends them.
_OPEN_CASSANDRA: set[CassandraStore] = set()


def close_open_cassandra_stores() -> int:
    """Close every Cassandra store still open in this process; returns how many there were."""
    stores = list(_OPEN_CASSANDRA)
    for store in stores:  # close() removes it from the set
        store.close()
    return len(stores)


def _cassandra_failures() -> tuple[type[BaseException], ...]:
    """What the Cassandra guard counts as the cluster failing (and retries, on idempotent statements): no
    node reachable, a client or coordinator timeout, too few replicas alive, a broken connection."""
    from cassandra import OperationTimedOut, ReadTimeout, Unavailable, WriteTimeout
    from cassandra.cluster import NoHostAvailable
    from cassandra.connection import ConnectionException

    return (NoHostAvailable, OperationTimedOut, ReadTimeout, WriteTimeout, Unavailable, ConnectionException)


class CassandraStore(_KeyedReads):
    """Cluster serving store on Apache Cassandra; the keyspace is created on first use (RF 1 locally)."""

    def __init__(self, settings: Settings, replication_factor: int = 1) -> None:
        from cassandra.cluster import Cluster, NoHostAvailable
        from cassandra.policies import ExponentialReconnectionPolicy, RoundRobinPolicy

        host, port = settings.cassandra_contact
        self.where = f"{host}:{port}"
        self.keyspace = settings.cassandra_keyspace
        self.timeout = settings.connect_timeout_s
        self._cluster = Cluster(
            [host], port=port, connect_timeout=self.timeout, control_connection_timeout=self.timeout,
            protocol_version=5, load_balancing_policy=RoundRobinPolicy(),
            # a node that went away is tried again after 0.5, 1, 2, 4 s, then every 5 s (the driver's default
            # grows to 10 minutes: a restarted Cassandra stayed unused for minutes)
            reconnection_policy=ExponentialReconnectionPolicy(base_delay=0.5, max_delay=5.0),
        )
        try:
            self._session = self._cluster.connect()
        except NoHostAvailable as exc:
            self._cluster.shutdown()
            raise ServiceUnavailable(
                "Cassandra", self.where, f"no node answered CQL ({exc.errors or exc})",
                "set SIXFOLD_CASSANDRA_HOST=HOST:PORT to a running node, or run `sixfold services up`",
            ) from exc
        self._session.default_timeout = self.timeout
        self._guard = guard("cassandra", "Cassandra", self.where, timeout_s=self.timeout, settings=settings,
                            failures=_cassandra_failures())
        _OPEN_CASSANDRA.add(self)
        self._run(  # IF NOT EXISTS: running it twice is running it once
            f"CREATE KEYSPACE IF NOT EXISTS {self.keyspace} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {replication_factor}}}", idempotent=True,
        )
        self._tables: set[str] = set()
        self._prepared: dict[str, Any] = {}
        self._add_locks = [threading.Lock() for _ in range(64)]

    def _run(self, statement: Any, params: Any = None, *, idempotent: bool = False) -> Any:
        """One statement through the Cassandra guard (breaker, bulkhead); retried with backoff only when
        the caller says running it twice is the same as once (a read, an upsert or delete by primary key)."""
        from cassandra import OperationTimedOut, ReadTimeout, WriteTimeout
        from cassandra.cluster import NoHostAvailable

        try:
            return self._guard.call(self._session.execute, statement, params, self.timeout, idempotent=idempotent)
        except NoHostAvailable as exc:
            raise ServiceUnavailable("Cassandra", self.where, "no node is reachable (is the server down?)") from exc
        except (OperationTimedOut, ReadTimeout, WriteTimeout) as exc:
            raise ServiceUnavailable("Cassandra", self.where, f"request timed out after {self.timeout:.0f}s: {exc}") from exc

    def _prepare(self, cql: str) -> Any:
        stmt = self._prepared.get(cql)
        if stmt is None:
            from cassandra.cluster import NoHostAvailable

            try:  # preparing again is harmless: retried
                stmt = self._guard.call(self._session.prepare, cql, idempotent=True)
            except NoHostAvailable as exc:
                raise ServiceUnavailable("Cassandra", self.where, "no node is reachable (is the server down?)") from exc
            self._prepared[cql] = stmt
        return stmt

    def ensure_table(self, table: ServingTable) -> None:
        if table.name in self._tables:
            return
        self._run(schema.cql_ddl(table, self.keyspace), idempotent=True)  # CREATE TABLE IF NOT EXISTS
        self._tables.add(table.name)

    @staticmethod
    def _to_cql(field: Field, value: Any) -> Any:
        if value is not None and field.type == "timestamp":
            return value.astimezone(timezone.utc).replace(tzinfo=None)
        return value

    @staticmethod
    def _from_cql(field: Field, value: Any) -> Any:
        if value is None:
            return None
        if field.type == "timestamp" and isinstance(value, datetime):
            return value.replace(tzinfo=timezone.utc)
        if field.type == "list<string>":
            return list(value)
        return value

    def upsert(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> None:
        self.upsert_many(table, [row], ttl_s)

    def upsert_table(self, table: ServingTable, data: Any, ttl_s: int | None = None) -> int:
        """`upsert_many` of an Arrow table's rows (Cassandra binds one row per statement anyway)."""
        return self.upsert_many(table, data.to_pylist(), ttl_s)

    def upsert_many(self, table: ServingTable, rows: Iterable[dict[str, Any]], ttl_s: int | None = None) -> int:
        _check_ttl(ttl_s)
        self.ensure_table(table)
        fields = table.record.fields
        cols = ", ".join(f'"{f.name}"' for f in fields)
        marks = ", ".join("?" for _ in fields)
        ttl = f" USING TTL {ttl_s}" if ttl_s else ""
        stmt = self._prepare(f'INSERT INTO {self.keyspace}."{table.name}" ({cols}) VALUES ({marks}){ttl}')
        ranges = _integer_ranges(table.record)
        checks = _plain_checks(table.record)
        params = []
        for row in rows:
            values = _plain_integers(ranges, row) if ranges else None
            if values is None:
                plain = _plain_values(checks, row)
                if plain is None:
                    canon = schema.validate(table.record, row)
                    plain = [canon[f.name] for f in fields]
                values = [self._to_cql(f, v) for f, v in zip(fields, plain)]
            params.append(values)
        # INSERT without IF is an upsert by primary key: a retry writes the same values again (retried)
        return len(self._concurrent(stmt, params, "write"))

    def _concurrent(self, stmt: Any, params: list[list[Any]], what: str) -> list[Any]:
        """One prepared statement run for many parameter lists, up to 32 in flight; results in order."""
        from cassandra.cluster import NoHostAvailable
        from cassandra.concurrent import execute_concurrent_with_args

        if not params:
            return []
        try:  # its two callers are idempotent (upserts by primary key, reads): retried whole
            results = self._guard.call(execute_concurrent_with_args, self._session, stmt, params, 32, True,
                                       idempotent=True)
        except NoHostAvailable as exc:
            raise ServiceUnavailable("Cassandra", self.where, "no node is reachable (is the server down?)") from exc
        except ServiceUnavailable:  # the guard's own (open breaker, full bulkhead)
            raise
        except _cassandra_failures() as exc:  # a client-side OperationTimedOut too (it was a 500 before)
            raise ServiceUnavailable("Cassandra", self.where, f"{what} timed out or failed: {exc}") from exc
        except Exception as exc:  # noqa: BLE001 - timeouts surface as several driver types
            if "timed out" in str(exc).lower() or "timeout" in type(exc).__name__.lower():
                raise ServiceUnavailable("Cassandra", self.where, f"{what} timed out: {exc}") from exc
            raise
        return [r.result_or_exc for r in results]

    def insert_if_absent(self, table: ServingTable, row: dict[str, Any], ttl_s: int | None = None) -> bool:
        """A lightweight transaction (INSERT ... IF NOT EXISTS, Paxos among the replicas): True when
        this call wrote the row (which then expires after `ttl_s`, if given)."""
        _check_ttl(ttl_s)
        self.ensure_table(table)
        fields = table.record.fields
        canon = schema.validate(table.record, row)
        cols = ", ".join(f'"{f.name}"' for f in fields)
        marks = ", ".join("?" for _ in fields)
        ttl = "" if ttl_s is None else f" USING TTL {int(ttl_s)}"
        stmt = self._prepare(f'INSERT INTO {self.keyspace}."{table.name}" ({cols}) VALUES ({marks}) IF NOT EXISTS{ttl}')
        # a lightweight transaction that timed out may have applied: never retried (the caller sees a 503)
        return bool(self._run(stmt, [self._to_cql(f, canon[f.name]) for f in fields], idempotent=False).was_applied)

    def get_many(self, table: ServingTable, keys: list[dict[str, Any]]) -> list[dict[str, Any] | None]:
        if len(keys) < 2:
            return super().get_many(table, keys)
        self.ensure_table(table)
        for key in keys:
            if set(key) != set(table.primary_key):
                raise ValueError(f"{table.name}: get_many needs whole primary keys {list(table.primary_key)}")
        canon = [_canonical_key(table, k) for k in keys]
        where, _ = self._where(canon[0])
        cols = ", ".join(f'"{f.name}"' for f in table.record.fields)
        stmt = self._prepare(f'SELECT {cols} FROM {self.keyspace}."{table.name}" WHERE {where}')
        out: list[dict[str, Any] | None] = []
        for rows in self._concurrent(stmt, [self._where(c)[1] for c in canon], "read"):
            row = next(iter(rows), None)
            out.append(None if row is None else _normalise(
                table, {f.name: self._from_cql(f, getattr(row, f.name)) for f in table.record.fields}))
        return out

    def _where(self, key: list[tuple[Field, Any]]) -> tuple[str, list[Any]]:
        return " AND ".join(f'"{f.name}" = ?' for f, _ in key), [self._to_cql(f, v) for f, v in key]

    def _select(self, table: ServingTable, key: list[tuple[Field, Any]], limit: int | None,
                after: tuple[Field, str, Any] | None = None, columns: tuple[str, ...] | None = None,
                ) -> list[dict[str, Any]]:
        self.ensure_table(table)
        fields = table.record.fields if columns is None else tuple(table.record.field(c) for c in columns)
        where, params = self._where(key)
        if after is not None:
            where += f' AND "{after[0].name}" {after[1]} ?'
            params.append(self._to_cql(after[0], after[2]))
        cols = ", ".join(f'"{f.name}"' for f in fields)
        cql = f'SELECT {cols} FROM {self.keyspace}."{table.name}"' + (f" WHERE {where}" if where else "")
        if limit is not None:
            cql += f" LIMIT {int(limit)}"
        rows = self._run(self._prepare(cql), params, idempotent=True)  # a read
        return [
            _normalise(table, {f.name: self._from_cql(f, getattr(r, f.name)) for f in fields})
            for r in rows
        ]

    def delete(self, table: ServingTable, key: dict[str, Any]) -> None:
        self.ensure_table(table)
        where, params = self._where(_canonical_key(table, key))
        # a plain DELETE by key writes a tombstone; twice is the same as once: retried
        self._run(self._prepare(f'DELETE FROM {self.keyspace}."{table.name}" WHERE {where}'), params, idempotent=True)

    def delete_if_present(self, table: ServingTable, key: dict[str, Any]) -> bool:
        """DELETE ... IF EXISTS (a lightweight transaction): True when this call deleted the row."""
        where, params = self._where(_whole_key(table, key, "delete_if_present"))
        self.ensure_table(table)
        stmt = self._prepare(f'DELETE FROM {self.keyspace}."{table.name}" WHERE {where} IF EXISTS')
        return bool(self._run(stmt, params, idempotent=False).was_applied)  # a lightweight transaction: never retried

    ADD_ATTEMPTS = 100

    def add(self, table: ServingTable, key: dict[str, Any], column: str, delta: int) -> int:
        """Add `delta` to an integer column and return the new value: compare-and-set with lightweight
        transactions (INSERT ... IF NOT EXISTS, UPDATE ... IF col = old), retried while another
        process wins; this process's own adds to one key take turns first, so Paxos only sees other
        processes contend. (Cassandra's counter type cannot share a table with other columns; this
        can.) A compare-and-set that times out has an unknown outcome: that raises ServiceUnavailable,
        never a blind retry that could count twice."""
        canon, f = _counter(table, key, column, delta)
        with self._add_locks[hash((table.name, *(v for _, v in canon))) % len(self._add_locks)]:
            return self._add(table, canon, f, delta)

    def _add(self, table: ServingTable, canon: list[tuple[Field, Any]], f: Field, delta: int) -> int:
        column = f.name
        self.ensure_table(table)
        where, params = self._where(canon)
        name = f'{self.keyspace}."{table.name}"'
        read = self._prepare(f'SELECT "{column}" FROM {name} WHERE {where}')
        cols = ", ".join([*(f'"{g.name}"' for g, _ in canon), f'"{column}"'])
        insert = self._prepare(f'INSERT INTO {name} ({cols}) VALUES ({", ".join("?" for _ in range(len(canon) + 1))}) '
                               "IF NOT EXISTS")
        update = self._prepare(f'UPDATE {name} SET "{column}" = ? WHERE {where} IF "{column}" = ?')
        for attempt in range(self.ADD_ATTEMPTS):
            row = next(iter(self._run(read, params, idempotent=True)), None)
            if row is None:  # the compare-and-sets below may count twice if repeated blindly: never retried
                value = schema.coerce(f, delta)
                if self._run(insert, [*params, value], idempotent=False).was_applied:
                    return value
            else:
                old = getattr(row, column)
                value = schema.coerce(f, (old or 0) + delta)
                if self._run(update, [value, *params, old], idempotent=False).was_applied:
                    return value
            time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # another writer won this round
        raise ServiceUnavailable("Cassandra", self.where, f"{table.name}.{column}: add lost {self.ADD_ATTEMPTS} "
                                 "compare-and-set rounds in a row (an extremely hot key)")

    @contextmanager
    def batch(self) -> Iterator[None]:
        """The SQLite store's write batch has no counterpart here: each write is its own statement
        (a logged batch across partitions would cost more than it saves)."""
        yield

    def close(self) -> None:
        _OPEN_CASSANDRA.discard(self)
        self._cluster.shutdown()


def open_store(settings: Settings) -> ServingStore:
    """The serving store of the configured profile."""
    if settings.profile == "cluster":
        return CassandraStore(settings)
    return SQLiteStore(settings.sqlite_path)
