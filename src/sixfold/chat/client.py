"""A small asyncio chat client over `websockets`: what the tests, the demo and the benchmark drive.

    account = await sign_up(base_url, "ann")
    token = await register_device(base_url, account, "phone", keys.public_key)
    async with await ChatClient.connect(base_url, token) as chat:
        sent = await chat.send("hi", to=bob_id)           # the `sent` ack (durable on the server)
        async for frame in chat:                         # messages, receipts, unmatched errors
            if frame["type"] == "message":
                await chat.ack(frame["message_id"], "delivered")

Reconnection: when the socket drops (not closed by this client), the client reconnects with
backoff and sends again every `send` not yet acknowledged, with its same `client_msg_id`, so the
server answers the first send's ack instead of storing a second message; the server replays what
the device has not acknowledged. A close the server means for good (4000: this device connected
again elsewhere; a refused token) ends the client: `receive` raises `ChatClosed`.

`SecureChat` adds end-to-end encryption (`e2e.py`): it seals each text for every device of the
recipient and the sender's other devices, and opens what arrives, checking the envelope's key
against the sending device's registered key.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Self
from urllib.parse import quote

import httpx
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from sixfold.chat.e2e import DeviceKeys, SealedBodyError, address, open_sealed, recipients_from, seal

FINAL_CLOSE_CODES = {4000, 4401}  # connected again elsewhere; no valid device token


class ChatClosed(Exception):
    """The connection is gone for good (closed by this client, or by the server for a reason that a
    reconnect cannot fix)."""


class ChatRefused(Exception):
    """The server answered a `send` with an `error` frame (the frame is in `.frame`)."""

    def __init__(self, frame: dict[str, Any]) -> None:
        super().__init__(f"{frame.get('code')} ({frame.get('status')}): {frame.get('message')}")
        self.frame = frame


def ws_url(base_url: str, token: str) -> str:
    """`http://host:port` -> `ws://host:port/v1/chat/ws?token=...` (https -> wss)."""
    base = base_url.rstrip("/")
    if base.startswith("https://"):
        base = "wss://" + base[len("https://"):]
    elif base.startswith("http://"):
        base = "ws://" + base[len("http://"):]
    return f"{base}/v1/chat/ws?token={quote(token, safe='')}"


class ChatClient:
    def __init__(self, base_url: str, token: str, *, reconnect: bool = True, max_backoff_s: float = 2.0,
                 open_timeout_s: float = 10.0) -> None:
        self.url = ws_url(base_url, token)
        self.reconnect = reconnect
        self.max_backoff_s = max_backoff_s
        self.open_timeout_s = open_timeout_s
        self.connects = 0  # how many times a socket was opened (1 + reconnections)
        self.connected = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._incoming: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        self._unacked: dict[str, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self._closing = False
        self._ended: BaseException | None = None
        self._runner: asyncio.Task[None] | None = None

    # ---- lifecycle --------------------------------------------------------------------------------
    @classmethod
    async def connect(cls, base_url: str, token: str, **options: Any) -> ChatClient:
        """A connected client (raises ChatClosed when the server refuses the token)."""
        client = cls(base_url, token, **options)
        await client.start()
        return client

    async def start(self) -> None:
        self._ws = await self._open()
        self._runner = asyncio.create_task(self._run(), name="chat-client")

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._runner is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        self._end(ChatClosed("closed by this client"))

    async def drop(self) -> None:
        """Lose the connection abruptly, as a phone going through a tunnel would (tests, demo): with
        `reconnect` the client comes back by itself; the server replays what this device missed."""
        if self._ws is not None:
            self._ws.transport.abort()

    async def __aenter__(self) -> Self:
        if self._runner is None:
            await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _open(self) -> ClientConnection:
        try:
            ws = await ws_connect(self.url, open_timeout=self.open_timeout_s, max_size=2**22)
        except InvalidStatus as exc:
            raise ChatClosed(f"the server refused the device token (HTTP {exc.response.status_code}); "
                             "POST /v1/chat/devices gives one") from None
        self.connects += 1
        self.connected.set()
        for text, _ in list(self._unacked.values()):  # sends whose ack never came: the same ids again
            with contextlib.suppress(ConnectionClosed):
                await ws.send(text)
        return ws

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            ws = self._ws
            assert ws is not None
            try:
                async for raw in ws:
                    self._dispatch(json.loads(raw))
                    backoff = 0.05
            except ConnectionClosed:
                pass
            self.connected.clear()
            code = ws.close_code
            if self._closing or not self.reconnect or code in FINAL_CLOSE_CODES:
                reason = ws.close_reason or "connection closed"
                self._end(ChatClosed(f"closed ({code}): {reason}"))
                return
            while True:
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)
                try:
                    self._ws = await self._open()
                    break
                except ChatClosed as exc:
                    self._end(exc)
                    return
                except (OSError, TimeoutError, ConnectionClosed):
                    continue

    def _dispatch(self, frame: dict[str, Any]) -> None:
        kind, client_msg_id = frame.get("type"), frame.get("client_msg_id")
        if client_msg_id in self._unacked and (kind == "error" or (kind == "ack" and frame.get("status") == "sent")):
            _, future = self._unacked.pop(client_msg_id)
            if not future.done():
                if kind == "error":
                    future.set_exception(ChatRefused(frame))
                else:
                    future.set_result(frame)
            return
        self._incoming.put_nowait(frame)

    def _end(self, why: BaseException) -> None:
        if self._ended is not None:
            return
        self._ended = why
        self.connected.clear()
        for _, future in self._unacked.values():
            if not future.done():
                future.set_exception(ChatClosed(str(why)))
        self._unacked.clear()
        self._incoming.put_nowait(None)

    # ---- frames -----------------------------------------------------------------------------------
    async def send(self, body: str, *, to: int | None = None, group_id: int | None = None,
                   client_msg_id: str | None = None, timeout_s: float = 10.0) -> dict[str, Any]:
        """Send a message; returns the server's `sent` ack (raises ChatRefused on an error frame)."""
        if self._ended is not None:
            raise ChatClosed(str(self._ended))
        client_msg_id = client_msg_id or secrets.token_hex(8)
        frame: dict[str, Any] = {"type": "send", "client_msg_id": client_msg_id, "body": body}
        if to is not None:
            frame["to"] = to
        if group_id is not None:
            frame["group_id"] = group_id
        text = json.dumps(frame)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._unacked[client_msg_id] = (text, future)
        if self.connected.is_set() and self._ws is not None:
            with contextlib.suppress(ConnectionClosed):  # the reconnection sends it again
                await self._ws.send(text)
        try:
            return await asyncio.wait_for(future, timeout_s)
        finally:
            self._unacked.pop(client_msg_id, None)

    async def ack(self, message_id: int, status: str = "delivered", timeout_s: float = 10.0) -> None:
        """Report a message `delivered` (this device has it) or `read` (its user saw it). Lost with a
        dropped socket, it is harmless: the server replays the message and the device acks again."""
        await self._raw({"type": "ack", "message_id": message_id, "status": status}, timeout_s)

    async def send_frame(self, frame: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Any frame as is (tests of what the server refuses)."""
        await self._raw(frame, timeout_s)

    async def _raw(self, frame: dict[str, Any], timeout_s: float) -> None:
        if self._ended is not None:
            raise ChatClosed(str(self._ended))
        await asyncio.wait_for(self.connected.wait(), timeout_s)
        assert self._ws is not None
        with contextlib.suppress(ConnectionClosed):
            await self._ws.send(json.dumps(frame))

    async def receive(self, timeout_s: float | None = None) -> dict[str, Any]:
        """The next frame that is not the answer to one of this client's sends."""
        frame = await asyncio.wait_for(self._incoming.get(), timeout_s)
        if frame is None:
            self._incoming.put_nowait(None)  # every later receive ends too
            raise ChatClosed(str(self._ended))
        return frame

    async def receive_until(self, wanted: Any, timeout_s: float = 10.0) -> list[dict[str, Any]]:
        """Frames received until `wanted(frame)` is true (that one included), within `timeout_s`."""
        got: list[dict[str, Any]] = []
        async with asyncio.timeout(timeout_s):
            while True:
                got.append(await self.receive())
                if wanted(got[-1]):
                    return got

    def __aiter__(self) -> AsyncIterator[dict[str, Any]]:
        return self._frames()

    async def _frames(self) -> AsyncIterator[dict[str, Any]]:
        while True:
            try:
                yield await self.receive()
            except ChatClosed:
                return


# ---- HTTP: accounts, devices, keys ------------------------------------------------------------------
@dataclass(frozen=True)
class Account:
    user_id: int
    token: str


def _checked(answer: httpx.Response) -> dict[str, Any]:
    if answer.is_error:
        raise RuntimeError(f"{answer.request.method} {answer.request.url.path}: HTTP {answer.status_code} "
                           f"{answer.text[:300]}")
    body: dict[str, Any] = answer.json()
    return body


async def sign_up(base_url: str, username: str) -> Account:
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        body = _checked(await http.post("/v1/users", json={"username": username}))
    return Account(body["user_id"], body["token"])


async def register_device(base_url: str, account: Account, device_id: str, public_key: str | None = None) -> str:
    """A device token for the WebSocket (registering the device's public key when given)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        body = _checked(await http.post("/v1/chat/devices", headers={"Authorization": f"Bearer {account.token}"},
                                        json={"user_id": account.user_id, "device_id": device_id,
                                              "public_key": public_key}))
    return str(body["token"])


async def device_keys(base_url: str, account: Account, user_id: int) -> dict[str, Any]:
    """`GET /v1/chat/users/{user_id}/devices`: {"user_id", "devices": [{"device_id", "public_key"}]}."""
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as http:
        return _checked(await http.get(f"/v1/chat/users/{user_id}/devices",
                                       headers={"Authorization": f"Bearer {account.token}"}))


# ---- end-to-end encrypted chat ------------------------------------------------------------------------
@dataclass
class SecureChat:
    """One device of a user that sends and reads only sealed bodies."""

    base_url: str
    account: Account
    device_id: str
    keys: DeviceKeys
    chat: ChatClient
    _listings: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    async def open(cls, base_url: str, account: Account, device_id: str, keys: DeviceKeys | None = None,
                   **options: Any) -> SecureChat:
        """Register the device with its public key (a new key pair unless given) and connect."""
        keys = keys or DeviceKeys.generate()
        token = await register_device(base_url, account, device_id, keys.public_key)
        return cls(base_url, account, device_id, keys, await ChatClient.connect(base_url, token, **options))

    @property
    def address(self) -> str:
        return address(self.account.user_id, self.device_id)

    async def _listing(self, user_id: int, fresh: bool = False) -> dict[str, Any]:
        if fresh or user_id not in self._listings:
            self._listings[user_id] = await device_keys(self.base_url, self.account, user_id)
        return self._listings[user_id]

    async def send_text(self, text: str, *, to: int | None = None, members: list[int] | None = None,
                        group_id: int | None = None, **options: Any) -> dict[str, Any]:
        """Seal `text` for every device of `to` (or of the group's `members`) and this user's other
        devices (their keys fetched now, so a device registered a moment ago is included); send it."""
        users = {self.account.user_id, *([to] if to is not None else []), *(members or [])}
        listings = [await self._listing(user, fresh=True) for user in sorted(users)]
        body = seal(text, self.keys, recipients_from(listings, skip=self.address))
        return await self.chat.send(body, to=to, group_id=group_id, **options)

    async def read(self, frame: dict[str, Any]) -> str:
        """The plaintext of a `message` frame meant for this device (its sender's key checked)."""
        sender, sender_device = frame["from"], frame["from_device"]
        for fresh in (False, True):  # a key not known yet may be a device registered since
            listing = await self._listing(sender, fresh=fresh)
            expected = next((d.get("public_key") for d in listing["devices"] if d["device_id"] == sender_device), None)
            if expected:
                return open_sealed(frame["body"], self.keys, self.address, expected_from_key=expected)
        raise SealedBodyError(f"device {sender}/{sender_device} has no registered public key")

    async def close(self) -> None:
        await self.chat.close()
