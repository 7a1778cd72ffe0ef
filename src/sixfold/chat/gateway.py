"""The WebSocket gateway: one per server process, holding its devices' connections.

A device connects to `/v1/chat/ws?token=<device token>`. The gateway registers it in the
connection registry (`chat_connections`, the course's WebSocket manager: the store, with a TTL
the gateway keeps renewing), sends it everything pending in order, then reads frames:

* `send` -> the message service persists it and answers `ack` `sent`; deliveries go to
  connections on this gateway directly (no registry lookup when both devices are here, as the
  course says), to other gateways through the `chat-deliveries` topic, and for devices that are
  not connected anywhere a `notifications` event (the integration point for a push sender); the
  pending store has them in every case.
* `ack` (`delivered` / `read`) -> receipts to every device of the sender.

Frames to one connection go through one queue and one writer task, in the order they were
routed. A frame the client sends that is not JSON, has no known `type` or is refused gets an
`error` frame `{"type": "error", "code", "message", "client_msg_id"?}` and the connection stays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import orjson

from schemas.records import EVENTS, SERVING_TABLES
from sixfold.chat.service import ChatError, ChatService, Delivery
from sixfold.platform import schema
from sixfold.platform.emitter import BufferedPublisher

CONNECTIONS = SERVING_TABLES["chat_connections"]
DELIVERIES = EVENTS["chat-deliveries"]
GROUP_MESSAGES = EVENTS["chat-group-messages"]
NOTIFICATIONS = EVENTS["notifications"]
SENT_ENTRIES_KEPT = 10_000  # per connection, beyond its replayed pending entries (a live frame may repeat one)
GROUP_COMMIT_MAX = 256  # frames in one transaction at most (embedded): a few ms of work, then the loop turns
REGISTRY_TTL_S = 120  # a gateway that dies leaves rows that lapse within this
log = logging.getLogger("sixfold.chat")


@dataclass
class Connection:
    user_id: int
    device_id: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    # the entries this connection was sent lately (a frame routed live and replayed from pending goes once);
    # bounded, oldest out first, so a connection that stays up for days does not grow with its traffic
    sent_entries: dict[str, None] = field(default_factory=dict)
    replayed_n: int = 0  # pending entries replayed at connect: all of them are kept on top of the bound
    # while the pending store is replayed, live frames wait here, so they never overtake older ones
    held: list[tuple[str | None, str]] | None = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    loop_thread: int = field(default_factory=threading.get_ident)  # made on its loop's thread (`serve`)

    def push(self, entry: str | None, frame: str, *, replay: bool = False) -> None:
        """Thread-safe: queue a frame for this connection's writer (in call order)."""
        # on the loop's own thread: no lock (`replayed` runs there too) and no wake-up of the loop; `call_soon`
        # queues behind what other threads scheduled before, so the order of calls is kept
        on_loop = threading.get_ident() == self.loop_thread
        with nullcontext() if on_loop else self.lock:
            if self.held is not None and not replay:
                self.held.append((entry, frame))
                return
            schedule = self.loop.call_soon if on_loop else self.loop.call_soon_threadsafe
            schedule(self.queue.put_nowait, (entry, frame))

    def replayed(self) -> None:
        """The pending store is queued: release what arrived meanwhile, in its order."""
        with self.lock:
            for item in self.held or []:
                self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
            self.held = None


class Gateway:
    def __init__(self, service: ChatService, bus: Any, inline: bool = False, queue_when_bus_fails: bool = True) -> None:
        self.service = service
        self.bus = bus
        # a gateway answers devices, so it queues what the bus will not take (`_outbox`); a consumer routing
        # for others (group fanout) lets the failure through instead, so its batch is not committed and replays
        self.queue_when_bus_fails = queue_when_bus_fails
        self._outboxes: dict[str, BufferedPublisher] = {}
        # embedded (SQLite, sub-millisecond writes): handle frames on the event loop, no thread hop per
        # frame; cluster (Cassandra round trips): in the thread pool, so a slow node never stalls the loop
        self.inline = inline
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.connections: dict[tuple[int, str], Connection] = {}
        self._lock = threading.Lock()
        self._remote: dict[tuple[int, str], tuple[float, str | None]] = {}  # registry answers, cached briefly
        self._stopping = threading.Event()
        self._consumer: threading.Thread | None = None
        self._renewer: threading.Thread | None = None
        self._inbox: list[tuple[Connection, str]] = []  # frames for the next group commit (inline only)
        self._flush_scheduled = False

    # ---- connections ------------------------------------------------------------------------------
    def attach(self, conn: Connection) -> Connection | None:
        """Register a connection; returns the one it replaces (the same device connected again)."""
        with self._lock:
            old = self.connections.get((conn.user_id, conn.device_id))
            self.connections[(conn.user_id, conn.device_id)] = conn
        self._register(conn.user_id, conn.device_id)
        self._start_background()
        return old

    def detach(self, conn: Connection) -> None:
        with self._lock:
            if self.connections.get((conn.user_id, conn.device_id)) is conn:
                del self.connections[(conn.user_id, conn.device_id)]
            else:
                return
        row = self.service.store.get(CONNECTIONS, {"user_id": conn.user_id, "device_id": conn.device_id})
        if row is not None and row["gateway"] == self.id:
            self.service.store.delete(CONNECTIONS, {"user_id": conn.user_id, "device_id": conn.device_id})

    def _register(self, user_id: int, device_id: str) -> None:
        self.service.store.upsert(CONNECTIONS, {"user_id": user_id, "device_id": device_id, "gateway": self.id,
                                                "connected_at": datetime.now(UTC)}, ttl_s=REGISTRY_TTL_S)

    # ---- routing ----------------------------------------------------------------------------------
    def route(self, deliveries: list[Delivery]) -> None:
        """Hand each frame to its device: here, through another gateway, or (nowhere) a notification."""
        remote, offline = [], []
        for user_id, device_id, entry, frame in deliveries:
            conn = self.connections.get((user_id, device_id))
            if conn is not None:
                conn.push(entry, frame)
                continue
            gateway = self._gateway_of(user_id, device_id)
            if gateway is not None and gateway != self.id:
                remote.append((gateway, {"gateway": gateway, "user_id": user_id, "device_id": device_id,
                                         "entry": entry, "frame": frame}))
            elif entry.endswith("|m"):
                offline.append((user_id, device_id, entry, frame))
            # a '~' receipt was for a device on this gateway that left meanwhile: its state is in chat_receipts
        if remote:
            self._publish(DELIVERIES.topic, [(g, schema.to_json_row(DELIVERIES.record, row)) for g, row in remote])
        if offline:
            now = datetime.now(UTC)
            self._publish(NOTIFICATIONS.topic, [
                (str(u), schema.to_json_row(NOTIFICATIONS.record, {
                    "user_id": u, "device_id": d, "conversation_id": e.split("|", 1)[0],
                    "message_id": orjson.loads(f)["message_id"], "at": now}))
                for u, d, e, f in offline])

    def _publish(self, topic: str, messages: list[tuple[str, Any]]) -> None:
        if self.queue_when_bus_fails:
            self._outbox(topic).publish_or_queue(messages)
        else:
            self.bus.produce_many(topic, messages)

    def _outbox(self, topic: str) -> BufferedPublisher:
        """Per topic: publish at once, or, while the bus fails, queue in order and retry every 0.5 s (the
        pending store holds every message meanwhile; what a gateway killed then held is delivered on the
        device's next connection, and only its push notifications are lost)."""
        outbox = self._outboxes.get(topic)
        if outbox is None:
            with self._lock:
                outbox = self._outboxes.get(topic)
                if outbox is None:
                    outbox = self._outboxes[topic] = BufferedPublisher(
                        self.bus, topic, lambda message: message, flush_s=0.5, batch=1000, max_pending=1_000_000,
                        name=f"chat-outbox-{topic}")
        return outbox

    def publish_group_message(self, event: dict[str, Any]) -> None:
        """A group message to the fanout consumer; while the bus fails, fanned out here instead (as the consumer
        would: its pending entries are idempotent), so members get it now and nothing waits on the bus."""
        try:
            self.bus.produce(GROUP_MESSAGES.topic, schema.to_json_row(GROUP_MESSAGES.record, event),
                             key=event["conversation_id"])
        except Exception as exc:  # noqa: BLE001 - the bus is down: do the consumer's work now
            log.warning("publishing a group message failed (%s); fanning it out in the gateway", exc)
            self.route(self.service.fan_out_group(event))

    def _gateway_of(self, user_id: int, device_id: str, fresh: bool = False) -> str | None:
        """Where a device is connected. A connected device's gateway is remembered for a second (a
        frame that reaches a gateway the device has left is sent on from there); "nowhere" is never
        remembered, so a device that connects is reached by the very next frame."""
        now = time.monotonic()
        hit = None if fresh else self._remote.get((user_id, device_id))
        if hit is not None and hit[0] > now:
            return hit[1]
        row = self.service.store.get(CONNECTIONS, {"user_id": user_id, "device_id": device_id})
        if row is None:
            self._remote.pop((user_id, device_id), None)
            return None
        if len(self._remote) > 100_000:
            self._remote.clear()
        self._remote[(user_id, device_id)] = (now + 1.0, row["gateway"])
        return row["gateway"]

    # ---- background: deliveries from other gateways, registry renewal ------------------------------
    def _start_background(self) -> None:
        if self._consumer is not None:
            return
        with self._lock:
            if self._consumer is not None:
                return
            self._consumer = threading.Thread(target=self._consume_deliveries, name="chat-deliveries", daemon=True)
            self._renewer = threading.Thread(target=self._renew_registry, name="chat-registry", daemon=True)
            self._consumer.start()
            self._renewer.start()

    def _consume_deliveries(self) -> None:
        consumer = self.bus.consumer(DELIVERIES.topic, f"chat-gateway-{self.id.replace(':', '-')}")
        try:
            while not self._stopping.is_set():
                try:
                    messages = consumer.poll(max_records=1000, timeout_s=0.05)
                except Exception:  # noqa: BLE001 - the bus is down: retry, the pending store has everything
                    log.exception("chat deliveries: poll failed")
                    self._stopping.wait(1.0)
                    continue
                for message in messages:
                    row = message.json()
                    if row.get("gateway") != self.id:
                        continue
                    conn = self.connections.get((row["user_id"], row["device_id"]))
                    if conn is not None:
                        conn.push(row["entry"], row["frame"])
                        continue
                    # the device left this gateway after the sender looked: send it on to where it is now
                    # (its pending entry also waits for it in the store, so nothing is lost either way)
                    where = self._gateway_of(row["user_id"], row["device_id"], fresh=True)
                    if where is not None and where != self.id:
                        self.bus.produce(DELIVERIES.topic, {**row, "gateway": where}, key=where)
                if messages:
                    consumer.commit()
                else:
                    self._stopping.wait(0.02)
        finally:
            consumer.close()

    def _renew_registry(self) -> None:
        while not self._stopping.wait(REGISTRY_TTL_S / 3):
            for user_id, device_id in list(self.connections):
                try:
                    self._register(user_id, device_id)
                except Exception:  # noqa: BLE001
                    log.exception("chat registry: renewing %s/%s failed", user_id, device_id)

    def stop(self) -> None:
        self._stopping.set()
        for outbox in list(self._outboxes.values()):
            outbox.close(timeout_s=2.0)  # one last try for what the bus did not take

    # ---- one connection ---------------------------------------------------------------------------
    async def serve(self, websocket: Any, user_id: int, device_id: str) -> None:
        from starlette.concurrency import run_in_threadpool
        from starlette.websockets import WebSocketDisconnect

        conn = Connection(user_id, device_id, asyncio.get_running_loop())
        # registered before the handshake completes: any frame routed once the client is connected finds it
        old = await run_in_threadpool(self.attach, conn)
        if old is not None:
            old.push(None, "__close__", replay=True)
        try:
            await websocket.accept()
        except Exception:
            await run_in_threadpool(self.detach, conn)
            raise
        writer = asyncio.create_task(self._write(websocket, conn))
        try:
            pending = await run_in_threadpool(self.service.pending, user_id, device_id)
            conn.replayed_n = len(pending)
            for entry, frame in pending:
                conn.push(entry, frame, replay=True)
            conn.replayed()
            while True:
                raw = await websocket.receive_text()
                if self.inline:
                    self._enqueue(conn, raw)
                    continue
                for frame in await run_in_threadpool(self._handle, conn, raw):
                    conn.push(None, frame, replay=True)
        except WebSocketDisconnect:
            pass
        finally:
            await run_in_threadpool(self.detach, conn)
            writer.cancel()

    async def _write(self, websocket: Any, conn: Connection) -> None:
        from starlette.concurrency import run_in_threadpool

        while True:
            entry, frame = await conn.queue.get()
            if frame == "__close__":
                await websocket.close(code=4000, reason="this device connected again elsewhere")
                return
            if entry is not None:
                if entry in conn.sent_entries:  # routed live and replayed from pending: once is enough
                    continue
                conn.sent_entries[entry] = None
                if len(conn.sent_entries) > SENT_ENTRIES_KEPT + conn.replayed_n:
                    del conn.sent_entries[next(iter(conn.sent_entries))]
            await websocket.send_text(frame)
            if entry is not None and "|r:" in entry and not entry.startswith("~"):
                if self.inline:  # as `_handle` runs: SQLite on the loop, no thread holding the GIL beside it
                    self.service.delivered_receipt(conn.user_id, conn.device_id, entry)
                else:
                    await run_in_threadpool(self.service.delivered_receipt, conn.user_id, conn.device_id, entry)

    # ---- group commit (embedded: frames handled on the event loop) --------------------------------
    def _enqueue(self, conn: Connection, raw: str) -> None:
        """Queue a client frame for the next `_flush`, which the loop runs once every connection whose
        frame arrived in this turn of the loop has queued its own."""
        self._inbox.append((conn, raw))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            conn.loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Handle the queued frames as one transaction (a group commit: one SQLite commit for up to
        `GROUP_COMMIT_MAX` frames instead of one per frame), then, once it is durable, route the
        deliveries and answer the acks, in the frames' order. If the transaction fails as a whole,
        nothing of it was routed or acknowledged: each frame is handled again on its own."""
        self._flush_scheduled = False
        frames, self._inbox = self._inbox[:GROUP_COMMIT_MAX], self._inbox[GROUP_COMMIT_MAX:]
        if self._inbox:
            self._flush_scheduled = True
            frames[0][0].loop.call_soon(self._flush)
        deliveries: list[Delivery] = []
        later: list[Callable[[], None]] = []
        try:
            with self.service.store.batch():
                answers = [self._handle(conn, raw, deliveries.extend, later) for conn, raw in frames]
        except Exception:  # noqa: BLE001 - rolled back as a whole: one frame at a time, as without grouping
            log.exception("chat: a group commit of %d frames failed; handling them one by one", len(frames))
            self.service.forget_unwritten()
            answers, deliveries, later = [self._handle_alone(conn, raw) for conn, raw in frames], [], []
        # durable from here: the acks go out whatever happens next (the pending store holds every delivery)
        for step in ([partial(self.route, deliveries)] if deliveries else []) + later:
            try:
                step()
            except Exception:  # noqa: BLE001 - devices get what was not routed from the pending store
                log.exception("chat: routing after a group commit failed")
        for (conn, _), frames_out in zip(frames, answers):
            for frame in frames_out:
                conn.push(None, frame, replay=True)

    def _handle_alone(self, conn: Connection, raw: str) -> list[str]:
        try:
            return self._handle(conn, raw)
        except Exception as exc:  # noqa: BLE001 - the store failed: the client resends (idempotent)
            log.exception("chat: handling a frame failed")
            return [_error_frame(ChatError(503, f"the message store failed ({type(exc).__name__}); send again",
                                           "unavailable"), _client_msg_id(raw))]

    def _handle(self, conn: Connection, raw: str, route: Callable[[list[Delivery]], None] | None = None,
                later: list[Callable[[], None]] | None = None) -> list[str]:
        """The frames to answer one client frame with (to this connection only). Inside a group commit
        `route` and `later` collect what may happen only once the transaction is durable."""
        route = route or self.route
        client_msg_id = None
        try:
            try:
                frame = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                raise ChatError(400, f"not JSON: {exc}") from None
            if not isinstance(frame, dict):
                raise ChatError(400, "a frame is a JSON object with a `type`")
            client_msg_id = _client_msg_id_of(frame)
            kind = frame.get("type")
            if kind == "send":
                sent = self.service.send(conn.user_id, conn.device_id, frame, route)
                if sent.group is not None:
                    if later is None:
                        self.publish_group_message(sent.group)
                    else:
                        later.append(partial(self.publish_group_message, sent.group))
                return [orjson.dumps(sent.ack).decode()]
            if kind == "ack":
                self.service.receipt(conn.user_id, conn.device_id, frame, route,
                                     lambda u, d: (u, d) in self.connections)
                return []
            if kind == "ping":
                return ['{"type":"pong"}']
            raise ChatError(400, f"unknown frame type {kind!r}; expected send, ack or ping")
        except ChatError as exc:
            return [_error_frame(exc, client_msg_id)]


def _error_frame(exc: ChatError, client_msg_id: str | None) -> str:
    error = {"type": "error", "code": exc.code, "status": exc.status, "message": str(exc)}
    if client_msg_id:
        error["client_msg_id"] = client_msg_id
    return orjson.dumps(error).decode()


def _client_msg_id_of(frame: dict[str, Any]) -> str | None:
    value = frame.get("client_msg_id")
    return value if isinstance(value, str) else None


def _client_msg_id(raw: str) -> str | None:
    """The `client_msg_id` of a raw frame, when it is a JSON object with one (for an error frame's answer)."""
    try:
        frame = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return _client_msg_id_of(frame) if isinstance(frame, dict) else None
