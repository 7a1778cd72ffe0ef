"""The docs WebSocket hub of one serving process: connections per document, sync, updates, presence.

The wire protocol is `PROTOCOL.md`'s. A connection says `hello` with its version vector and gets
only what it lacks (one binary frame) and `synced`; its binary frames are Loro updates, made durable
by the service before the `ack`, and forwarded to the document's other connections here. Other
processes' updates arrive on the `docs-updates` topic, which this process consumes in its own group
(every process must see every update) and skips its own (`origin`). Presence is relayed between the
connections of this process; `peers` goes to all of a document's connections on every join and leave.

Each connection has a queue and one writer task, so frames reach a client in the order they were
queued; updates are queued under the document's lock, so a client sees them in durable order, and
the sync frame of a join is queued under that lock too, so nothing is missed or sent before it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import orjson

from sixfold.docs import engine
from sixfold.docs.service import EVENTS, USERS, WRITERS, DocService, LiveDoc
from sixfold.platform import schema
from sixfold.platform.errors import RequestError

log = logging.getLogger("sixfold.docs")
UPDATE_EVENT = EVENTS["docs-updates"]


@dataclass(eq=False)
class Connection:
    user_id: int
    username: str
    role: str
    loop: asyncio.AbstractEventLoop
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)

    def push(self, frame: str | bytes | None) -> None:
        """Queue a frame from any thread (None closes the writer)."""
        self.loop.call_soon_threadsafe(self.queue.put_nowait, frame)


def _json(obj: dict[str, Any]) -> str:
    return orjson.dumps(obj).decode()


class Hub:
    def __init__(self, service: DocService, bus: Any, credentials: Any, views: Any = None) -> None:
        self.service, self.bus, self.credentials, self.views = service, bus, credentials, views
        self.id = service.origin
        service.on_update = self._forward
        self._stopping = threading.Event()
        self._consumer = threading.Thread(target=self._consume, name="docs-updates", daemon=True)
        self._consumer.start()

    # ---- updates: this process's and other processes' ---------------------------------------------
    def _forward(self, live: LiveDoc, update: bytes, source: Any) -> None:
        """Called by the service under the document's lock once an update is durable (or came from another process)."""
        for conn in list(live.connections):
            if conn is not source:
                conn.push(update)

    def _consume(self) -> None:
        group = "docs-hub-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in self.id)
        consumer = None
        try:
            while not self._stopping.is_set():
                try:
                    if consumer is None:
                        # from the end: what came before this process started is in the store
                        consumer = self.bus.consumer(UPDATE_EVENT.topic, group, from_end=True)
                    messages = consumer.poll(max_records=1000, timeout_s=0.05)
                except Exception:  # noqa: BLE001 - the bus is down: retry (the store has every update)
                    log.exception("docs hub: polling docs-updates failed")
                    self._stopping.wait(1.0)
                    continue
                for message in messages:
                    if message.key is None or self.service.loaded(message.key) is None:
                        continue  # not in memory here: a later load reads it from the store
                    try:
                        self.service.apply_remote(schema.validate_event(UPDATE_EVENT, message.json()))
                    except (ValueError, engine.LoroRefused) as exc:
                        log.warning("docs hub: skipped a docs-updates message at offset %s: %s", message.offset, exc)
                if messages:
                    consumer.commit()
                else:
                    self._stopping.wait(0.02)
        finally:
            if consumer is not None:
                consumer.close()

    def stop(self) -> None:
        self._stopping.set()

    # ---- one connection ---------------------------------------------------------------------------
    def _admit(self, token: str | None, doc_id: str) -> tuple[int, str, str] | tuple[int, str]:
        """(user_id, username, role), or (close code, reason)."""
        user = self.credentials.owner(token)
        if user is None:
            return 4401, "a valid token is needed: /v1/docs/{id}/ws?token=<the token POST /v1/users gave>"
        try:
            meta = self.service.meta(doc_id)
        except RequestError:
            return 4404, f"no document {doc_id!r}"
        role = self.service.role(doc_id, user)
        if role is None:
            if not meta["public"]:
                return 4403, f"user {user} is not a member of document {doc_id}"
            role = "viewer"  # anyone reads a public document
        row = self.service.store.get(USERS, {"user_id": user})
        return user, (row["username"] if row else str(user)), role

    async def serve(self, websocket: Any, doc_id: str, token: str | None) -> None:
        from starlette.concurrency import run_in_threadpool

        admitted = await run_in_threadpool(self._admit, token, doc_id)
        if len(admitted) == 2:
            await websocket.close(code=admitted[0], reason=admitted[1][:120])
            return
        user_id, username, role = admitted  # type: ignore[misc]
        await websocket.accept()
        conn = Connection(user_id, username, role, asyncio.get_running_loop())
        live: LiveDoc | None = None
        writer = asyncio.create_task(self._write(websocket, conn))
        try:
            hello = await websocket.receive()
            if hello["type"] == "websocket.disconnect":
                return
            try:
                vv = self._hello_vv(hello)
            except ValueError as exc:
                conn.push(_json({"type": "error", "reason": str(exc)}))
                conn.push(None)
                await writer
                return
            live = await run_in_threadpool(self._join, doc_id, conn, vv)
            if self.views is not None:
                self.views.record(doc_id, user_id, "ws")
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                if message.get("bytes") is not None:
                    await self._on_update(live, conn, message["bytes"])
                elif message.get("text") is not None:
                    self._on_text(live, conn, message["text"])
        except Exception as exc:  # noqa: BLE001 - a broken connection ends this session only
            if type(exc).__name__ not in ("WebSocketDisconnect", "ClientDisconnected"):
                log.exception("docs hub: connection to document %s failed", doc_id)
        finally:
            if live is not None:
                await run_in_threadpool(self._leave, live, conn)
            writer.cancel()

    @staticmethod
    def _hello_vv(message: dict[str, Any]) -> bytes | None:
        try:
            frame = orjson.loads(message.get("text") or "")
        except orjson.JSONDecodeError:
            frame = None
        if not isinstance(frame, dict) or frame.get("type") != "hello":
            raise ValueError('the first frame is {"type":"hello","vv":<base64 of oplog_vv.encode()> or null}')
        vv = frame.get("vv")
        if vv is None:
            return None
        if not isinstance(vv, str):
            raise ValueError("hello: vv must be base64 text or null")
        try:
            raw = base64.b64decode(vv, validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("hello: vv is not base64") from None
        engine.decode_vv(raw)  # LoroRefused is a ValueError: refused here, with its reason
        return raw

    def _join(self, doc_id: str, conn: Connection, vv: bytes | None) -> LiveDoc:
        live = self.service.live(doc_id)
        with live.lock:
            doc = self.service._ready(live)
            since = engine.decode_vv(vv) if vv else None
            conn.push(engine.updates_since(doc, since))
            conn.push(_json({"type": "synced", "version": live.version, "role": conn.role,
                             "you": {"user_id": conn.user_id, "username": conn.username}}))
            live.connections.add(conn)
            self._peers(live)
        return live

    def _leave(self, live: LiveDoc, conn: Connection) -> None:
        with live.lock:
            live.connections.discard(conn)
            self._peers(live)

    @staticmethod
    def _peers(live: LiveDoc) -> None:
        users = {c.user_id: c.username for c in live.connections}
        frame = _json({"type": "peers", "users": [{"user_id": u, "username": n} for u, n in sorted(users.items())]})
        for c in live.connections:
            c.push(frame)

    async def _on_update(self, live: LiveDoc, conn: Connection, raw: bytes) -> None:
        from starlette.concurrency import run_in_threadpool

        if conn.role not in WRITERS:
            conn.push(_json({"type": "error", "reason": f"user {conn.user_id} is a {conn.role} of document "
                                                        f"{live.doc_id}: viewers cannot edit; nothing was applied"}))
            return
        try:
            role = await run_in_threadpool(self.service.role, live.doc_id, conn.user_id)
            if role not in WRITERS:  # the owner changed the role since the join
                conn.role = role or "viewer"
                conn.push(_json({"type": "error", "reason": f"user {conn.user_id} may no longer edit document "
                                                            f"{live.doc_id}; nothing was applied"}))
                return
            version = await run_in_threadpool(self.service.import_update, live, conn.user_id, raw, conn)
        except engine.LoroRefused as exc:
            conn.push(_json({"type": "error", "reason": f"{exc}; nothing was applied"}))
            return
        except Exception as exc:  # noqa: BLE001 - not durable: no ack; the client keeps it and resends
            log.exception("docs hub: an update to %s could not be made durable", live.doc_id)
            conn.push(_json({"type": "error", "reason": f"not saved ({type(exc).__name__}); send it again later"}))
            return
        conn.push(_json({"type": "ack", "version": version}))

    def _on_text(self, live: LiveDoc, conn: Connection, text: str) -> None:
        try:
            frame = orjson.loads(text)
        except orjson.JSONDecodeError:
            frame = None
        kind = frame.get("type") if isinstance(frame, dict) else None
        if kind == "presence":
            cursor = frame.get("cursor")
            if not (isinstance(cursor, dict) and all(type(cursor.get(k)) is int and cursor[k] >= 0
                                                     for k in ("anchor", "head"))):
                conn.push(_json({"type": "error", "reason": 'presence: cursor is {"anchor": int, "head": int}'}))
                return
            out = _json({"type": "presence", "user_id": conn.user_id, "username": conn.username,
                         "cursor": {"anchor": cursor["anchor"], "head": cursor["head"]}})
            for other in list(live.connections):
                if other is not conn:
                    other.push(out)
            return
        if kind == "ping":
            conn.push('{"type":"pong"}')
            return
        conn.push(_json({"type": "error", "reason": f"unknown frame type {kind!r}: send binary Loro updates, "
                                                    "presence or ping"}))

    async def _write(self, websocket: Any, conn: Connection) -> None:
        while True:
            frame = await conn.queue.get()
            if frame is None:
                await websocket.close(code=4400, reason="bad hello")
                return
            if isinstance(frame, bytes):
                await websocket.send_bytes(frame)
            else:
                await websocket.send_text(frame)
