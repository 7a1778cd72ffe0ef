"""The message service: devices, conversations, sending, receipts and what each device still owes.

Everything here is synchronous store work; the gateway (`gateway.py`) calls it off the event loop
and moves the frames. The order of a send, so that nothing acknowledged is ever lost:

1. a resend of a `client_msg_id` this device already sent answers the first send's ack again
   (`chat_sent`), never a second message;
2. under the conversation's lock, the next `seq` of the conversation (the store's atomic add, so
   several gateway processes agree), then the message (`chat_messages`, `chat_message_refs`) and a
   pending entry for every recipient device and the sender's other devices (`chat_pending`);
3. only then the `sent` ack, and the deliveries, handed to `route` while the lock is held, so
   one gateway hands a conversation's frames to its connections in `seq` order.

A device acknowledges what it got (`delivered`) and what its user saw (`read`): its pending
entry goes, the receipt is kept (`chat_receipts`) and a receipt frame is queued for every device
of the sender, as a pending entry too, so a sender who is offline gets it when they return.
Only a member of the conversation other than the sender may acknowledge a message; anything else
is refused with the reason.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.records import SERVING_TABLES
from sixfold.platform.errors import RequestError
from sixfold.platform.ids import Sequencer
from sixfold.platform.store import ServingStore

DEVICES = SERVING_TABLES["chat_devices"]
MESSAGES = SERVING_TABLES["chat_messages"]
REFS = SERVING_TABLES["chat_message_refs"]
SENT = SERVING_TABLES["chat_sent"]
PENDING = SERVING_TABLES["chat_pending"]
RECEIPTS = SERVING_TABLES["chat_receipts"]
SEQUENCES = SERVING_TABLES["chat_sequences"]
GROUPS = SERVING_TABLES["chat_groups"]
MEMBERS = SERVING_TABLES["chat_members"]
DAYS = SERVING_TABLES["chat_conversation_days"]
USERS = SERVING_TABLES["users"]

MAX_BODY_BYTES = 64 * 1024  # a text message, or an encrypted envelope of one for a few devices
RETENTION_DAYS = 30  # the course: the servers keep messages for 30 days
DEVICE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CLIENT_MSG_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


class ChatError(RequestError):
    """A refused chat operation: over HTTP a 4xx, on the WebSocket an `error` frame with the reason."""

    def __init__(self, status: int, message: str, code: str = "invalid") -> None:
        super().__init__(status, message)
        self.code = code


Delivery = tuple[int, str, str, str]  # (user_id, device_id, pending entry, frame JSON)
Route = Callable[[list[Delivery]], None]


@dataclass
class Sent:
    ack: dict[str, Any]
    deliveries: list[Delivery] = field(default_factory=list)
    duplicate: bool = False
    group: dict[str, Any] | None = None  # a group message for the fanout consumer


def direct_conversation(a: int, b: int) -> str:
    low, high = sorted((a, b))
    return f"d:{low}:{high}"


def entry_of(conversation_id: str, seq: int, suffix: str = "m") -> str:
    return f"{conversation_id}|{seq:020d}|{suffix}"


def _frame(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj, option=orjson.OPT_UTC_Z | orjson.OPT_NAIVE_UTC).decode()


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ChatService:
    def __init__(self, store: ServingStore, sequencer: Sequencer, credentials: Any = None,
                 clock: Callable[[], float] = time.time, max_group_members: int = 256) -> None:
        self.store = store
        self.sequencer = sequencer
        self.credentials = credentials
        self.clock = clock
        self.max_group_members = max_group_members
        self._locks = [threading.Lock() for _ in range(256)]
        self._devices_cache: dict[int, tuple[float, list[str]]] = {}
        self._known_users: set[int] = set()  # users seen to exist (accounts are never deleted)
        self._days_written: set[tuple[str, str]] = set()  # (day, conversation) already in the retention index

    # ---- devices --------------------------------------------------------------------------------
    def register_device(self, user_id: int, device_id: Any, public_key: str | None = None) -> str:
        """A device token for `device_id` of the user (a re-registration revokes the old token)."""
        if not isinstance(device_id, str) or not DEVICE_ID_RE.match(device_id):
            raise ChatError(422, f"device_id {device_id!r}: use 1 to 64 letters, digits, '.', '_' or '-'")
        if public_key is not None:
            check_public_key(public_key)
        if self.store.get(USERS, {"user_id": user_id}) is None:
            raise ChatError(404, f"user {user_id} does not exist", "not_found")
        old = self.store.get(DEVICES, {"user_id": user_id, "device_id": device_id})
        token = self.credentials.issue(user_id, "device", label=device_id)
        credential_id = token.split("_", 1)[1].split(".", 1)[0]
        self.store.upsert(DEVICES, {"user_id": user_id, "device_id": device_id, "public_key": public_key,
                                    "credential_id": credential_id, "created_at": self._now()})
        if old is not None:
            from schemas.records import SERVING_TABLES as tables

            self.store.delete(tables["credentials"], {"credential_id": old["credential_id"]})
        self._devices_cache.pop(user_id, None)
        return token

    def devices(self, user_id: int) -> list[dict[str, Any]]:
        return self.store.query(DEVICES, {"user_id": user_id})

    def device_ids(self, user_id: int) -> list[str]:
        hit = self._devices_cache.get(user_id)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        ids = [row["device_id"] for row in self.store.query(DEVICES, {"user_id": user_id}, columns=("device_id",))]
        self._devices_cache[user_id] = (now + 2.0, ids)  # a new device shows within 2 s (at once here)
        return ids

    # ---- conversations ----------------------------------------------------------------------------
    def members(self, conversation_id: str) -> list[int]:
        kind, _, rest = conversation_id.partition(":")
        if kind == "d":
            low, _, high = rest.partition(":")
            return sorted({int(low), int(high)})
        if kind == "g":
            return [row["user_id"] for row in self.store.query(MEMBERS, {"group_id": int(rest)})]
        raise ChatError(404, f"no conversation {conversation_id!r}", "not_found")

    def require_member(self, conversation_id: str, user_id: int) -> list[int]:
        try:
            members = self.members(conversation_id)
        except ValueError:
            raise ChatError(404, f"no conversation {conversation_id!r}", "not_found") from None
        if user_id not in members:
            raise ChatError(403, f"user {user_id} is not a member of conversation {conversation_id}", "forbidden")
        return members

    # ---- sending ----------------------------------------------------------------------------------
    def send(self, sender_id: int, sender_device: str, frame: dict[str, Any], route: Route) -> Sent:
        client_msg_id = frame.get("client_msg_id")
        if not isinstance(client_msg_id, str) or not CLIENT_MSG_ID_RE.match(client_msg_id):
            raise ChatError(422, "send: client_msg_id must be 1 to 64 letters, digits, '.', '_', ':' or '-'")
        body = frame.get("body")
        if not isinstance(body, str):
            raise ChatError(422, "send: body must be a string (ciphertext or text)", "invalid")
        if len(body.encode("utf-8")) > MAX_BODY_BYTES:
            raise ChatError(413, f"send: body is {len(body.encode('utf-8')):,} bytes; at most {MAX_BODY_BYTES:,} "
                                 "(send media through POST /v1/chat/media)", "too_large")
        seen = self.store.get(SENT, {"sender_id": sender_id, "sender_device": sender_device,
                                     "client_msg_id": client_msg_id})
        if seen is not None:  # a resend: the same ack again, nothing new
            return Sent(self._ack(seen["message_id"], client_msg_id, seen["conversation_id"], seen["seq"], "sent"),
                        duplicate=True)
        to, group_id = frame.get("to"), frame.get("group_id")
        if (to is None) == (group_id is None):
            raise ChatError(422, "send: give exactly one of `to` (a user_id) or `group_id`")
        if to is not None:
            if isinstance(to, bool) or not isinstance(to, int):
                raise ChatError(422, f"send: to must be a user_id (an integer), got {to!r}")
            if to not in self._known_users:
                if self.store.get(USERS, {"user_id": to}) is None:
                    raise ChatError(404, f"send: user {to} does not exist", "not_found")
                if len(self._known_users) > 1_000_000:
                    self._known_users.clear()
                self._known_users.add(to)
            conversation_id = direct_conversation(sender_id, to)
            recipients = sorted({sender_id, to})
        else:
            if isinstance(group_id, bool) or not isinstance(group_id, int):
                raise ChatError(422, f"send: group_id must be an integer, got {group_id!r}")
            conversation_id = f"g:{group_id}"
            recipients = self.require_member(conversation_id, sender_id)
        with self._locks[hash(conversation_id) % len(self._locks)]:
            with self.store.batch():  # one commit for the whole message (SQLite); all or nothing
                sent, day = self._store_message(sender_id, sender_device, client_msg_id, body, conversation_id,
                                                recipients, group_id)
            self._days_written.add(day)
            if sent.deliveries:
                route(sent.deliveries)  # after the commit: nobody sees a message that could still vanish
            return sent

    def _store_message(self, sender_id: int, sender_device: str, client_msg_id: str, body: str,
                       conversation_id: str, recipients: list[int], group_id: int | None) -> tuple[Sent, tuple]:
        seq = self.store.add(SEQUENCES, {"conversation_id": conversation_id}, "last_seq", 1)
        message_id = self.sequencer.next_id()
        now = self._now()
        row = {"conversation_id": conversation_id, "seq": seq, "message_id": message_id, "sender_id": sender_id,
               "sender_device": sender_device, "client_msg_id": client_msg_id, "body": body, "sent_at": now}
        out = {"type": "message", "message_id": message_id, "conversation_id": conversation_id, "seq": seq,
               "from": sender_id, "from_device": sender_device, "body": body, "sent_at": _iso(now),
               **({"group_id": group_id} if group_id is not None else {})}
        text = _frame(out)
        entry = entry_of(conversation_id, seq)
        deliveries: list[Delivery] = []
        if group_id is None:  # groups fan out in a stream consumer, keyed by group (see groups.py)
            deliveries = [(user, device, entry, text) for user in recipients for device in self.device_ids(user)
                          if (user, device) != (sender_id, sender_device)]
        self.store.upsert(MESSAGES, row)
        self.store.upsert(REFS, {"message_id": message_id, "conversation_id": conversation_id, "seq": seq,
                                 "sender_id": sender_id, "client_msg_id": client_msg_id, "sent_at": now})
        day = (now.strftime("%Y-%m-%d"), conversation_id)
        if day not in self._days_written:
            self.store.upsert(DAYS, {"day": day[0], "conversation_id": conversation_id})
            if len(self._days_written) > 1_000_000:
                self._days_written.clear()
        self._queue(deliveries, now)
        self.store.upsert(SENT, {"sender_id": sender_id, "sender_device": sender_device,
                                 "client_msg_id": client_msg_id, "conversation_id": conversation_id, "seq": seq,
                                 "message_id": message_id}, ttl_s=RETENTION_DAYS * 86_400)
        sent = Sent(self._ack(message_id, client_msg_id, conversation_id, seq, "sent"), deliveries)
        if group_id is not None:
            sent.group = {"group_id": group_id, "conversation_id": conversation_id, "seq": seq,
                          "sender_id": sender_id, "sender_device": sender_device, "frame": text}
        return sent, day

    def fan_out_group(self, event: dict[str, Any]) -> list[Delivery]:
        """The pending entries of a group message for every member device but the sender's own (the
        fanout consumer's work; idempotent, so a replayed event queues the same entries again)."""
        conversation_id = event["conversation_id"]
        entry = entry_of(conversation_id, event["seq"])
        deliveries = [(user, device, entry, event["frame"]) for user in self.members(conversation_id)
                      for device in self.device_ids(user) if (user, device) != (event["sender_id"], event["sender_device"])]
        self._queue(deliveries, self._now())
        return deliveries

    # ---- receipts ---------------------------------------------------------------------------------
    def receipt(self, user_id: int, device_id: str, frame: dict[str, Any], route: Route,
                connected_here: Callable[[int, str], bool] = lambda _u, _d: False) -> list[Delivery]:
        """Record a device's receipt and send it to every device of the sender. A sender device connected
        to the calling gateway gets it straight away (its entry starts with '~': nothing stored); the
        others get a pending entry first, so one that is offline gets it when it returns."""
        status = frame.get("status")
        if status not in ("delivered", "read"):
            raise ChatError(422, f"ack: status must be delivered or read, got {status!r}")
        message_id = frame.get("message_id")
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            raise ChatError(422, f"ack: message_id must be an integer, got {message_id!r}")
        ref = self.store.get(REFS, {"message_id": message_id})
        if ref is None:
            raise ChatError(404, f"ack: no message {message_id}", "not_found")
        self.require_member(ref["conversation_id"], user_id)
        with self.store.batch():  # the receipt's writes commit together
            deliveries = self._receipt(user_id, device_id, ref, status, connected_here)
        if deliveries:
            route(deliveries)  # after the commit
        return deliveries

    def _receipt(self, user_id: int, device_id: str, ref: dict[str, Any], status: str,
                 connected_here: Callable[[int, str], bool]) -> list[Delivery]:
        conversation_id, seq, message_id = ref["conversation_id"], ref["seq"], ref["message_id"]
        mine = {"user_id": user_id, "device_id": device_id, "entry": entry_of(conversation_id, seq)}
        if user_id == ref["sender_id"]:
            # the sender's other devices got a copy to stay in sync: their ack clears it, and tells nobody
            if self.store.delete_if_present(PENDING, mine):
                return []
            raise ChatError(403, f"ack: message {message_id} is your own; only its recipients acknowledge it",
                            "forbidden")
        self.store.delete(PENDING, mine)
        key = {"conversation_id": conversation_id, "seq": seq, "user_id": user_id, "device_id": device_id}
        before = self.store.get(RECEIPTS, key)
        if before is not None and (before["status"] == "read" or before["status"] == status):
            return []  # nothing new to tell
        now = self._now()
        self.store.upsert(RECEIPTS, {**key, "status": status, "at": now})
        out = _frame({**self._ack(message_id, ref["client_msg_id"], conversation_id, seq, status),
                      "by": user_id, "by_device": device_id, "at": _iso(now)})
        entry = entry_of(conversation_id, seq, f"r:{status}:{user_id}:{device_id}")
        sender = ref["sender_id"]
        deliveries = [(sender, device, "~" + entry if connected_here(sender, device) else entry, out)
                      for device in self.device_ids(sender)]
        self._queue([d for d in deliveries if not d[2].startswith("~")], now)
        return deliveries

    # ---- pending ----------------------------------------------------------------------------------
    def _queue(self, deliveries: list[Delivery], now: datetime) -> None:
        if deliveries:
            self.store.upsert_many(PENDING, [{"user_id": u, "device_id": d, "entry": e, "frame": f, "queued_at": now}
                                             for u, d, e, f in deliveries], ttl_s=RETENTION_DAYS * 86_400)

    def pending(self, user_id: int, device_id: str) -> list[tuple[str, str]]:
        """(entry, frame) a device has not acknowledged, in delivery order (per conversation, by seq)."""
        rows = self.store.query(PENDING, {"user_id": user_id, "device_id": device_id}, columns=("entry", "frame"))
        return [(r["entry"], r["frame"]) for r in rows]

    def delivered_receipt(self, user_id: int, device_id: str, entry: str) -> None:
        """A receipt frame reached the device: it leaves the pending store (messages wait for their ack)."""
        if "|r:" in entry:
            self.store.delete(PENDING, {"user_id": user_id, "device_id": device_id, "entry": entry})

    # ---- history ----------------------------------------------------------------------------------
    def history(self, conversation_id: str, acting: int, limit: int = 20, before: int | None = None) -> dict[str, Any]:
        self.require_member(conversation_id, acting)
        rows = self.store.query(MESSAGES, {"conversation_id": conversation_id}, limit=limit + 1, after=before)
        page = rows[:limit]
        messages = [{"message_id": r["message_id"], "conversation_id": conversation_id, "seq": r["seq"],
                     "from": r["sender_id"], "from_device": r["sender_device"], "client_msg_id": r["client_msg_id"],
                     "body": r["body"], "sent_at": r["sent_at"]} for r in page]
        return {"conversation_id": conversation_id, "messages": messages,
                "next_cursor": str(page[-1]["seq"]) if len(rows) > limit else None}

    # ---- retention --------------------------------------------------------------------------------
    def purge_older_than(self, cutoff: datetime, days_back: int = 60) -> dict[str, int]:
        """Delete messages sent before `cutoff` (the chat_retention DAG, with cutoff = now - 30 days)."""
        deleted = conversations = 0
        for back in range(days_back, -1, -1):
            day = (cutoff - timedelta(days=back)).strftime("%Y-%m-%d")
            for entry in self.store.query(DAYS, {"day": day}):
                conversations += 1
                conversation_id = entry["conversation_id"]
                old = [r for r in self.store.query(MESSAGES, {"conversation_id": conversation_id},
                                                   columns=("seq", "message_id", "sent_at")) if r["sent_at"] < cutoff]
                for r in old:
                    self.store.delete(MESSAGES, {"conversation_id": conversation_id, "seq": r["seq"]})
                    self.store.delete(REFS, {"message_id": r["message_id"]})
                    self.store.delete(RECEIPTS, {"conversation_id": conversation_id, "seq": r["seq"]})
                deleted += len(old)
                if day < cutoff.strftime("%Y-%m-%d"):
                    self.store.delete(DAYS, {"day": day, "conversation_id": conversation_id})
        return {"deleted": deleted, "conversations": conversations}

    def forget_unwritten(self) -> None:
        """A transaction that held sends was rolled back (a failed group commit): what this service
        remembers as written may not be, so it forgets it (the retention index's days are written again)."""
        self._days_written.clear()

    # ---- helpers ----------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    @staticmethod
    def _ack(message_id: int, client_msg_id: str, conversation_id: str, seq: int, status: str) -> dict[str, Any]:
        return {"type": "ack", "message_id": message_id, "client_msg_id": client_msg_id,
                "conversation_id": conversation_id, "seq": seq, "status": status}


def check_public_key(public_key: Any) -> str:
    import base64
    import binascii

    try:
        raw = base64.b64decode(public_key, validate=True) if isinstance(public_key, str) else b""
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != 32:
        raise ChatError(422, "public_key: give the device's 32-byte X25519 public key, base64")
    return public_key
