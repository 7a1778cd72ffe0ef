"""The chat message service on both stores (SQLite; real Cassandra on the cluster profile): sequence numbers
from racing senders, pending entries until acknowledged, receipts queued for the sender's devices."""

from __future__ import annotations

import threading
import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from schemas.records import SERVING_TABLES
from sixfold.chat.service import ChatError, ChatService, direct_conversation
from sixfold.platform.identity import Credentials
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
def service(request, settings: Settings):
    if request.param == "sqlite":
        from sixfold.platform.store import SQLiteStore

        store = SQLiteStore(settings.sqlite_path)
    else:
        from sixfold.platform.store import CassandraStore

        store = CassandraStore(replace(request.getfixturevalue("services_running"), cassandra_keyspace="sixfold_chat"))
    yield ChatService(store, Sequencer(worker=5), Credentials(store))
    store.close()


def users(service: ChatService, n: int) -> list[int]:
    ids = []
    for _ in range(n):
        user_id = int(uuid.uuid4().int % 2**62)
        service.store.upsert(SERVING_TABLES["users"], {"user_id": user_id, "username": f"u{user_id}",
                                                       "created_at": datetime.now(UTC)})
        ids.append(user_id)
    return ids


def test_racing_senders_get_one_gapless_sequence_and_pending_waits_for_acks(service) -> None:
    ann, bob = users(service, 2)
    service.register_device(ann, "a1")
    service.register_device(ann, "a2")
    service.register_device(bob, "b1")
    routed: list = []
    lock = threading.Lock()

    def route(deliveries) -> None:
        with lock:
            routed.extend(deliveries)

    acks: list[dict] = []

    def talk(sender: int, device: str, to: int, tag: str) -> None:
        for i in range(20):
            acks.append(service.send(sender, device, {"client_msg_id": f"{tag}{i}", "to": to, "body": f"{tag}{i}"},
                                     route).ack)

    threads = [threading.Thread(target=talk, args=args) for args in
               ((ann, "a1", bob, "x"), (ann, "a2", bob, "y"), (bob, "b1", ann, "z"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(a["seq"] for a in acks) == list(range(1, 61))  # one conversation: one gapless sequence
    conversation = direct_conversation(ann, bob)
    assert {a["conversation_id"] for a in acks} == {conversation}
    pending = service.pending(bob, "b1")
    assert len(pending) == 40  # every message from Ann's two devices, none of Bob's own
    assert [int(e.split("|")[1]) for e, _ in pending] == sorted(int(e.split("|")[1]) for e, _ in pending)
    message = next(a for a in acks if a["client_msg_id"] == "x0")
    service.receipt(bob, "b1", {"message_id": message["message_id"], "status": "delivered"}, route)
    assert len(service.pending(bob, "b1")) == 39
    receipts = [d for d in routed if "|r:delivered" in d[2]]
    assert sorted(d[1] for d in receipts) == ["a1", "a2"]  # every device of the sender
    assert len([e for e, _ in service.pending(ann, "a2") if "|r:" in e]) == 1  # kept until it is delivered
    with pytest.raises(ChatError) as own:
        service.receipt(ann, "a1", {"message_id": message["message_id"], "status": "read"}, route)
    assert own.value.status == 403
    again = service.send(ann, "a1", {"client_msg_id": "x0", "to": bob, "body": "x0"}, route)
    assert again.duplicate and again.ack == message
