"""Groups: membership (owner, members, up to `ChatService.max_group_members`) and the group fanout.

A group is a conversation `g:<group_id>`; its members are `chat_members` rows, so the message
service's membership checks (send, receipts, history) read the same rows. The owner adds and
removes members, a member may leave; the owner cannot leave (the group would have no one to
manage it).

A group message is persisted by the gateway that took it (seq, ack `sent`) and published on
`chat-group-messages`, keyed by conversation, so one consumer sees a group's messages in order.
The fanout consumer queues a pending entry for every member device but the sender's
(`ChatService.fan_out_group`), then routes them the way a gateway does: to the gateway holding a
device (`chat-deliveries`), or, for a device connected nowhere, a `notifications` event. Receipts
per member then take the normal ack path to every device of the sender.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from schemas.records import EVENTS, SERVING_TABLES
from sixfold.chat.service import ChatError, ChatService
from sixfold.platform import schema
from sixfold.platform.bus import EventBus, dead_letter
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

GROUPS = SERVING_TABLES["chat_groups"]
MEMBERS = SERVING_TABLES["chat_members"]
USERS = SERVING_TABLES["users"]
GROUP_MESSAGES = EVENTS["chat-group-messages"]
FANOUT_GROUP = "chat-group-fanout"
MAX_NAME_CHARS = 100


def conversation_of(group_id: int) -> str:
    return f"g:{group_id}"


class Groups:
    """Group membership on the serving store; errors are `ChatError`s with the HTTP status that says why."""

    def __init__(self, store: ServingStore, sequencer: Sequencer, max_members: int = 256,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.store, self.sequencer, self.max_members, self.clock = store, sequencer, max_members, clock
        self._lock = threading.Lock()  # one process's adds never race past the limit

    def create(self, owner_id: int, name: str, members: list[int]) -> dict[str, Any]:
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ChatError(422, f"name: give 1 to {MAX_NAME_CHARS} characters")
        wanted = sorted(set(members) - {owner_id})
        if len(wanted) + 1 > self.max_members:
            raise ChatError(422, f"members: {len(wanted) + 1} with the owner; a group has at most "
                                 f"{self.max_members} members")
        self._require_users(wanted)
        group_id = self.sequencer.next_id()
        now = self.clock()
        self.store.upsert(GROUPS, {"group_id": group_id, "name": name, "owner_id": owner_id, "created_at": now})
        self.store.upsert_many(MEMBERS, [{"group_id": group_id, "user_id": user, "joined_at": now,
                                          "role": "owner" if user == owner_id else "member"}
                                         for user in [owner_id, *wanted]])
        return {"group_id": group_id, "conversation_id": conversation_of(group_id)}

    def get(self, group_id: int, acting: int) -> dict[str, Any]:
        group = self._group(group_id)
        members = self._members(group_id)
        if acting not in members:
            raise ChatError(403, f"user {acting} is not a member of group {group_id}: only its members see it "
                                 f"(this token acts for user {acting})", "forbidden")
        return {"group_id": group_id, "conversation_id": conversation_of(group_id), "name": group["name"],
                "owner_id": group["owner_id"], "members": sorted(members)}

    def add_member(self, group_id: int, acting: int, user_id: int) -> dict[str, Any]:
        group = self._group(group_id)
        if acting != group["owner_id"]:
            raise ChatError(403, f"group {group_id}: only its owner adds members (this token acts for user "
                                 f"{acting})", "forbidden")
        self._require_users([user_id])
        with self._lock:
            members = self._members(group_id)
            if user_id in members:
                raise ChatError(409, f"user {user_id} is already a member of group {group_id}", "conflict")
            if len(members) >= self.max_members:
                raise ChatError(422, f"group {group_id} has {len(members)} members, the most a group may have; "
                                     "remove one first", "invalid")
            self.store.upsert(MEMBERS, {"group_id": group_id, "user_id": user_id, "role": "member",
                                        "joined_at": self.clock()})
        return self.get(group_id, acting)

    def remove_member(self, group_id: int, acting: int, user_id: int) -> None:
        group = self._group(group_id)
        if acting != group["owner_id"] and acting != user_id:
            raise ChatError(403, f"group {group_id}: only its owner removes others; a member removes only "
                                 f"themself (this token acts for user {acting})", "forbidden")
        if user_id == group["owner_id"]:
            raise ChatError(409, f"user {user_id} owns group {group_id} and cannot leave it", "conflict")
        if user_id not in self._members(group_id):
            raise ChatError(404, f"user {user_id} is not a member of group {group_id}", "not_found")
        self.store.delete(MEMBERS, {"group_id": group_id, "user_id": user_id})

    def _group(self, group_id: int) -> dict[str, Any]:
        row = self.store.get(GROUPS, {"group_id": group_id})
        if row is None:
            raise ChatError(404, f"no group {group_id}", "not_found")
        return row

    def _members(self, group_id: int) -> list[int]:
        return [row["user_id"] for row in self.store.query(MEMBERS, {"group_id": group_id}, columns=("user_id",))]

    def _require_users(self, users: list[int]) -> None:
        rows = self.store.get_many(USERS, [{"user_id": u} for u in users]) if users else []
        missing = [u for u, row in zip(users, rows) if row is None]
        if missing:
            raise ChatError(404, f"members: no user {', '.join(map(str, missing))}", "not_found")


# ---- the fanout consumer ----------------------------------------------------------------------------
@dataclass
class FanoutReport:
    received: int = 0
    messages: int = 0
    deliveries: int = 0
    rejected: int = 0


def fan_out(service: ChatService, bus: EventBus, *, group: str = FANOUT_GROUP, idle_timeout_s: float = 1.0,
            on_batch: Callable[[FanoutReport], None] | None = None) -> FanoutReport:
    """Consume `chat-group-messages` until idle: queue each message's pending entries, route them, commit.

    The entries are queued before the commit, so a crash replays the batch: the same entries again
    (idempotent), and a device that already got one skips it by its entry.
    """
    from sixfold.chat.gateway import Gateway

    # no connections of its own: every device is elsewhere or offline; a bus failure fails the batch (it replays)
    router = Gateway(service, bus, queue_when_bus_fails=False)
    total = FanoutReport()
    consumer = bus.consumer(GROUP_MESSAGES.topic, group)
    try:
        while True:
            messages = consumer.poll(max_records=1000, timeout_s=idle_timeout_s)
            if not messages:
                break
            report = FanoutReport(received=len(messages))
            for message in messages:
                try:
                    event = schema.validate_event(GROUP_MESSAGES, message.json())
                except ValueError as exc:
                    dead_letter(bus, message, str(exc))
                    report.rejected += 1
                    continue
                try:
                    deliveries = service.fan_out_group(event)
                except (ChatError, ValueError) as exc:  # e.g. a conversation that is no group
                    dead_letter(bus, message, str(exc))
                    report.rejected += 1
                    continue
                router.route(deliveries)
                report.messages += 1
                report.deliveries += len(deliveries)
            consumer.commit()
            for name in ("received", "messages", "deliveries", "rejected"):
                setattr(total, name, getattr(total, name) + getattr(report, name))
            if on_batch:
                on_batch(report)
    finally:
        consumer.close()
    return total


def fanout_work(settings: Settings, group: str, idle_s: float, resources: ExitStack,
                on_batch: Callable[[FanoutReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): fan group messages out to member devices."""
    from contextlib import closing

    from sixfold.platform.bus import open_bus
    from sixfold.platform.ids import Sequencer
    from sixfold.platform.store import open_store

    store = resources.enter_context(closing(open_store(settings)))
    bus = resources.enter_context(closing(open_bus(settings)))
    service = ChatService(store, Sequencer(0))  # fanout issues no ids

    def one_pass() -> dict[str, int]:
        report = fan_out(service, bus, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        return {"received": report.received, "messages": report.messages, "deliveries": report.deliveries,
                "rejected": report.rejected}

    return one_pass


def consumers() -> list[Any]:
    """Chat's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("chat-group-fanout", FANOUT_GROUP, fanout_work)]
