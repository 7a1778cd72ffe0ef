"""The lake: Parquet datasets under `settings.lake_dir/<LakeTable.path>`, partitioned by event time.

Layout, UTC: `hour` tables live in `dt=YYYY-MM-DD/hour=HH/`, `window15` tables in
`dt=YYYY-MM-DD/window=HHMM/` (HHMM = start of the 15-minute window). A write replaces each
partition it touches whole: the new file, `part-00000.parquet`, rows sorted by every column, is
written beside the lake and moved over the old one with a single rename, then any other data file
of the partition is removed; partitions the rows do not touch are left alone.

Landed tables are written differently (`ArrowLake.put_batch`): each consumed batch adds its own
file, named by where the batch came from (`batch-<topic>-<group>-<bus partition>-<first offset>.parquet`),
so a batch replayed after a crash rewrites the same file and nothing is read back. A partition of
several files may then hold a redelivered row twice: both readers drop exact duplicate rows when a
partition has more than one file (each file is free of them on its own), and `ArrowLake.compact`
folds a closed partition's files into one `part-00000.parquet`, the same bytes on every rerun.

Two implementations of one interface: `ArrowLake` (pyarrow; stream consumers, tests) and
`SparkLake` (DataFrames; jobs). Each reads what the other writes.

Determinism: ArrowLake writes byte-identical files for the same rows, in any process. SparkLake
writes the same rows in the same order, byte-identical within one JVM, but not across JVMs:
parquet-mr lists each column chunk's `encodings` from a hash set whose order changes from run to
run (seen with Spark 4.0.5 / parquet-mr 1.15.2). The data and the partitions replaced are the same.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from schemas.records import Field, LakeTable
from sixfold.platform.schema import arrow_schema, parse_timestamp, spark_struct, spark_type, validate
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import Column, DataFrame, SparkSession

DATA_FILE = "part-00000.parquet"
BATCH_PREFIX = "batch-"
PARTITIONINGS: dict[str, tuple[str, timedelta]] = {
    "hour": ("hour", timedelta(hours=1)),
    "window15": ("window", timedelta(minutes=15)),
}
_PARTITION_RE = re.compile(r"^dt=(\d{4}-\d{2}-\d{2})/(hour|window)=(\d{2}|\d{4})$")

Rows = TypeVar("Rows")
Result = TypeVar("Result")


def _partitioning(table: LakeTable) -> tuple[str, timedelta]:
    try:
        return PARTITIONINGS[table.partitioning]
    except KeyError:
        raise ValueError(
            f"lake table {table.path!r}: partitioning {table.partitioning!r} is unknown; "
            f"declare one of {sorted(PARTITIONINGS)} in schemas/records.py"
        ) from None


def partition_of(table: LakeTable, ts: datetime) -> str:
    """The partition (`dt=.../hour=HH` or `dt=.../window=HHMM`) that holds event time `ts`."""
    column, _ = _partitioning(table)
    ts = ts.astimezone(timezone.utc)
    if column == "hour":
        return f"dt={ts:%Y-%m-%d}/hour={ts:%H}"
    return f"dt={ts:%Y-%m-%d}/window={ts.hour:02d}{ts.minute // 15 * 15:02d}"


def partition_span(table: LakeTable, partition: str) -> tuple[datetime, datetime]:
    """The half-open UTC interval [start, end) of event times a partition holds."""
    column, width = _partitioning(table)
    match = _PARTITION_RE.match(partition)
    if not match or match.group(2) != column:
        raise ValueError(f"{partition!r} is not a {table.partitioning} partition of {table.path!r}")
    day, _, clock = match.groups()
    hh, mm = (clock, "00") if column == "hour" else (clock[:2], clock[2:])
    start = datetime.fromisoformat(f"{day}T{hh}:{mm}:00+00:00")
    return start, start + width


def _bound(value: datetime | str | None) -> datetime | None:
    return None if value is None else parse_timestamp(value)


class Lake(ABC, Generic[Rows, Result]):
    """One interface, two engines: write rows into whole partitions, read a time range back."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.lake_dir

    def table_dir(self, table: LakeTable) -> Path:
        return self.root / table.path

    def partitions(self, table: LakeTable) -> list[str]:
        """Every partition that holds data, oldest first."""
        base = self.table_dir(table)
        if not base.is_dir():
            return []
        column, _ = _partitioning(table)
        found = {
            f"{data.parent.parent.name}/{data.parent.name}"
            for data in base.glob(f"dt=*/{column}=*/*.parquet")
            if _is_data_file(data)
        }
        return sorted(p for p in found if _PARTITION_RE.match(p))

    def data_files(self, table: LakeTable, partition: str) -> list[Path]:
        """The partition's Parquet files, by name (`part-00000.parquet` first, then landed batches)."""
        directory = self.table_dir(table) / partition
        if not directory.is_dir():
            return []
        return sorted(p for p in directory.iterdir() if _is_data_file(p))

    def partitions_between(
        self, table: LakeTable, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> list[str]:
        """Partitions whose span overlaps [start, end); a missing bound is open."""
        lo, hi = _bound(start), _bound(end)
        chosen = []
        for partition in self.partitions(table):
            p_start, p_end = partition_span(table, partition)
            if (hi is None or p_start < hi) and (lo is None or p_end > lo):
                chosen.append(partition)
        return chosen

    def _commit(self, table: LakeTable, partition: str, new_file: Path, replaces: Iterable[Path] | None = None,
                name: str = DATA_FILE) -> None:
        """Swap a finished file in as `name` (rename is atomic on one fs), then remove the data files it
        replaces: `replaces`, or every other one of the partition (a whole-partition write)."""
        target = self.table_dir(table) / partition
        target.mkdir(parents=True, exist_ok=True)
        os.replace(new_file, target / name)
        if name != DATA_FILE:
            return
        for old in self.data_files(table, partition) if replaces is None else replaces:
            if old.name != DATA_FILE:
                old.unlink(missing_ok=True)

    @staticmethod
    def within(table: LakeTable, partitions: Iterable[str], lo: datetime | None, hi: datetime | None) -> bool:
        """Whether each partition's whole span lies in [lo, hi): a row is in its event time's partition,
        so a read of whole windows (the aggregation's) needs no filter on the time column."""
        for partition in partitions:
            p_start, p_end = partition_span(table, partition)
            if (lo is not None and p_start < lo) or (hi is not None and p_end > hi):
                return False
        return True

    def _needs_distinct(self, table: LakeTable, partitions: Iterable[str]) -> bool:
        """Whether a read of these partitions may meet a row twice: only across files of one partition."""
        return any(len(self.data_files(table, p)) > 1 for p in partitions)

    def _scratch(self, table: LakeTable) -> Path:
        """A private directory inside the table (same filesystem, so the final rename is atomic).

        The leading underscore hides it from Spark and pyarrow dataset discovery.
        """
        scratch = self.table_dir(table) / f"_staging-{uuid.uuid4().hex}"
        scratch.mkdir(parents=True)
        return scratch

    @abstractmethod
    def overwrite_partitions(self, table: LakeTable, rows: Rows) -> list[str]:
        """Replace every partition the rows fall into with exactly those rows; return the partitions."""

    @abstractmethod
    def read(
        self, table: LakeTable, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> Result:
        """The record's columns for events with start <= time < end (partitions pruned first)."""


def _is_data_file(path: Path) -> bool:
    """A Parquet file readers see; Spark and pyarrow skip names starting with '_' or '.' too."""
    return path.suffix == ".parquet" and not path.name.startswith(("_", "."))


def batch_file_name(topic: str, bus_partition: int, first_offset: int, group: str = "") -> str:
    """The file a landed batch becomes in each lake partition it touches: where it came from (topic,
    bus partition, first offset, and the consumer group when given, so two groups landing one topic
    never overwrite each other's files), so a replay of the batch rewrites the same file."""
    source = f"{topic}-{group}" if group else topic
    if len(source) > 180:  # file names stop at 255 bytes
        source = f"{topic[:80]}-{hashlib.sha256(source.encode()).hexdigest()[:32]}"
    return f"{BATCH_PREFIX}{source}-{bus_partition:04d}-{first_offset:020d}.parquet"


def _sortable(schema: pa.Schema) -> bool:
    import pyarrow as pa

    return not any(pa.types.is_list(f.type) for f in schema)


def sorted_rows(rows: pa.Table) -> pa.Table:
    """The rows sorted by every column, nulls last: the order of `overwrite_partitions`' files
    (Arrow compares strings by UTF-8 bytes, which is Python's code-point order)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_rows <= 1:
        return rows.combine_chunks()
    if _sortable(rows.schema):
        order = pc.sort_indices(rows, sort_keys=[(n, "ascending", "at_end") for n in rows.column_names])
        return rows.take(order).combine_chunks()
    members = rows.to_pylist()
    members.sort(key=_sort_key(tuple(rows.column_names)))
    return pa.Table.from_pylist(members, schema=rows.schema)


def distinct_rows(rows: pa.Table) -> pa.Table:
    """The rows without exact duplicates, each kept at its first occurrence, in the input's order."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if rows.num_rows <= 1:
        return rows
    if _sortable(rows.schema):
        numbered = rows.append_column("__row", pa.array(np.arange(rows.num_rows, dtype=np.int64)))
        firsts = numbered.group_by(rows.column_names, use_threads=False).aggregate([("__row", "min")])
        keep = pc.sort_indices(firsts.column("__row_min"))
        return rows.take(pc.take(firsts.column("__row_min"), keep))
    seen: set[tuple[Any, ...]] = set()
    keep_rows: list[int] = []
    for i, row in enumerate(rows.to_pylist()):
        identity = tuple(tuple(v) if isinstance(v, list) else v for v in row.values())
        if identity not in seen:
            seen.add(identity)
            keep_rows.append(i)
    return rows if len(keep_rows) == rows.num_rows else rows.take(pa.array(keep_rows, type=pa.int64()))


def _sort_key(names: tuple[str, ...]):
    def key(row: Mapping[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for name in names:
            value = row[name]
            if isinstance(value, list):
                value = tuple(value)
            out.append((1, ()) if value is None else (0, value))  # nulls last, like Spark's ASC
        return tuple(out)

    return key


class ArrowLake(Lake[Iterable[Mapping[str, Any]], "pa.Table"]):
    """The lake through pyarrow: rows are dicts (validated against the record), results are Tables."""

    def overwrite_partitions(self, table: LakeTable, rows: Iterable[Mapping[str, Any]]) -> list[str]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        record, schema = table.record, arrow_schema(table.record)
        grouped: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            clean = validate(record, dict(row))
            grouped.setdefault(partition_of(table, clean[table.time_field]), []).append(clean)
        if not grouped:
            return []
        scratch = self._scratch(table)
        try:
            for partition, members in sorted(grouped.items()):
                members.sort(key=_sort_key(record.names))
                staged = scratch / f"{partition.replace('/', '_')}.parquet"
                pq.write_table(pa.Table.from_pylist(members, schema=schema), staged, compression="snappy")
                self._commit(table, partition, staged)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return sorted(grouped)

    def replace_range(
        self, table: LakeTable, start: datetime, end: datetime, rows: Iterable[Mapping[str, Any]] | "pa.Table"
    ) -> list[str]:
        """Replace every partition in [start, end) with the rows that fall in it, writing an empty
        partition where none do, so a rerun over a window that lost its rows leaves nothing stale."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(rows, pa.Table):
            rows = rows.to_pylist()
        _, width = _partitioning(table)
        grouped: dict[str, list[Mapping[str, Any]]] = {}
        at = start
        while at < end:
            grouped[partition_of(table, at)] = []
            at += width
        for row in rows:
            clean = validate(table.record, dict(row))
            partition = partition_of(table, clean[table.time_field])
            if partition not in grouped:
                raise ValueError(f"row at {clean[table.time_field]} is outside [{start}, {end}) for {table.path}")
            grouped[partition].append(clean)
        empty = [p for p, members in grouped.items() if not members]
        written = self.overwrite_partitions(table, [r for members in grouped.values() for r in members])
        schema = arrow_schema(table.record)
        for partition in empty:
            scratch = self._scratch(table)
            try:
                staged = scratch / "empty.parquet"
                pq.write_table(schema.empty_table(), staged, compression="snappy")
                self._commit(table, partition, staged)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
        return sorted(set(written) | set(empty))

    def put_batch(self, table: LakeTable, name: str, rows: pa.Table | Iterable[Mapping[str, Any]]) -> list[str]:
        """Write one landed batch as the file `name` (see `batch_file_name`) in each partition its rows
        fall into, rows sorted by every column and exact duplicates dropped; returns the partitions.

        Nothing is read back: the cost is the batch's, whatever the partition already holds. A file
        of that name is replaced (a replayed batch, the same bytes); other files stay. The rows were
        checked by the landing already (a Table must have the record's schema).
        """
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        if not name.startswith(BATCH_PREFIX) or not name.endswith(".parquet") or "/" in name:
            raise ValueError(f"{name!r} is not a batch file name; make it with batch_file_name()")
        schema = arrow_schema(table.record)
        batch = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(list(rows), schema=schema)
        if batch.schema != schema:
            raise ValueError(f"{table.path}: a batch needs the record's schema {schema}, got {batch.schema}")
        if not batch.num_rows:
            return []
        column, _ = _partitioning(table)
        time = batch.column(table.time_field)
        unit = ("hour", 1) if column == "hour" else ("minute", 15)
        starts = pc.floor_temporal(time, multiple=unit[1], unit=unit[0])
        scratch = self._scratch(table)
        written = []
        try:
            for start in sorted(pc.unique(starts).to_pylist()):
                partition = partition_of(table, start)
                members = batch.filter(pc.equal(starts, pa.scalar(start, starts.type)))
                staged = scratch / f"{partition.replace('/', '_')}.parquet"
                pq.write_table(sorted_rows(distinct_rows(members)), staged, compression="snappy")
                self._commit(table, partition, staged, name=name)
                written.append(partition)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return written

    def compact(self, table: LakeTable, partition: str) -> dict[str, int]:
        """Fold a closed partition's files into one `part-00000.parquet`: their rows without exact
        duplicates, sorted by every column, the same bytes on every rerun. Only the files read are
        removed (a batch landed meanwhile stays, and the next compaction takes it).

        Returns {"files": files folded, "rows_in": rows read, "rows": rows kept}; a partition that is
        one file already is left as it is.
        """
        import pyarrow.parquet as pq

        files = self.data_files(table, partition)
        if not files or files == [self.table_dir(table) / partition / DATA_FILE]:
            rows = pq.read_metadata(files[0]).num_rows if files else 0
            return {"files": len(files), "rows_in": rows, "rows": rows}
        merged = self._read_files(table, files)
        kept = sorted_rows(distinct_rows(merged))
        scratch = self._scratch(table)
        try:
            staged = scratch / "compacted.parquet"
            pq.write_table(kept, staged, compression="snappy")
            self._commit(table, partition, staged, replaces=files)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return {"files": len(files), "rows_in": merged.num_rows, "rows": kept.num_rows}

    def _read_files(self, table: LakeTable, files: list[Path]) -> pa.Table:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = arrow_schema(table.record)
        pieces = []
        for path in files:
            piece = pq.read_table(path, partitioning=None)
            # Spark writes every column as nullable; the record's schema is the contract.
            columns = [piece.column(f.name).cast(f.type) for f in schema]
            pieces.append(pa.Table.from_arrays(columns, schema=schema))
        return pa.concat_tables(pieces) if pieces else schema.empty_table()

    def read(
        self, table: LakeTable, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> pa.Table:
        import pyarrow as pa
        import pyarrow.compute as pc

        schema = arrow_schema(table.record)
        pieces = []
        for partition in self.partitions_between(table, start, end):
            files = self.data_files(table, partition)
            piece = self._read_files(table, files)
            pieces.append(distinct_rows(piece) if len(files) > 1 else piece)
        result = pa.concat_tables(pieces) if pieces else schema.empty_table()
        time = result.column(table.time_field)
        lo, hi = _bound(start), _bound(end)
        if lo is not None:
            result = result.filter(pc.greater_equal(time, pa.scalar(lo, time.type)))
            time = result.column(table.time_field)
        if hi is not None:
            result = result.filter(pc.less(time, pa.scalar(hi, time.type)))
        return result


def _canonical_column(field: Field) -> Column:
    """A column cast to its declared type; timestamps cut to milliseconds like `schema.parse_timestamp`
    (the platform's precision, Cassandra's), so both lakes store the same instant for the same row."""
    from pyspark.sql import functions as F

    column = F.col(field.name).cast(spark_type(field))
    if field.type == "timestamp":
        column = F.timestamp_millis(F.unix_millis(column))
    return column.alias(field.name)


class SparkLake(Lake["DataFrame", "DataFrame"]):
    """The lake through Spark: DataFrames in and out. Needs a session whose time zone is UTC."""

    def __init__(self, spark: SparkSession, settings: Settings) -> None:
        super().__init__(settings)
        zone = spark.conf.get("spark.sql.session.timeZone")
        if zone != "UTC":
            raise ValueError(
                f"SparkLake needs spark.sql.session.timeZone=UTC (partitions are UTC), got {zone!r}; "
                "build the session with sixfold.platform.spark.get_session"
            )
        self.spark = spark

    def _partition_columns(self, table: LakeTable) -> dict[str, Column]:
        from pyspark.sql import functions as F

        column, _ = _partitioning(table)
        ts = F.col(table.time_field)
        clock = (
            F.date_format(ts, "HH")
            if column == "hour"
            else F.format_string("%02d%02d", F.hour(ts), (F.minute(ts) / 15).cast("int") * 15)
        )
        return {"dt": F.date_format(ts, "yyyy-MM-dd"), column: clock}

    def overwrite_partitions(self, table: LakeTable, rows: DataFrame) -> list[str]:

        record = table.record
        keys = self._partition_columns(table)
        typed = rows.select(*[_canonical_column(f) for f in record.fields])
        # One task per partition -> one file per partition; sorted so a rerun writes the same bytes.
        laid_out = (
            typed.withColumns(keys)
            .repartition(*keys)
            .sortWithinPartitions(*keys, *record.names)
        )
        scratch = self._scratch(table)
        try:
            written = scratch / "out"
            laid_out.write.partitionBy(*keys).parquet(str(written))
            staged: dict[str, Path] = {}
            for directory in sorted(written.glob("*/*")):
                partition = f"{directory.parent.name}/{directory.name}"
                if not _PARTITION_RE.match(partition):  # e.g. dt=__HIVE_DEFAULT_PARTITION__
                    raise ValueError(
                        f"{table.path}: rows with a null {table.time_field!r} have no partition; drop them first"
                    )
                files = sorted(directory.glob("part-*.parquet"))
                if len(files) != 1:
                    raise RuntimeError(f"expected one Parquet file in {directory}, Spark wrote {len(files)}")
                staged[partition] = files[0]
            for partition, new_file in staged.items():
                self._commit(table, partition, new_file)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        return sorted(staged)

    def read(
        self, table: LakeTable, start: datetime | str | None = None, end: datetime | str | None = None
    ) -> DataFrame:
        from pyspark.sql import functions as F

        struct = spark_struct(table.record)
        partitions = self.partitions_between(table, start, end)
        paths = [str(self.table_dir(table) / p) for p in partitions]
        if not paths:
            return self.spark.createDataFrame([], struct)
        # Leaf directories as paths: no partition discovery, so dt/hour/window never appear.
        frame = self.spark.read.schema(struct).parquet(*paths).select(*table.record.names)
        if self._needs_distinct(table, partitions):  # landed batches not compacted yet: a replay's rows twice
            frame = frame.dropDuplicates()
        lo, hi = _bound(start), _bound(end)
        if self.within(table, partitions, lo, hi):  # every row is in range: no time column to read
            return frame
        if lo is not None:
            frame = frame.filter(F.col(table.time_field) >= F.lit(lo))
        if hi is not None:
            frame = frame.filter(F.col(table.time_field) < F.lit(hi))
        return frame
