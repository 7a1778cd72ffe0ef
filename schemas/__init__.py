"""The single source of truth for every record: events, lake tables and serving tables.

Records are declared once in `records.py`; `sixfold.platform.schema` derives Spark
StructTypes, CQL and SQLite DDL, and event validation from these declarations.
"""

from schemas.records import EVENTS, LAKE_TABLES, RECORDS, SERVING_TABLES, Event, Field, LakeTable, Record, ServingTable

__all__ = ["EVENTS", "LAKE_TABLES", "RECORDS", "SERVING_TABLES", "Event", "Field", "LakeTable", "Record", "ServingTable"]
