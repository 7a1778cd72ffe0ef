"""HTTP doors of chat groups (membership) and chat media (the asset service); mounted beside `chat.api`."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from sixfold.platform.app_state import app_sequencer, app_store, shared
from sixfold.platform.auth import acting_user, writing_user
from sixfold.platform.errors import error_responses
from sixfold.platform.ids import Id

router = APIRouter(tags=["chat"])


def app_groups(app: Any) -> Any:
    from sixfold.chat.api import app_chat
    from sixfold.chat.groups import Groups

    return shared(app.state, "chat_groups", lambda: Groups(app_store(app), app_sequencer(app),
                                                          app_chat(app).max_group_members))


def app_chat_media(app: Any) -> Any:
    from sixfold.chat.media import ChatMedia
    from sixfold.platform.blobs import open_blob_store

    settings = app.state.settings
    return shared(app.state, "chat_media",
                  lambda: ChatMedia(open_blob_store(settings, namespace="chat"), settings.var / "tmp" / "chat-uploads"))


# ---- groups -------------------------------------------------------------------------------------------
class NewGroup(BaseModel):
    name: str = Field(..., min_length=1, max_length=100, examples=["climbing"])
    members: list[Id] = Field(default_factory=list, max_length=1000,
                              description="user ids besides you (you are the owner and a member); at most 256 "
                                          "members in all")


class CreatedGroup(BaseModel):
    group_id: int
    conversation_id: str = Field(..., description="`g:<group_id>`: send with `group_id`, read its history by this")


class Group(BaseModel):
    group_id: int
    conversation_id: str
    name: str
    owner_id: int
    members: list[int]


class NewMember(BaseModel):
    user_id: Id


@router.post("/v1/chat/groups", status_code=201, response_model=CreatedGroup,
             summary="Create a group: you own it and are a member, with the members you name",
             responses=error_responses(400, 401, 404, 422, 429, 503, why={
                 404: "a member names no user", 422: "no name, or more than 256 members"}))
def post_group(request: Request, body: NewGroup, user: int = Depends(writing_user)) -> Any:
    return app_groups(request.app).create(user, body.name, list(body.members))


@router.get("/v1/chat/groups/{group_id}", response_model=Group, summary="A group and its members (members only)",
            responses=error_responses(401, 403, 404, 422, 503, why={403: "you are not a member of the group"}))
def get_group(request: Request, group_id: Id, user: int = Depends(acting_user)) -> Any:
    return app_groups(request.app).get(group_id, user)


@router.post("/v1/chat/groups/{group_id}/members", status_code=201, response_model=Group,
             summary="Add a member (the group's owner only)",
             responses=error_responses(400, 401, 403, 404, 409, 422, 429, 503, why={
                 403: "you are not the group's owner", 404: "no such group or user",
                 409: "the user is already a member", 422: "the group has 256 members already"}))
def post_member(request: Request, group_id: Id, body: NewMember, user: int = Depends(writing_user)) -> Any:
    return app_groups(request.app).add_member(group_id, user, body.user_id)


@router.delete("/v1/chat/groups/{group_id}/members/{user_id}", status_code=204,
               summary="Remove a member: the owner removes anyone, a member removes themself (leaves)",
               responses=error_responses(401, 403, 404, 409, 422, 429, 503, why={
                   403: "neither the group's owner nor the member leaving", 404: "no such group or member",
                   409: "the owner cannot leave their group"}))
def delete_member(request: Request, group_id: Id, user_id: Id, user: int = Depends(writing_user)) -> Response:
    app_groups(request.app).remove_member(group_id, user, user_id)
    return Response(status_code=204)


# ---- media ------------------------------------------------------------------------------------------------
class StoredMedia(BaseModel):
    media_id: str = Field(..., description="the SHA-256 of the bytes: GET /v1/chat/media/{media_id}")
    size_bytes: int
    kind: str


@router.post(
    "/v1/chat/media", status_code=201, response_model=StoredMedia,
    summary="Upload an attachment, encrypted by the client: stored once per content (at most 16 MB media, "
            "100 MB documents)",
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
    responses=error_responses(400, 401, 413, 422, 429, 503, why={
        400: "Content-Length is not a number", 413: "over the kind's limit (16 MB media, 100 MB documents)",
        422: "an empty body, or an unknown kind"}),
)
async def post_media(request: Request, user: int = Depends(writing_user),
                     kind: str = Query("media", pattern="^(media|document)$",
                                       description="media (photos, video, voice: 16 MB) or document (100 MB)")) -> Any:
    from starlette.concurrency import run_in_threadpool

    from sixfold.chat.media import check_declared

    check_declared(kind, request.headers.get("content-length"))
    media = app_chat_media(request.app)
    upload = await run_in_threadpool(media.begin, kind)
    try:
        async for chunk in request.stream():
            upload.write(chunk)
    except BaseException:
        upload.discard()
        raise
    return await run_in_threadpool(media.keep, upload)


@router.get("/v1/chat/media/{media_id}", summary="An attachment's (encrypted) bytes, cacheable forever",
            response_class=Response,
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                 "format": "binary"}}}},
                       **error_responses(401, 404, 422, 503, why={404: "no media with this hash"})})
def get_media(request: Request, media_id: str = Path(..., pattern="^[0-9a-f]{64}$", description="its SHA-256"),
              _user: int = Depends(acting_user)) -> Any:
    source = app_chat_media(request.app).read(media_id)
    headers = {"ETag": f'"{media_id}"', "Cache-Control": "private, max-age=31536000, immutable"}
    if isinstance(source, bytes):
        return Response(source, media_type="application/octet-stream", headers=headers)
    return FileResponse(source, media_type="application/octet-stream", headers=headers)
