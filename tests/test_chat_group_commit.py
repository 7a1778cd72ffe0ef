"""The gateway's group commit (embedded: frames handled on the event loop). Frames that arrive in one turn
of the loop are stored in one transaction; nothing of it is routed or acknowledged before it commits, and
when the commit fails every frame is handled again on its own. The oracle is what the test sent: each
send answered once with `sent`, each message delivered once with the id of its ack, the conversation's
seqs 1..n with no gap, and the store holding exactly the acknowledged messages."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import orjson

from schemas.records import SERVING_TABLES
from sixfold.chat.gateway import Connection, Gateway
from sixfold.chat.service import ChatService, direct_conversation
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore


class CommitFailsOnce(SQLiteStore):
    """A store whose next outermost batch fails at its end (as a full disk would at COMMIT): rolled back."""

    fail = 0
    outer_batches = 0

    @contextmanager
    def batch(self) -> Iterator[None]:
        outer = not getattr(self._local, "depth", 0)
        self.outer_batches += outer
        with super().batch():
            yield
            if outer and self.fail:
                self.fail -= 1
                raise sqlite3.OperationalError("database or disk is full")


def _user(store: SQLiteStore) -> int:
    user_id = int(uuid.uuid4().int % 2**62)
    now = datetime.now(UTC)
    store.upsert(SERVING_TABLES["users"], {"user_id": user_id, "username": f"u{user_id}", "created_at": now})
    store.upsert(SERVING_TABLES["chat_devices"], {"user_id": user_id, "device_id": "d", "public_key": None,
                                                  "credential_id": uuid.uuid4().hex, "created_at": now})
    return user_id


def _exchange(settings: Settings, fail: int, route_fails: bool = False,
              ) -> tuple[CommitFailsOnce, dict[str, list[dict]], list[int], int]:
    """Three senders send two messages each to one recipient in one turn of the loop; every connection's
    frames, in the order its writer would send them."""
    store = CommitFailsOnce(settings.sqlite_path)
    gateway = Gateway(ChatService(store, Sequencer(3)), bus=None, inline=True)
    if route_fails:
        def route(_deliveries: list) -> None:
            raise ConnectionError("the bus and the registry are gone")

        gateway.route = route  # type: ignore[method-assign]
    senders, recipient = [_user(store) for _ in range(3)], _user(store)
    store.fail = fail

    async def scenario() -> dict[str, list[dict]]:
        conns = {name: Connection(user, "d", asyncio.get_running_loop(), held=None)
                 for name, user in [("s0", senders[0]), ("s1", senders[1]), ("s2", senders[2]), ("r", recipient)]}
        for conn in conns.values():
            gateway.connections[(conn.user_id, conn.device_id)] = conn
        before = store.outer_batches
        for n in range(2):
            for i in range(3):
                gateway._enqueue(conns[f"s{i}"], orjson.dumps({"type": "send", "client_msg_id": f"c{i}-{n}",
                                                               "to": recipient, "body": f"from {i} #{n}"}).decode())
        for _ in range(5):
            await asyncio.sleep(0)
        assert store.outer_batches - before == (1 if not fail else 1 + 6)  # one group, or the group then each alone
        return {name: [orjson.loads(f) for _, f in _drain(conn.queue)] for name, conn in conns.items()}

    return store, asyncio.run(scenario()), senders, recipient


def _drain(queue: asyncio.Queue) -> list[tuple[str | None, str]]:
    out = []
    while not queue.empty():
        out.append(queue.get_nowait())
    return out


def _check(store: SQLiteStore, frames: dict[str, list[dict]], senders: list[int], recipient: int,
           recipient_frames: list[dict]) -> None:
    acks = {}
    for i in range(3):
        got = frames[f"s{i}"]
        assert [(f["type"], f["status"], f["client_msg_id"]) for f in got] == \
            [("ack", "sent", f"c{i}-0"), ("ack", "sent", f"c{i}-1")]
        assert [f["seq"] for f in got] == [1, 2]  # each sender's own conversation with the recipient
        acks.update({f["message_id"]: (i, f["seq"]) for f in got})
    messages = [f for f in recipient_frames if f["type"] == "message"]
    assert len(messages) == 6 == len({m["message_id"] for m in messages})  # each once
    assert {m["message_id"]: (senders.index(m["from"]), m["seq"]) for m in messages} == acks
    for i, sender in enumerate(senders):
        assert [m["body"] for m in messages if m["from"] == sender] == [f"from {i} #0", f"from {i} #1"]  # FIFO
        conversation = direct_conversation(sender, recipient)
        stored = store.query(SERVING_TABLES["chat_messages"], {"conversation_id": conversation})
        assert sorted((r["seq"], r["message_id"]) for r in stored) == \
            sorted((seq, mid) for mid, (j, seq) in acks.items() if j == i)


def test_frames_of_one_loop_turn_commit_together_and_are_answered_after(settings: Settings) -> None:
    store, frames, senders, recipient = _exchange(settings, fail=0)
    _check(store, frames, senders, recipient, frames["r"])


def test_a_failed_group_commit_routes_nothing_and_each_frame_is_handled_alone(settings: Settings) -> None:
    store, frames, senders, recipient = _exchange(settings, fail=1)
    assert store.fail == 0  # the group's commit did fail
    _check(store, frames, senders, recipient, frames["r"])  # and nothing of the failed attempt was seen twice or lost


def test_routing_that_fails_after_the_commit_still_acknowledges_and_the_pending_store_delivers(
        settings: Settings) -> None:
    store, frames, senders, recipient = _exchange(settings, fail=0, route_fails=True)
    assert [m for m in frames["r"] if m["type"] == "message"] == []  # nothing reached the recipient live ...
    acks = [f for i in range(3) for f in frames[f"s{i}"]]
    assert [(f["type"], f["status"]) for f in acks] == [("ack", "sent")] * 6  # ... yet every send was acknowledged
    pending = [orjson.loads(frame) for _, frame in ChatService(store, Sequencer(4)).pending(recipient, "d")]
    _check(store, frames, senders, recipient, pending)  # and what the recipient gets on its next connection is all of it


def test_a_connection_remembers_a_bounded_number_of_sent_entries(settings: Settings, monkeypatch) -> None:
    """A frame routed live and replayed from pending goes out once; what a connection remembers for that is
    bounded (plus what it replayed at connect), so a connection that stays up does not grow with its traffic."""
    from sixfold.chat import gateway as module

    monkeypatch.setattr(module, "SENT_ENTRIES_KEPT", 50)
    store = SQLiteStore(settings.sqlite_path)
    gateway = Gateway(ChatService(store, Sequencer(3)), bus=None, inline=True)

    class Socket:  # the writer's end of a WebSocket: what it was asked to send, in order
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send_text(self, text: str) -> None:
            self.sent.append(text)

    async def scenario() -> tuple[list[str], Connection]:
        conn = Connection(1, "d", asyncio.get_running_loop(), held=None)
        conn.replayed_n = 20
        socket = Socket()
        writer = asyncio.create_task(gateway._write(socket, conn))
        entries = [f"d:1:2|{n:020d}|r:read:2:d" for n in range(300)]
        for entry in entries:
            conn.push("~" + entry, entry)
        conn.push("~" + entries[-1], "again")  # the newest again: still remembered
        conn.push("~" + entries[0], "oldest again")  # long forgotten: sent again
        for _ in range(10):
            await asyncio.sleep(0)
        writer.cancel()
        return socket.sent, conn

    sent, conn = asyncio.run(scenario())
    assert sent == [f"d:1:2|{n:020d}|r:read:2:d" for n in range(300)] + ["oldest again"]
    assert len(conn.sent_entries) == 50 + 20
