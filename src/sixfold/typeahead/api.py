"""HTTP doors of the typeahead system: suggestions, search-event collection, and the search page."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Body, Depends, HTTPException, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel, Field

from schemas.records import SEARCH_EVENT
from sixfold.platform.app_state import app_bus, app_store, shared
from sixfold.platform.auth import (
    bearer_from_headers,
    optional_user,
    require_self,
    token_owner,
    unauthorized,
    writing_user,
)
from sixfold.platform.errors import RequestError, error_answer, error_responses
from sixfold.platform.schema import json_schema
from sixfold.typeahead.serving import MAX_PREFIX, NotOwned, Suggester, SuggestionError, normalize_prefix, region_name
from sixfold.typeahead.sharding import FORWARDED_HEADER, Forwarder, NoOwnerAnswered, Registration, ShardMap
from sixfold.typeahead.trie import DEFAULT_K

router = APIRouter(tags=["typeahead"])

# ---- collection: POST /v1/search-events (owned by collection.py) --------------------------------

MAX_EVENTS_PER_POST = 1000


def bus_for(app: Any) -> Any:
    """One event bus per app, opened on first use (a 503 names the bus when it is unreachable)."""
    return app_bus(app)


class Accepted(BaseModel):
    accepted: int


def _search_event_schema() -> dict[str, Any]:
    """The record's JSON Schema, with what `check_search_event` adds: no empty strings."""
    event = json_schema(SEARCH_EVENT)
    for name in ("user_id", "query", "region"):
        event["properties"][name]["minLength"] = 1
    return event


# The body is taken as it comes (`Any`) so `check_search_event` explains every problem of every event
# at once; OpenAPI still documents it, derived from the record's declaration.
_SEARCH_EVENTS_BODY = {"anyOf": [_search_event_schema(), {
    "type": "array", "items": _search_event_schema(), "minItems": 1, "maxItems": MAX_EVENTS_PER_POST}]}


@router.post("/v1/search-events", status_code=202, response_model=Accepted,
             summary="Record your searches (user_id is the token's owner): one event or a list of at most 1000; "
                     "landed in the lake asynchronously",
             responses=error_responses(400, 401, 403, 413, 422, 429, 503, why={
                 403: "an event names another user: each event's user_id must be the token's owner",
                 413: f"more than {MAX_EVENTS_PER_POST} events in one request"}),
             openapi_extra={"requestBody": {"content": {"application/json": {"schema": _SEARCH_EVENTS_BODY}}}})
def post_search_events(
    request: Request,
    acting: int = Depends(writing_user),
    payload: Any = Body(..., examples=[{"user_id": "1234", "query": "new york weather", "region": "us",
                                        "ts": "2026-11-26T10:03:00Z"}]),
) -> Any:
    from sixfold.typeahead.collection import check_search_event, publish

    if isinstance(payload, bytes):  # FastAPI hands over a body that is not declared JSON as it came
        raise HTTPException(422, "the body is not JSON: send the events with Content-Type: application/json")
    events = payload if isinstance(payload, list) else [payload]
    if isinstance(payload, list) and not payload:
        raise HTTPException(422, "expected a search event or a non-empty list of them, got []")
    if len(events) > MAX_EVENTS_PER_POST:
        raise HTTPException(413, f"{len(events)} events in one request; send at most {MAX_EVENTS_PER_POST}")
    rows, problems = [], []
    for i, event in enumerate(events):
        try:
            rows.append(check_search_event(event))
        except ValueError as exc:
            problems.append(f"events[{i}]: {exc}" if isinstance(payload, list) else str(exc))
    if problems:  # all or nothing: a client fixes and resends the whole request
        raise HTTPException(422, "; ".join(problems[:20]) + ("; ..." if len(problems) > 20 else ""))
    for row in rows:
        require_self(acting, row["user_id"])
    return {"accepted": publish(bus_for(request.app), rows)}


# ---- serving: GET /v1/suggestions (owned by serving.py) ----------------------------------------
def suggester_for(app: Any) -> Suggester:
    """One Suggester per app, created on first use, watching for swaps."""

    def create() -> Suggester:
        settings = app.state.settings
        owned = set(settings.typeahead_owned_shards) if settings.typeahead_owned_shards is not None else None
        suggester = Suggester(settings, owned=owned, store=store_for(app))
        suggester.watch()
        return suggester

    return shared(app.state, "suggester", create)


def store_for(app: Any) -> Any:
    return app_store(app)


def shard_map_for(app: Any) -> ShardMap:
    """Which servers own each shard (the store's `typeahead_shard_owners`), one per app."""
    return shared(app.state, "typeahead_shard_map",
                  lambda: ShardMap(store_for(app), app.state.settings.typeahead_url))


def forwarder_for(app: Any) -> Forwarder:
    return shared(app.state, "typeahead_forwarder", lambda: Forwarder(shard_map_for(app)))


def owned_and_known_shards(app: Any) -> tuple[set[int], set[int]]:
    """(shards this server owns, every shard id it knows of): from the settings and the loaded trie."""
    settings = app.state.settings
    suggester = getattr(app.state, "suggester", None)
    known = set(range(settings.typeahead_shards)) | (suggester.shard_ids() if suggester is not None else set())
    owned = known if settings.typeahead_owned_shards is None else set(settings.typeahead_owned_shards)
    return owned, known | owned


def start_shard_registration(app: Any) -> Registration | None:
    """Register this server in the shard map and keep its lease (nothing without SIXFOLD_TYPEAHEAD_URL)."""
    if not app.state.settings.typeahead_url:
        return None
    registration = Registration(shard_map_for(app), lambda: owned_and_known_shards(app))
    registration.start()
    app.state.typeahead_registration = registration
    return registration


async def stop_shard_registration(app: Any) -> None:
    registration = getattr(app.state, "typeahead_registration", None)
    if registration is not None:
        from starlette.concurrency import run_in_threadpool

        await run_in_threadpool(registration.stop)
    forwarder = getattr(app.state, "typeahead_forwarder", None)
    if forwarder is not None:
        await forwarder.close()


async def forward_to_owner(request: Request, exc: NotOwned) -> Any:
    """Answer with an owner's answer (its status and body as they came), or 503 with Retry-After."""
    from fastapi.responses import Response
    from starlette.concurrency import run_in_threadpool

    if request.headers.get(FORWARDED_HEADER) is not None:  # forwarded once already: never again (no loops)
        raise HTTPException(503, f"{exc}; the request was forwarded here by {request.headers[FORWARDED_HEADER]} "
                                 "whose shard map is stale, or a trie with other shard ranges is being swapped in; "
                                 "it is not forwarded again", headers={"Retry-After": "1"})
    forwarder = await run_in_threadpool(forwarder_for, request.app)  # the first call opens the store
    try:
        answer = await forwarder.forward(exc.shard, exc.region, request.url.path, request.url.query,
                                         dict(request.headers))
    except NoOwnerAnswered as failed:
        raise HTTPException(503, str(failed), headers=failed.headers) from None
    return Response(answer.body, status_code=answer.status, headers=answer.headers)


class Suggestion(BaseModel):
    phrase: str
    score: float


class Suggestions(BaseModel):
    prefix: str
    suggestions: list[Suggestion]


MAX_USER_ID, MAX_REGION = 128, 32


class SuggestionQuery(BaseModel):
    """The parameters of GET /v1/suggestions; any other parameter is refused (422), not ignored."""

    model_config = {"extra": "forbid"}
    prefix: str = Field(..., max_length=MAX_PREFIX, description="what the user has typed so far")
    k: int = Field(DEFAULT_K, description="how many suggestions, 1..10")
    user_id: str | None = Field(None, max_length=MAX_USER_ID,
                                description="blend in this user's recent queries (needs that user's token)")
    region: str | None = Field(None, max_length=MAX_REGION, description="regional trending instead of global")


@router.get("/v1/suggestions", response_model=Suggestions,
            summary="Top suggestions for a typed prefix (precomputed per trie node); personalised with your token",
            responses=error_responses(401, 403, 404, 422, 503, why={
                401: "user_id is given without a valid bearer token, or a token is sent that is not valid",
                403: "user_id is another user: personal suggestions need that user's own token",
                404: "no trie for that region; the message lists the known ones",
                503: "no trie has been built yet (`sixfold typeahead build`), the store is unreachable, or no "
                     "server owning the prefix's shard answered (Retry-After says when to retry)"}))
async def get_suggestions(request: Request, query: Annotated[SuggestionQuery, Query()],
                          acting: int | None = Depends(optional_user)) -> Any:
    """A prefix of a shard this server does not own is answered by an owner (typeahead/sharding.py)."""
    from starlette.concurrency import run_in_threadpool

    if query.user_id:
        if acting is None:
            raise unauthorized(None)
        require_self(acting, query.user_id)

    def suggest() -> dict[str, Any]:
        return suggester_for(request.app).suggest(query.prefix, query.k, query.region, query.user_id or None)

    try:
        return ORJSONResponse(await run_in_threadpool(suggest))
    except NotOwned as exc:
        return await forward_to_owner(request, exc)
    except SuggestionError as exc:
        raise HTTPException(exc.status, str(exc)) from None


class SuggestionsFastGet:
    """GET /v1/suggestions for `sixfold.api.fastpath`. It answers only requests the route would
    accept as they are (anything to explain goes on to the route), and keeps anonymous answers
    per trie version under the normalised `(prefix, k, region)`, so spellings of one request share
    an entry and junk parameters cannot fill the cache."""

    CACHE_SIZE = 50_000
    KNOWN = {"prefix", "k", "user_id", "region"}
    template = "/v1/suggestions"  # its route's, for the request metrics

    def __init__(self) -> None:
        self._cache: dict[tuple[str, int, str], bytes] = {}
        self._cache_version: str | None = None

    def match(self, path: str) -> Any | None:
        return True if path == "/v1/suggestions" else None

    def answer(self, _matched: Any, scope: dict, app: Any) -> Any:

        params = {key: values[-1] for key, values in parse_qs(scope.get("query_string", b"").decode("latin-1"),
                                                              keep_blank_values=True).items()}
        prefix, k_raw = params.get("prefix"), params.get("k", str(DEFAULT_K))
        user, region = params.get("user_id") or None, params.get("region")
        if (set(params) - self.KNOWN or prefix is None or len(prefix) > MAX_PREFIX or not k_raw.isascii()
                or not k_raw.isdigit() or len(params.get("user_id", "")) > MAX_USER_ID
                or len(region or "") > MAX_REGION):
            return None  # the route explains it, in FastAPI's words
        try:
            suggester = suggester_for(app)
            if user is not None or bearer_from_headers(scope["headers"]) is not None:
                acting, token = token_owner(app, scope["headers"])
                if acting is None:
                    raise unauthorized(token)
                if user is not None:
                    require_self(acting, user)
                return 200, orjson.dumps(suggester.suggest(prefix, int(k_raw), region, user))
            if not app.state.settings.typeahead_response_cache:  # SIXFOLD_TYPEAHEAD_RESPONSE_CACHE=0
                return 200, orjson.dumps(suggester.suggest(prefix, int(k_raw), region))
        except NotOwned:
            return None  # another server's shard: the route forwards it, without blocking this loop
        except RequestError as exc:
            return error_answer(exc.status, str(exc), exc.headers)
        except SuggestionError as exc:
            return error_answer(exc.status, str(exc))
        except Exception as exc:  # noqa: BLE001 - e.g. the store is unreachable
            return error_answer(503, str(exc))
        version = suggester.version
        if version != self._cache_version:
            self._cache.clear()
            self._cache_version = version
        key = (normalize_prefix(prefix), int(k_raw), region_name(region))
        found = self._cache.get(key)
        if found is None:
            try:
                found = orjson.dumps(suggester.suggest(prefix, int(k_raw), region)["suggestions"])
            except NotOwned:
                return None
            except SuggestionError as exc:
                return error_answer(exc.status, str(exc))
            if suggester.version == version:
                if len(self._cache) >= self.CACHE_SIZE:
                    self._cache.clear()
                self._cache[key] = found
        return 200, b'{"prefix":' + orjson.dumps(prefix) + b',"suggestions":' + found + b"}"


# ---- page: GET /typeahead -----------------------------------------------------------------------
@router.get("/typeahead", include_in_schema=False)
def get_typeahead_page() -> Any:
    """The search page: a box calling /v1/suggestions as the user types (static HTML, no external assets)."""
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = files("sixfold.typeahead").joinpath("static/typeahead.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


def fast_gets() -> list:
    """This system's answers to its hottest GETs ahead of FastAPI (`sixfold.api.fastpath`)."""
    return [SuggestionsFastGet()]
