"""HTTP and WebSocket doors of chat: devices and their keys, the gateway, history, groups, media, the page."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, WebSocket
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field

from sixfold.platform.app_state import app_bus, app_sequencer, app_store, shared, store_on_loop
from sixfold.platform.auth import acting_user, app_credentials, require_self, writing_user
from sixfold.platform.errors import error_responses
from sixfold.platform.ids import Id

router = APIRouter(tags=["chat"])


def app_chat(app: Any) -> Any:
    from sixfold.chat.service import ChatService

    return shared(app.state, "chat_service",
                  lambda: ChatService(app_store(app), app_sequencer(app), app_credentials(app)))


def app_gateway(app: Any) -> Any:
    from sixfold.chat.gateway import Gateway

    return shared(app.state, "chat_gateway", lambda: Gateway(app_chat(app), app_bus(app),
                                                             inline=store_on_loop(app.state.settings)))


class NewDevice(BaseModel):
    user_id: Id
    device_id: str = Field(..., description="1 to 64 letters, digits, '.', '_' or '-'", examples=["phone"])
    public_key: str | None = Field(None, description="the device's X25519 public key, base64 (end-to-end "
                                                     "encryption); senders encrypt to it")


class DeviceToken(BaseModel):
    token: str = Field(..., description="for /v1/chat/ws?token=; shown once, stored only as a hash")


class DeviceKey(BaseModel):
    device_id: str
    public_key: str | None


class DeviceKeys(BaseModel):
    user_id: int
    devices: list[DeviceKey]


class History(BaseModel):
    conversation_id: str
    messages: list[dict[str, Any]]
    next_cursor: str | None


@router.post("/v1/chat/devices", status_code=201, response_model=DeviceToken,
             summary="Register a device of yours: a device token for the WebSocket (a new one revokes the old)",
             responses=error_responses(400, 401, 403, 404, 422, 429, 503))
def post_device(request: Request, body: NewDevice, user: int = Depends(writing_user)) -> Any:
    require_self(user, body.user_id)
    return {"token": app_chat(request.app).register_device(body.user_id, body.device_id, body.public_key)}


@router.get("/v1/chat/users/{user_id}/devices", response_model=DeviceKeys,
            summary="A user's devices and their public keys (what a sender encrypts to)",
            responses=error_responses(401, 404, 503))
def get_device_keys(request: Request, user_id: Id, _acting: int = Depends(acting_user)) -> Any:
    from sixfold.platform.auth import app_users

    app_users(request.app).require(user_id)
    rows = app_chat(request.app).devices(user_id)
    return {"user_id": user_id, "devices": [{"device_id": r["device_id"], "public_key": r.get("public_key")}
                                            for r in rows]}


@router.get("/v1/chat/conversations/{conversation_id}/messages", response_model=History,
            summary="A conversation's messages, newest first (members only; kept 30 days)",
            responses=error_responses(401, 403, 404, 422, 503))
def get_history(request: Request, conversation_id: str, user: int = Depends(acting_user),
                limit: int = Query(20, ge=1, le=100), cursor: str | None = Query(None, pattern=r"^[0-9]{1,18}$",
                                                                             description="next_cursor of a page")) -> Any:
    return app_chat(request.app).history(conversation_id, user, limit, int(cursor) if cursor else None)


@router.websocket("/v1/chat/ws")
async def chat_socket(websocket: WebSocket, token: str | None = None) -> None:
    from starlette.concurrency import run_in_threadpool

    held = await run_in_threadpool(app_credentials(websocket.app).holder, token, "device")
    if held is None or held[1] is None:
        await websocket.close(code=4401, reason="a device token is needed: POST /v1/chat/devices gives one")
        return
    await app_gateway(websocket.app).serve(websocket, held[0], held[1])  # it accepts once the device is registered


@router.get("/chat", include_in_schema=False)
def get_chat_page() -> Any:
    from importlib.resources import files

    page = files("sixfold.chat").joinpath("static/chat.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
