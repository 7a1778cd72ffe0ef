"""Retention: the servers keep a message 30 days (the course), then it goes with its receipts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sixfold.chat.service import RETENTION_DAYS, ChatService
from sixfold.platform.settings import Settings


def retention_cutoff(now: datetime) -> datetime:
    """Messages sent before this are past retention at `now` (naive: UTC)."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    # a plain datetime: Airflow's pendulum DateTime drops its zone in astimezone(UTC)
    return datetime.fromisoformat(now.isoformat()).astimezone(UTC) - timedelta(days=RETENTION_DAYS)


def purge_chat(settings: Settings, now: datetime | None = None) -> dict[str, Any]:
    """The chat_retention DAG: delete the messages (and their receipts) older than 30 days at `now`."""
    from sixfold.platform.ids import Sequencer
    from sixfold.platform.store import open_store

    now = now or datetime.now(UTC)
    store = open_store(settings)
    try:
        cutoff = retention_cutoff(now)
        return {"cutoff": cutoff.isoformat(), **ChatService(store, Sequencer(0)).purge_older_than(cutoff)}
    finally:
        store.close()
