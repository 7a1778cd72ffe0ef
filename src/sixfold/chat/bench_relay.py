"""The chat benchmark's ceiling: the least a WebSocket relay can do, on the same stack as Sixfold's gateway.

Starlette's WebSocket under uvicorn (run with uvicorn's defaults, as `sixfold serve` runs them),
frames parsed and written with orjson, nothing stored. A connection says who it is in the URL
(`/ws?user=<n>`, no token). It speaks the subset of Sixfold's frames the benchmark uses:

* `send` `{"client_msg_id", "to", "body"}` -> the sender gets `ack` `sent` with a `message_id`,
  the named peer (when connected) gets `message` `{"message_id", "from", "body"}`;
* `ack` `{"message_id", "status"}` from the peer -> the sender gets `ack` with that status and
  its `client_msg_id`.

Benchmark tooling, outside the serving path: `python -m uvicorn sixfold.chat.bench_relay:create_app --factory`.
"""

from __future__ import annotations

import itertools
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect


def create_app() -> Starlette:
    peers: dict[int, WebSocket] = {}
    waiting: dict[int, tuple[int, str]] = {}  # message_id -> (sender, client_msg_id), until its delivered ack
    ids = itertools.count(1)

    async def relay(websocket: WebSocket) -> None:
        user = int(websocket.query_params["user"])
        await websocket.accept()
        peers[user] = websocket
        try:
            while True:
                frame: dict[str, Any] = orjson.loads(await websocket.receive_text())
                if frame["type"] == "send":
                    message_id = next(ids)
                    waiting[message_id] = (user, frame["client_msg_id"])
                    await websocket.send_text(orjson.dumps({"type": "ack", "status": "sent", "message_id": message_id,
                                                            "client_msg_id": frame["client_msg_id"]}).decode())
                    peer = peers.get(frame["to"])
                    if peer is not None:
                        await peer.send_text(orjson.dumps({"type": "message", "message_id": message_id,
                                                           "from": user, "body": frame["body"]}).decode())
                elif frame["type"] == "ack":
                    sender, client_msg_id = waiting.pop(frame["message_id"], (None, ""))
                    peer = peers.get(sender) if sender is not None else None
                    if peer is not None:
                        await peer.send_text(orjson.dumps({"type": "ack", "status": frame["status"],
                                                           "message_id": frame["message_id"],
                                                           "client_msg_id": client_msg_id}).decode())
        except WebSocketDisconnect:
            pass
        finally:
            if peers.get(user) is websocket:
                del peers[user]

    async def health(_request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return Starlette(routes=[WebSocketRoute("/ws", relay), Route("/health", health)])
