"""Record declarations. Add a system's records here; never write a schema anywhere else.

Field types are a small closed vocabulary that every target can express:
`string`, `int` (32-bit), `long` (64-bit), `double`, `bool`, `timestamp` (UTC, millisecond precision),
`bytes`, and `list<string>`.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD_TYPES = ("string", "int", "long", "double", "bool", "timestamp", "bytes", "list<string>")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = True
    doc: str = ""
    max_length: int | None = None  # strings only; enforced by event validation

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: type {self.type!r} is not one of {FIELD_TYPES}")
        if not self.name.isidentifier():
            raise ValueError(f"field name {self.name!r} must be an identifier")


@dataclass(frozen=True)
class Record:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Event:
    """A record that travels on the event log under `topic` (dead letters go to `topic.dlq`)."""

    topic: str
    record: Record
    key: str | None = None  # field used as the message key (partitioning)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass(frozen=True)
class ServingTable:
    """A serving-store table: rows addressed by partition key, ordered by clustering key."""

    name: str
    record: Record
    partition_key: tuple[str, ...]
    clustering_key: tuple[str, ...] = ()
    clustering_descending: bool = False

    def __post_init__(self) -> None:
        for col in (*self.partition_key, *self.clustering_key):
            f = self.record.field(col)
            if not f.required:
                raise ValueError(f"{self.name}: key column {col!r} must be required")
            if f.type == "list<string>":
                raise ValueError(f"{self.name}: key column {col!r} cannot be a list")

    @property
    def primary_key(self) -> tuple[str, ...]:
        return (*self.partition_key, *self.clustering_key)


@dataclass(frozen=True)
class LakeTable:
    """A Parquet dataset under `var/lake/<path>`, partitioned by event time."""

    path: str
    record: Record
    time_field: str
    partitioning: str = "hour"  # "hour" (dt=/hour=) or "window15" (dt=/window=HHMM)


# ---- platform ------------------------------------------------------------------------------
DEAD_LETTER = Record(
    "dead_letter",
    (
        Field("topic", "string", doc="topic the message came from"),
        Field("reason", "string", doc="why it was rejected, meant for a person"),
        Field("payload", "string", doc="the original message, verbatim"),
        Field("failed_at", "timestamp"),
    ),
    doc="A message that could not be processed, with the reason.",
)

# ---- typeahead (collection) ------------------------------------------------------------------
SEARCH_EVENT = Record(
    "search_event",
    (
        Field("user_id", "string", max_length=128),
        Field("query", "string", max_length=200, doc="normalised: NFKC, lower case, whitespace collapsed"),
        Field("region", "string", max_length=32),
        Field("ts", "timestamp"),
    ),
    doc="One search a user typed.",
)

QUERY_COUNT = Record(
    "query_count",
    (
        Field("region", "string"),
        Field("window_start", "timestamp"),
        Field("query", "string"),
        Field("count", "long"),
    ),
    doc="How often a query was searched in one region during one window.",
)

PHRASE_FREQUENCY = Record(
    "phrase_frequency",
    (
        Field("region", "string", doc="a region, or 'global' for all regions together"),
        Field("window_start", "timestamp", doc="the state is as of the end of this 15-minute window"),
        Field("query", "string"),
        Field("freq", "double", doc="exponentially decayed search count"),
    ),
    doc="Running, time-decayed frequency of a phrase: the aggregator's state between windows.",
)

# ---- typeahead (serving) -----------------------------------------------------------------------
USER_RECENT_QUERY = Record(
    "user_recent_query",
    (
        Field("user_id", "string"),
        Field("ts", "timestamp"),
        Field("query", "string"),
        Field("region", "string"),
    ),
    doc="A user's own recent searches, kept for personalised suggestions (rows expire by TTL).",
)

EVENTS: dict[str, Event] = {
    "search-events": Event("search-events", SEARCH_EVENT, key="user_id"),
}

LAKE_TABLES: dict[str, LakeTable] = {
    "search_events": LakeTable("typeahead/search_events", SEARCH_EVENT, time_field="ts", partitioning="window15"),
    "query_counts": LakeTable("typeahead/query_counts", QUERY_COUNT, time_field="window_start", partitioning="window15"),
    # the platform's sample job (jobs/sample_window_counts.py) writes its own copy, apart from typeahead's
    "sample_window_counts": LakeTable("sample/window_counts", QUERY_COUNT, time_field="window_start",
                                      partitioning="window15"),
    "phrase_frequencies": LakeTable("typeahead/phrase_frequencies", PHRASE_FREQUENCY, time_field="window_start",
                                    partitioning="window15"),
}

SERVING_TABLES: dict[str, ServingTable] = {
    "query_counts": ServingTable("query_counts", QUERY_COUNT, partition_key=("region",),
                                 clustering_key=("window_start", "query"), clustering_descending=True),
    "user_recent_queries": ServingTable("user_recent_queries", USER_RECENT_QUERY, partition_key=("user_id",),
                                        clustering_key=("ts", "query"), clustering_descending=True),
}

RECORDS: dict[str, Record] = {
    r.name: r for r in (DEAD_LETTER, SEARCH_EVENT, QUERY_COUNT, PHRASE_FREQUENCY, USER_RECENT_QUERY)
}
