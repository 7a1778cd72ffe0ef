"""Forms derived from `schemas/`: Spark StructType, CQL and SQLite DDL, JSON Schema, event validation.

Nothing here declares a record; it only translates the declarations in `schemas.records`.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timezone
from typing import Any

from schemas.records import Event, Field, Record, ServingTable

CQL_TYPES = {
    "string": "text", "int": "int", "long": "bigint", "double": "double", "bool": "boolean",
    "timestamp": "timestamp", "bytes": "blob", "list<string>": "list<text>",
}
# SQLite has five storage classes; timestamps are stored as integer microseconds since the epoch.
SQLITE_TYPES = {
    "string": "TEXT", "int": "INTEGER", "long": "INTEGER", "double": "REAL", "bool": "INTEGER",
    "timestamp": "INTEGER", "bytes": "BLOB", "list<string>": "TEXT",
}
INT_RANGES = {"int": (-(2**31), 2**31 - 1), "long": (-(2**63), 2**63 - 1)}


def spark_type(field: Field):  # -> pyspark.sql.types.DataType (imported lazily: no JVM for unit use)
    from pyspark.sql import types as T

    return {
        "string": T.StringType(), "int": T.IntegerType(), "long": T.LongType(), "double": T.DoubleType(),
        "bool": T.BooleanType(), "timestamp": T.TimestampType(), "bytes": T.BinaryType(),
        "list<string>": T.ArrayType(T.StringType()),
    }[field.type]


def spark_struct(record: Record):
    from pyspark.sql import types as T

    return T.StructType([T.StructField(f.name, spark_type(f), nullable=not f.required) for f in record.fields])


def arrow_schema(record: Record):
    import pyarrow as pa

    types = {
        "string": pa.string(), "int": pa.int32(), "long": pa.int64(), "double": pa.float64(), "bool": pa.bool_(),
        "timestamp": pa.timestamp("us", tz="UTC"), "bytes": pa.binary(), "list<string>": pa.list_(pa.string()),
    }
    return pa.schema([pa.field(f.name, types[f.type], nullable=not f.required) for f in record.fields])


def cql_ddl(table: ServingTable, keyspace: str) -> str:
    cols = ",\n  ".join(f'"{f.name}" {CQL_TYPES[f.type]}' for f in table.record.fields)
    pk = ", ".join(f'"{c}"' for c in table.partition_key)
    key = f"({pk})" + "".join(f', "{c}"' for c in table.clustering_key)
    ddl = f'CREATE TABLE IF NOT EXISTS {keyspace}."{table.name}" (\n  {cols},\n  PRIMARY KEY ({key})\n)'
    if table.clustering_key:
        order = "DESC" if table.clustering_descending else "ASC"
        ddl += " WITH CLUSTERING ORDER BY (" + ", ".join(f'"{c}" {order}' for c in table.clustering_key) + ")"
    return ddl


def sqlite_ddl(table: ServingTable) -> str:
    cols = []
    for f in table.record.fields:
        null = " NOT NULL" if f.required else ""
        cols.append(f'"{f.name}" {SQLITE_TYPES[f.type]}{null}')
    cols.append('"_expires_at" INTEGER')  # TTL emulation: microseconds since epoch, NULL = never
    key = ", ".join(f'"{c}"' for c in table.primary_key)
    # A partition read in clustering order walks one B-tree when the rows live in the key's own tree
    # (WITHOUT ROWID), and a write updates one tree instead of a table and its key index: half the
    # pages, 1.5x the insert rate for user_recent_queries at 2M rows. Rows holding bytes stay in a
    # rowid table (large rows spill to overflow pages either way), as do tables without a clustering
    # key (their scans keep insertion order).
    compact = bool(table.clustering_key) and not any(f.type == "bytes" for f in table.record.fields)
    return (f'CREATE TABLE IF NOT EXISTS "{table.name}" (\n  ' + ",\n  ".join(cols) + f",\n  PRIMARY KEY ({key})\n)"
            + (" WITHOUT ROWID" if compact else ""))


# ---- values ---------------------------------------------------------------------------------
def parse_timestamp(value: Any) -> datetime:
    """ISO-8601 (a trailing Z allowed), epoch seconds, or a datetime; returns an aware UTC datetime."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = datetime.fromtimestamp(value, tz=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        dt = datetime.fromisoformat(text)
    else:
        raise ValueError(f"expected an ISO-8601 timestamp, got {type(value).__name__}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    # Millisecond precision everywhere: it is what Cassandra's timestamp type keeps.
    return dt.astimezone(timezone.utc).replace(microsecond=dt.microsecond // 1000 * 1000)


def to_micros(dt: datetime) -> int:
    delta = dt - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(us: int) -> datetime:
    return datetime.fromtimestamp(us // 1_000_000, tz=timezone.utc).replace(microsecond=us % 1_000_000)


def coerce(field: Field, value: Any) -> Any:
    """Check one value against its field; return it in its canonical Python form or raise ValueError."""
    t = field.type
    if t == "string":
        if not isinstance(value, str):
            raise ValueError(f"{field.name}: expected a string, got {type(value).__name__}")
        if field.max_length is not None and len(value) > field.max_length:
            raise ValueError(f"{field.name}: longer than {field.max_length} characters ({len(value)})")
        return value
    if t in INT_RANGES:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{field.name}: expected an integer, got {type(value).__name__}")
        lo, hi = INT_RANGES[t]
        if not lo <= value <= hi:
            raise ValueError(f"{field.name}: {value} is outside the {t} range")
        return value
    if t == "double":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{field.name}: expected a number, got {type(value).__name__}")
        return float(value)
    if t == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{field.name}: expected true or false, got {type(value).__name__}")
        return value
    if t == "timestamp":
        try:
            return parse_timestamp(value)
        except (ValueError, OverflowError, OSError) as exc:
            raise ValueError(f"{field.name}: {exc}") from None
    if t == "bytes":
        if isinstance(value, (bytes, bytearray)):
            return bytes(value)
        if isinstance(value, str):
            try:
                return base64.b64decode(value, validate=True)
            except ValueError:
                raise ValueError(f"{field.name}: expected base64 text") from None
        raise ValueError(f"{field.name}: expected bytes, got {type(value).__name__}")
    if t == "list<string>":
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{field.name}: expected a list of strings")
        return list(value)
    raise AssertionError(t)


def validate(record: Record, payload: Any) -> dict[str, Any]:
    """Validate a payload against a record; return the canonical row or raise ValueError listing every problem."""
    if not isinstance(payload, dict):
        raise ValueError(f"{record.name}: expected a JSON object, got {type(payload).__name__}")
    problems: list[str] = []
    row: dict[str, Any] = {}
    unknown = sorted(set(payload) - set(record.names))
    if unknown:
        problems.append(f"unknown field(s) {unknown}")
    for f in record.fields:
        value = payload.get(f.name)
        if value is None:
            if f.required:
                problems.append(f"{f.name}: required")
            row[f.name] = None
            continue
        try:
            row[f.name] = coerce(f, value)
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        raise ValueError(f"{record.name}: " + "; ".join(problems))
    return row


def validate_event(event: Event, payload: Any) -> dict[str, Any]:
    return validate(event.record, payload)


def json_schema(record: Record) -> dict[str, Any]:
    """The JSON Schema of a record's JSON form: what `validate` accepts (an API documents its bodies with it)."""
    lo, hi = INT_RANGES["long"]
    types: dict[str, dict[str, Any]] = {
        "string": {"type": "string"},
        "int": {"type": "integer", "minimum": INT_RANGES["int"][0], "maximum": INT_RANGES["int"][1]},
        "long": {"type": "integer", "minimum": lo, "maximum": hi},
        "double": {"type": "number"},
        "bool": {"type": "boolean"},
        "timestamp": {"anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
                      "description": "ISO-8601 (UTC when no offset) or epoch seconds"},
        "bytes": {"type": "string", "contentEncoding": "base64"},
        "list<string>": {"type": "array", "items": {"type": "string"}},
    }
    properties = {}
    for f in record.fields:
        prop = dict(types[f.type])
        if f.max_length is not None:
            prop["maxLength"] = f.max_length
        if f.doc:
            prop["description"] = f.doc
        properties[f.name] = prop if f.required else {"anyOf": [prop, {"type": "null"}]}
    return {"title": record.name, "description": record.doc, "type": "object", "properties": properties,
            "required": [f.name for f in record.fields if f.required], "additionalProperties": False}


def to_json_value(field: Field, value: Any) -> Any:
    """The JSON form of a canonical value (timestamps as ISO-8601 UTC with Z, bytes as base64)."""
    if value is None:
        return None
    if field.type == "timestamp":
        return value.isoformat().replace("+00:00", "Z")
    if field.type == "bytes":
        return base64.b64encode(value).decode()
    return value


def to_json_row(record: Record, row: dict[str, Any]) -> dict[str, Any]:
    return {f.name: to_json_value(f, row.get(f.name)) for f in record.fields}


def to_sqlite(field: Field, value: Any) -> Any:
    if value is None:
        return None
    if field.type == "timestamp":
        return to_micros(value)
    if field.type == "bool":
        return int(value)
    if field.type == "list<string>":
        return json.dumps(value)
    return value


def from_sqlite(field: Field, value: Any) -> Any:
    if value is None:
        return None
    if field.type == "timestamp":
        return from_micros(value)
    if field.type == "bool":
        return bool(value)
    if field.type == "list<string>":
        return json.loads(value)
    return value
