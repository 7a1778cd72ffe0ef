"""What the `typeahead` DAG's Python tasks call: thin wrappers that read settings and log a line."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sixfold.platform.settings import Settings
from sixfold.typeahead import pipeline

GRACE = timedelta(seconds=30)  # late events of a window still arriving through the bus


def window_closed(data_interval_end: datetime, now: datetime | None = None) -> bool:
    now = now or datetime.now(timezone.utc)
    return now >= data_interval_end + GRACE


def land_pending() -> dict[str, Any]:
    """Land what is pending on `search-events` in the lake (the landing group's offsets)."""
    from sixfold.typeahead.collection import land_search_events

    report = land_search_events(Settings.from_env())
    return {k: v for k, v in vars(report).items() if k != "partitions"}


def remember_pending() -> dict[str, Any]:
    """Upsert what is pending on `search-events` into users' recent queries (its own group's offsets)."""
    from sixfold.typeahead.collection import remember_search_events

    return dict(vars(remember_search_events(Settings.from_env())))


def compact(window_start: datetime, window_end: datetime) -> dict[str, Any]:
    """Fold the closed window's landed batch files into one file, duplicates removed."""
    return pipeline.compact_events(Settings.from_env(), window_start, window_end)


def check(window_start: datetime) -> dict[str, Any]:
    return pipeline.check_window(Settings.from_env(), window_start)


def build(window_start: datetime) -> str:
    return pipeline.build_artifact(Settings.from_env(), window_start)


def validate(version: str, window_start: datetime) -> str:
    pipeline.validate_artifact(Settings.from_env(), version, window_start)
    return version


def swap(version: str) -> dict[str, Any]:
    return pipeline.swap(Settings.from_env(), version)
