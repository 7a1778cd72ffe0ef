"""Chat retention: messages older than 30 days go with their receipts, newer ones stay; checked against a
brute force over what was sent (a controlled clock), through `purge_chat` and the chat_retention DAG."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.records import SERVING_TABLES
from sixfold.chat.groups import Groups
from sixfold.chat.retention import purge_chat, retention_cutoff
from sixfold.chat.service import ChatService
from sixfold.platform.airflow_env import DAGS_FOLDER
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

MESSAGES = SERVING_TABLES["chat_messages"]
REFS = SERVING_TABLES["chat_message_refs"]
RECEIPTS = SERVING_TABLES["chat_receipts"]
DAYS = SERVING_TABLES["chat_conversation_days"]
USERS = (1, 2, 3, 4)


def converse(settings: Settings, now: datetime, n: int = 60, seed: int = 3) -> list[dict[str, Any]]:
    """`n` messages at random times over the 80 days before `now` (and one exactly 30 days before), in
    three direct conversations and a group, each read by its recipients; returns what was sent."""
    rng = random.Random(seed)
    clock = [now.timestamp()]
    store = open_store(settings)
    try:
        store.upsert_many(SERVING_TABLES["users"], [{"user_id": u, "username": f"u{u}", "created_at": now - timedelta(days=90)}
                                                    for u in USERS])
        service = ChatService(store, Sequencer(2), clock=lambda: clock[0])
        group_id = Groups(store, Sequencer(3)).create(1, "g", [2, 3, 4])["group_id"]
        times = sorted([now - timedelta(seconds=rng.uniform(0, 80 * 86_400)) for _ in range(n - 1)]
                       + [retention_cutoff(now)])
        sent = []
        for i, at in enumerate(times):
            clock[0] = at.timestamp()
            sender = rng.choice(USERS)
            target = rng.choice([{"to": u} for u in USERS if u != sender] + ([{"group_id": group_id}]))
            frame = {"client_msg_id": f"m{i}", "body": f"body {i}", **target}
            out = service.send(sender, "phone", frame, lambda deliveries: None)
            readers = ([target["to"]] if "to" in target else [u for u in USERS if u != sender])
            for reader in readers:
                service.receipt(reader, "phone", {"message_id": out.ack["message_id"], "status": "read"},
                                lambda deliveries: None)
            sent.append({"conversation_id": out.ack["conversation_id"], "seq": out.ack["seq"], "at": at,
                         "message_id": out.ack["message_id"], "readers": len(readers)})
        return sent
    finally:
        store.close()


def left(settings: Settings, sent: list[dict[str, Any]]) -> dict[str, Any]:
    store = open_store(settings)
    try:
        conversations = {m["conversation_id"] for m in sent}
        return {
            "messages": {(c, r["seq"]) for c in conversations for r in store.query(MESSAGES, {"conversation_id": c})},
            "refs": {m["message_id"] for m in sent if store.get(REFS, {"message_id": m["message_id"]}) is not None},
            "receipts": sum(len(store.query(RECEIPTS, {"conversation_id": m["conversation_id"], "seq": m["seq"]}))
                            for m in sent),
            "days": {r["day"] for r in store.scan(DAYS)},
        }
    finally:
        store.close()


def expected(sent: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """The brute force: what a message sent at `at` should leave, with no reference to the code's loops."""
    kept = [m for m in sent if m["at"] >= now - timedelta(days=30)]
    return {"messages": {(m["conversation_id"], m["seq"]) for m in kept}, "refs": {m["message_id"] for m in kept},
            "receipts": sum(m["readers"] for m in kept)}


@pytest.mark.unit
def test_purge_deletes_exactly_what_is_older_than_30_days(settings: Settings) -> None:
    now = datetime(2026, 5, 20, 3, 30, tzinfo=UTC)
    sent = converse(settings, now)
    before = left(settings, sent)
    assert len(before["messages"]) == len(sent) and before["receipts"] == sum(m["readers"] for m in sent)
    want = expected(sent, now)
    assert 0 < len(want["messages"]) < len(sent)  # some of each
    report = purge_chat(settings, now)
    assert report["deleted"] == len(sent) - len(want["messages"])
    after = left(settings, sent)
    assert {k: after[k] for k in want} == want
    # the message exactly 30 days old stays; the day index keeps no day before the cutoff's
    assert any(m["at"] == retention_cutoff(now) and (m["conversation_id"], m["seq"]) in after["messages"] for m in sent)
    assert min(after["days"]) == retention_cutoff(now).strftime("%Y-%m-%d")
    # a rerun deletes nothing more; a day later, that day's messages go too
    assert purge_chat(settings, now)["deleted"] == 0
    later = now + timedelta(days=1)
    purge_chat(settings, later)
    assert {k: left(settings, sent)[k] for k in want} == expected(sent, later)


@pytest.mark.airflow
def test_chat_retention_dag_purges_by_its_interval_end(airflow: Settings) -> None:
    from airflow.models.dagbag import DagBag
    from airflow.timetables.interval import CronDataIntervalTimetable

    settings = airflow
    bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    assert bag.import_errors == {}
    dag = bag.dags["chat_retention"]
    assert set(dag.tags) == {"chat"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable._expression == "0 0 * * *"
    end = datetime(2026, 3, 4, tzinfo=UTC)
    sent = converse(settings, end, n=30, seed=8)
    run = dag.test(logical_date=end)  # a manual run: the logical date is the end of its interval
    assert run.state == "success"
    assert run.data_interval_end == end and end - run.data_interval_start == timedelta(days=1)
    want = expected(sent, run.data_interval_end)
    assert 0 < len(want["messages"]) < len(sent)
    assert {k: v for k, v in left(settings, sent).items() if k in want} == want
