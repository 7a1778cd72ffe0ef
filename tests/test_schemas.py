"""The derived forms of every record (Spark, Arrow, CQL, SQLite, validation) agree with each other."""

from __future__ import annotations

import base64
import sqlite3
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import EVENTS, LAKE_TABLES, RECORDS, SERVING_TABLES, Field, Record
from sixfold.platform import schema

# The oracle: what each declared type must become in every target, written out by hand.
EXPECTED = {
    "string": ("StringType()", "string", "text", "TEXT"),
    "int": ("IntegerType()", "int32", "int", "INTEGER"),
    "long": ("LongType()", "int64", "bigint", "INTEGER"),
    "double": ("DoubleType()", "double", "double", "REAL"),
    "bool": ("BooleanType()", "bool", "boolean", "INTEGER"),
    "timestamp": ("TimestampType()", "timestamp[us, tz=UTC]", "timestamp", "INTEGER"),
    "bytes": ("BinaryType()", "binary", "blob", "BLOB"),
    "list<string>": ("ArrayType(StringType(), True)", "list<item: string>", "list<text>", "TEXT"),
}
ALL_RECORDS = sorted(RECORDS.values(), key=lambda r: r.name)


def test_every_declared_record_is_registered():
    used = [e.record for e in EVENTS.values()] + [t.record for t in LAKE_TABLES.values()] + \
        [t.record for t in SERVING_TABLES.values()]
    for record in used:
        assert RECORDS[record.name] is record


@pytest.mark.parametrize("table", SERVING_TABLES.values(), ids=lambda t: t.name)
def test_sqlite_ddl_has_every_column_with_its_type_and_key(table):
    db = sqlite3.connect(":memory:")
    db.execute(schema.sqlite_ddl(table))
    info = {row[1]: row for row in db.execute(f'PRAGMA table_info("{table.name}")')}
    for f in table.record.fields:
        assert info[f.name][2] == EXPECTED[f.type][3]
        assert bool(info[f.name][3]) == f.required
    pk = sorted((row[5], name) for name, row in info.items() if row[5])
    assert [name for _, name in pk] == list(table.primary_key)


@pytest.mark.parametrize("table", SERVING_TABLES.values(), ids=lambda t: t.name)
def test_cql_ddl_names_every_column_type_and_key(table):
    ddl = schema.cql_ddl(table, "ks")
    for f in table.record.fields:
        assert f'"{f.name}" {EXPECTED[f.type][2]}' in ddl
    assert "PRIMARY KEY ((" + ", ".join(f'"{c}"' for c in table.partition_key) + ")" in ddl


@pytest.mark.spark
@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.name)
def test_spark_and_arrow_schemas_match_the_declaration(record, spark):
    struct = schema.spark_struct(record)
    arrow = schema.arrow_schema(record)
    assert struct.fieldNames() == list(record.names) == arrow.names
    for f in record.fields:
        assert repr(struct[f.name].dataType) == EXPECTED[f.type][0]
        assert str(arrow.field(f.name).type) == EXPECTED[f.type][1]
        assert struct[f.name].nullable == (not f.required) == arrow.field(f.name).nullable
    row = {f.name: sample_value(f) for f in record.fields}
    df = spark.createDataFrame([schema.validate(record, row)], struct)
    assert df.collect()[0].asDict() == {
        k: (v.replace(tzinfo=None) if isinstance(v, datetime) else v)  # Spark hands back naive UTC
        for k, v in schema.validate(record, row).items()
    }


def sample_value(f: Field):
    return {"string": "x", "int": 1, "long": 2**40, "double": 0.5, "bool": True,
            "timestamp": "2026-11-26T10:00:00.123Z", "bytes": base64.b64encode(b"ab").decode(),
            "list<string>": ["a", "b"]}[f.type]


def values(f: Field):
    return {
        "string": st.text(max_size=f.max_length or 50),
        "int": st.integers(-(2**31), 2**31 - 1),
        "long": st.integers(-(2**63), 2**63 - 1),
        "double": st.floats(allow_nan=False),
        "bool": st.booleans(),
        "timestamp": st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1),
                                  timezones=st.just(timezone.utc)),
        "bytes": st.binary(max_size=20),
        "list<string>": st.lists(st.text(max_size=5), max_size=4),
    }[f.type]


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.name)
def test_validation_round_trips_through_json_and_sqlite(record: Record):
    @hsettings(max_examples=60, deadline=None)
    @given(st.fixed_dictionaries({f.name: values(f) for f in record.fields}))
    def check(row):
        canon = schema.validate(record, row)
        assert schema.validate(record, schema.to_json_row(record, canon)) == canon
        for f in record.fields:
            assert schema.from_sqlite(f, schema.to_sqlite(f, canon[f.name])) == canon[f.name]
        assert all(v.microsecond % 1000 == 0 for v in canon.values() if isinstance(v, datetime))

    check()


@pytest.mark.parametrize("record", ALL_RECORDS, ids=lambda r: r.name)
def test_json_schema_accepts_what_validation_accepts_and_refuses_what_it_refuses(record: Record):
    import jsonschema

    checker = jsonschema.Draft202012Validator(schema.json_schema(record),
                                              format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

    @hsettings(max_examples=30, deadline=None)
    @given(st.fixed_dictionaries({f.name: values(f) for f in record.fields}))
    def check(row):
        as_json = schema.to_json_row(record, schema.validate(record, row))
        checker.validate(as_json)
        broken = [{**as_json, "not_a_field": 1}]
        broken += [{k: v for k, v in as_json.items() if k != f.name} for f in record.fields if f.required]
        for payload in broken:
            assert not checker.is_valid(payload)
            with pytest.raises(ValueError):
                schema.validate(record, payload)

    check()


def test_event_validation_reports_every_problem():
    event = EVENTS["search-events"]
    with pytest.raises(ValueError) as info:
        schema.validate_event(event, {"user_id": 5, "query": "x" * 201, "ts": "yesterday", "extra": 1})
    message = str(info.value)
    for part in ("unknown field(s) ['extra']", "user_id: expected a string", "query: longer than 200",
                 "region: required", "ts:"):
        assert part in message
    assert schema.validate_event(event, {"user_id": "u", "query": "q", "region": "eu",
                                         "ts": "2026-11-26T10:00:00Z"})["ts"] == datetime(2026, 11, 26, 10, tzinfo=timezone.utc)


@pytest.mark.integration
@pytest.mark.parametrize("table", SERVING_TABLES.values(), ids=lambda t: t.name)
def test_cassandra_creates_the_declared_columns_and_keys(table, services_running):
    import dataclasses

    from sixfold.platform.store import CassandraStore

    store = CassandraStore(dataclasses.replace(services_running, cassandra_keyspace="sixfold_schema_check"))
    store.ensure_table(table)
    rows = store._run("SELECT column_name, type, kind, position FROM system_schema.columns "
                      "WHERE keyspace_name = 'sixfold_schema_check' AND table_name = %s", (table.name,))
    got = {r.column_name: r for r in rows}
    store.close()
    assert set(got) == set(table.record.names)
    for f in table.record.fields:
        assert got[f.name].type == EXPECTED[f.type][2]
    partition = [c for c, r in sorted(got.items(), key=lambda kv: kv[1].position) if r.kind == "partition_key"]
    clustering = [c for c, r in sorted(got.items(), key=lambda kv: kv[1].position) if r.kind == "clustering"]
    assert partition == list(table.partition_key) and clustering == list(table.clustering_key)
