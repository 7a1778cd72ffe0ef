"""HTTP and WebSocket doors of docs (PROTOCOL.md): documents, edits, updates, members, history, restore,
comments, view counts, suggestions, the WebSocket and the editor page."""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import socket
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, WebSocket
from fastapi.responses import FileResponse, Response
from pydantic import BaseModel, Field

from sixfold.platform.app_state import app_bus, app_sequencer, app_store, shared
from sixfold.platform.auth import acting_user, app_credentials, optional_user, writing_user
from sixfold.platform.errors import RequestError, error_body, error_responses
from sixfold.platform.ids import Id

router = APIRouter(tags=["docs"])
DocId = Annotated[str, Path(pattern=r"^[0-9]{1,19}$", description="the doc_id POST /v1/docs gave",
                            examples=["361512478015508480"])]


def app_docs(app: Any) -> Any:
    """The app's one DocService, with its hub (WebSocket connections, the docs-updates consumer)."""
    from sixfold.docs.hub import Hub
    from sixfold.docs.service import DocService

    def make() -> Any:
        settings = app.state.settings
        origin = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        service = DocService(app_store(app), app_bus(app), app_sequencer(app), origin,
                             cache_docs=settings.docs_cache_docs)
        app.state.docs_hub = Hub(service, app_bus(app), app_credentials(app), app_views(app))
        return service

    return shared(app.state, "docs_service", make)


def app_views(app: Any) -> Any:
    from sixfold.docs.views import ViewEmitter

    return shared(app.state, "docs_views", lambda: ViewEmitter(app_bus(app), app.state.settings.docs_view_flush_s))


def app_words(app: Any) -> Any:
    from sixfold.docs.suggest import Vocabulary

    return shared(app.state, "docs_words", lambda: Vocabulary.english(app.state.settings.docs_vocabulary))


async def threaded(call: Any, *args: Any) -> Any:
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(call, *args)


# ---- shapes ------------------------------------------------------------------------------------------
class NewDoc(BaseModel):
    title: str | None = Field(None, max_length=200, examples=["Meeting notes"])
    public: bool = Field(False, description="anyone may read it (writing still needs the owner or an editor)")


class Created(BaseModel):
    doc_id: str
    version: int
    title: str
    public: bool


class Doc(BaseModel):
    doc_id: str
    title: str
    content: str
    version: int = Field(..., description="updates made durable so far (0 for a new document); only grows")
    public: bool


class Version(BaseModel):
    version: int


class NewMember(BaseModel):
    user_id: Id
    role: str = Field(..., description="editor or viewer", examples=["editor"])


class Member(BaseModel):
    doc_id: str
    user_id: int
    role: str


class MemberRow(BaseModel):
    user_id: int
    role: str
    added_at: datetime


class Members(BaseModel):
    doc_id: str
    members: list[MemberRow]


class VersionEntry(BaseModel):
    version: int
    author_id: int
    at: datetime
    summary: str = Field(..., examples=["+12 -3 chars"])


class History(BaseModel):
    doc_id: str
    versions: list[VersionEntry] = Field(..., description="newest first")
    next_cursor: str | None


class Restore(BaseModel):
    version: int = Field(..., ge=0, lt=2**63, description="the version whose content to bring back")


class NewComment(BaseModel):
    start: int = Field(..., ge=0, lt=2**63, description="code point offset of the range's first character")
    end: int = Field(..., ge=0, lt=2**63, description="code point offset just past the range")
    text: str = Field(..., min_length=1, max_length=10_000)


class Comment(BaseModel):
    comment_id: str
    author_id: int
    text: str
    start: int | None = Field(..., description="where the range is now; null once every character of it is deleted")
    end: int | None
    quote: str = Field(..., description="the range's text when the comment was made")
    at: datetime
    orphaned: bool


class Comments(BaseModel):
    doc_id: str
    comments: list[Comment]


class DayViews(BaseModel):
    day: str
    views: int


class Views(BaseModel):
    doc_id: str
    days: list[DayViews]
    total: int


class Completion(BaseModel):
    word: str
    frequency: float


class Completions(BaseModel):
    prefix: str
    suggestions: list[Completion]


class Correction(BaseModel):
    word: str
    frequency: float
    distance: int


class Corrections(BaseModel):
    word: str
    correct: bool
    suggestions: list[Correction]


EDITS_BODY = {
    "required": True,
    "content": {"application/json": {"schema": {
        "description": "[[pos, delete_count, insert_text], ...] in Unicode code points, applied in order "
                       "(at most 10,000), or {\"edits\": [...]}",
        "anyOf": [
            {"type": "array", "maxItems": 10_000, "items": {
                "type": "array", "minItems": 3, "maxItems": 3,
                "prefixItems": [{"type": "integer", "minimum": 0}, {"type": "integer", "minimum": 0},
                                {"type": "string"}]}},
            {"type": "object", "required": ["edits"], "properties": {"edits": {"type": "array"}}},
        ]}}},
}


# ---- suggestions (public: no document in them) -----------------------------------------------------
@router.get("/v1/docs/suggest", response_model=Completions, summary="Word completions for a prefix, most frequent first",
            responses=error_responses(422))
def get_suggest(request: Request, prefix: str = Query(..., min_length=1, max_length=40),
                limit: int = Query(10, ge=1, le=100)) -> Any:
    words = app_words(request.app)
    return {"prefix": prefix, "suggestions": [{"word": w, "frequency": f} for w, f in words.complete(prefix, limit)]}


@router.get("/v1/docs/spell", response_model=Corrections,
            summary="Spelling: is the word known, and the known words one or two edits away, most frequent first",
            responses=error_responses(422))
def get_spell(request: Request, word: str = Query(..., min_length=1, max_length=40),
              limit: int = Query(10, ge=1, le=100)) -> Any:
    words = app_words(request.app)
    correct, found = words.correct(word, limit)
    return {"word": word, "correct": correct,
            "suggestions": [{"word": w, "frequency": f, "distance": d} for w, f, d in found]}


# ---- documents ---------------------------------------------------------------------------------------
@router.post("/v1/docs", status_code=201, response_model=Created, summary="Create a document (you are its owner)",
             responses=error_responses(400, 401, 422, 429, 503))
def post_doc(request: Request, body: NewDoc | None = None, user: int = Depends(writing_user)) -> Any:
    body = body or NewDoc()
    return app_docs(request.app).create(user, body.title, body.public)


@router.get("/v1/docs/{doc_id}", response_model=Doc,
            summary="A document's text and version (members; anyone for a public one)",
            responses=error_responses(401, 403, 404, 422, 503))
async def get_doc(request: Request, doc_id: DocId, user: int | None = Depends(optional_user)) -> Any:
    answer = await threaded(app_docs(request.app).read, doc_id, user)
    app_views(request.app).record(doc_id, user, "http")
    return answer


@router.post("/v1/docs/{doc_id}/edits", response_model=Version, openapi_extra={"requestBody": EDITS_BODY},
             summary="Apply [[pos, delete_count, insert_text], ...] in order, all or nothing (owner, editors)",
             responses=error_responses(400, 401, 403, 404, 422, 429, 503,
                                       why={422: "an operation is out of range (the message names its index) "
                                                 "or not [int, int, string]; nothing was applied"}))
async def post_edits(request: Request, doc_id: DocId, user: int = Depends(writing_user)) -> Any:
    raw = await request.body()
    if not raw.strip():
        raise RequestError(422, "the body is missing; send [[pos, delete_count, insert_text], ...] as JSON")
    try:
        edits = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            raise RequestError(400, "the body is not UTF-8; send UTF-8 JSON") from None
        raise RequestError(422, f"the body is not valid JSON ({exc}); send [[pos, delete_count, insert_text], ...]") \
            from None
    return {"version": await threaded(app_docs(request.app).edit, doc_id, user, edits)}


@router.get("/v1/docs/{doc_id}/updates", response_class=Response,
            summary="Loro updates the caller lacks (binary), from its version vector",
            responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string",
                                                                                   "format": "binary"}}},
                             "description": "Loro update bytes (a snapshot for a client of a compacted document "
                                            "that has nothing yet); import them"},
                       **error_responses(401, 403, 404, 422, 503)})
async def get_updates(request: Request, doc_id: DocId, user: int | None = Depends(optional_user),
                      since_vv: str | None = Query(None, max_length=100_000,
                                                   description="base64 of the client's oplog_vv.encode()")) -> Any:
    vv = None
    if since_vv:
        try:
            vv = base64.b64decode(since_vv, validate=True)
        except (binascii.Error, ValueError):
            raise RequestError(422, "since_vv is not base64 (of doc.oplog_vv.encode())") from None
    from sixfold.docs.engine import LoroRefused

    try:
        data = await threaded(app_docs(request.app).updates_since, doc_id, user, vv)
    except LoroRefused as exc:
        raise RequestError(422, f"since_vv: {exc}") from None
    return Response(data, media_type="application/octet-stream")


# ---- members -------------------------------------------------------------------------------------------
@router.post("/v1/docs/{doc_id}/members", status_code=201, response_model=Member,
             summary="Add a member or change their role: editor or viewer (the owner only)",
             responses=error_responses(400, 401, 403, 404, 422, 429, 503))
def post_member(request: Request, doc_id: DocId, body: NewMember, user: int = Depends(writing_user)) -> Any:
    return app_docs(request.app).add_member(doc_id, user, body.user_id, body.role)


@router.get("/v1/docs/{doc_id}/members", response_model=Members, summary="A document's members and their roles",
            responses=error_responses(401, 403, 404, 422, 503))
def get_members(request: Request, doc_id: DocId, user: int = Depends(acting_user)) -> Any:
    return {"doc_id": doc_id, "members": app_docs(request.app).members(doc_id, user)}


# ---- history and restore ----------------------------------------------------------------------------
@router.get("/v1/docs/{doc_id}/history", response_model=History,
            summary="Versions with author, time and what changed, newest first (members)",
            responses=error_responses(401, 403, 404, 422, 503))
async def get_history(request: Request, doc_id: DocId, user: int = Depends(acting_user),
                      limit: int = Query(100, ge=1, le=1000),
                      cursor: str | None = Query(None, pattern=r"^[0-9]{1,18}$", description="next_cursor of a page")
                      ) -> Any:
    return await threaded(app_docs(request.app).history, doc_id, user, limit, int(cursor) if cursor else None)


@router.post("/v1/docs/{doc_id}/restore", response_model=Version,
             summary="Restore a version: a new version whose content equals it (nothing erased; owner, editors)",
             responses=error_responses(400, 401, 403, 404, 410, 422, 429, 503,
                                       why={410: "that version was compacted into a shallow snapshot"}))
async def post_restore(request: Request, doc_id: DocId, body: Restore, user: int = Depends(writing_user)) -> Any:
    return {"version": await threaded(app_docs(request.app).restore, doc_id, user, body.version)}


# ---- comments ------------------------------------------------------------------------------------------
@router.post("/v1/docs/{doc_id}/comments", status_code=201, response_model=Comment,
             summary="Comment on a range [start, end) of the text (members)",
             responses=error_responses(400, 401, 403, 404, 422, 429, 503))
async def post_comment(request: Request, doc_id: DocId, body: NewComment, user: int = Depends(writing_user)) -> Any:
    return await threaded(app_docs(request.app).comment, doc_id, user, body.start, body.end, body.text)


@router.get("/v1/docs/{doc_id}/comments", response_model=Comments,
            summary="Comments with their ranges where the text is now (members; anyone for a public document)",
            responses=error_responses(401, 403, 404, 422, 503))
async def get_comments(request: Request, doc_id: DocId, user: int | None = Depends(optional_user)) -> Any:
    return {"doc_id": doc_id, "comments": await threaded(app_docs(request.app).comments, doc_id, user)}


# ---- view counts -------------------------------------------------------------------------------------
@router.get("/v1/docs/{doc_id}/views", response_model=Views,
            summary="Views per UTC day (the docs_views DAG's counts; members)",
            responses=error_responses(401, 403, 404, 422, 503))
def get_views(request: Request, doc_id: DocId, user: int = Depends(acting_user)) -> Any:
    from sixfold.docs.views import served_counts

    app_docs(request.app).require_member(doc_id, user)
    return served_counts(app_store(request.app), doc_id)


# ---- the WebSocket and the page ----------------------------------------------------------------------
@router.websocket("/v1/docs/{doc_id}/ws")
async def docs_socket(websocket: WebSocket, doc_id: str, token: str | None = None) -> None:
    app_docs(websocket.app)
    await websocket.app.state.docs_hub.serve(websocket, doc_id, token)


def _page() -> Any:
    from importlib.resources import files

    page = files("sixfold.docs").joinpath("static/docs.html")
    if not page.is_file():
        return Response(orjson.dumps(error_body(404, "the editor page is not built in this checkout "
                                                     "(src/sixfold/docs/static/docs.html)")),
                        status_code=404, media_type="application/json")
    return FileResponse(str(page), media_type="text/html", headers={"Cache-Control": "no-cache"})


@router.get("/docs", include_in_schema=False)
def get_docs_page() -> Any:
    return _page()


@router.get("/docs/{doc_id}", include_in_schema=False)
def get_doc_page(doc_id: str) -> Any:
    return _page()
