"""HTTP doors of the typeahead system: suggestions, search-event collection, and the search page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Body, HTTPException, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from sixfold.platform.app_state import app_bus, app_store, shared
from sixfold.platform.errors import error_body
from sixfold.typeahead.serving import MAX_PREFIX, Suggester, SuggestionError
from sixfold.typeahead.trie import DEFAULT_K

router = APIRouter(tags=["typeahead"])

# ---- collection: POST /v1/search-events (owned by collection.py) --------------------------------

MAX_EVENTS_PER_POST = 1000


def bus_for(app: Any) -> Any:
    """One event bus per app, opened on first use (a 503 names the bus when it is unreachable)."""
    return app_bus(app)


class Accepted(BaseModel):
    accepted: int


@router.post("/v1/search-events", status_code=202, response_model=Accepted,
             summary="Record searches: one event or a list of at most 1000; landed in the lake asynchronously")
def post_search_events(
    request: Request,
    payload: Any = Body(..., examples=[{"user_id": "u42", "query": "new york weather", "region": "us",
                                        "ts": "2026-11-26T10:03:00Z"}]),
) -> Any:
    from sixfold.typeahead.collection import check_search_event, publish

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


class Suggestions(BaseModel):
    prefix: str
    suggestions: list[dict[str, Any]]


@router.get("/v1/suggestions", response_model=Suggestions,
            summary="Top suggestions for a typed prefix (precomputed per trie node)")
def get_suggestions(
    request: Request,
    prefix: str = Query(..., max_length=MAX_PREFIX, description="what the user has typed so far"),
    k: int = Query(DEFAULT_K, description="how many suggestions, 1..10"),
    user_id: str | None = Query(None, max_length=128, description="blend in this user's recent queries"),
    region: str | None = Query(None, max_length=32, description="regional trending instead of global"),
) -> Any:
    try:
        return ORJSONResponse(suggester_for(request.app).suggest(prefix, k, region, user_id))
    except SuggestionError as exc:
        raise HTTPException(exc.status, str(exc)) from None


class SuggestionsFastGet:
    """GET /v1/suggestions for `sixfold.api.fastpath`: answers without a user_id are cached per trie
    version (hot prefixes dominate typing traffic)."""

    CACHE_SIZE = 50_000

    def __init__(self) -> None:
        self._cache: dict[bytes, tuple[int, bytes]] = {}
        self._cache_version: str | None = None

    def match(self, path: str) -> Any | None:
        return True if path == "/v1/suggestions" else None

    def answer(self, _matched: Any, query_string: bytes, app: Any) -> tuple[int, bytes] | None:
        try:
            suggester = suggester_for(app)
        except Exception as exc:  # noqa: BLE001 - e.g. the store is unreachable
            return 503, orjson.dumps(error_body(503, str(exc)))
        if suggester.version != self._cache_version:
            self._cache.clear()
            self._cache_version = suggester.version
        cached = self._cache.get(query_string)
        if cached is not None:
            return cached
        params = {key: values[-1] for key, values in parse_qs(query_string.decode("latin-1"),
                                                              keep_blank_values=True).items()}
        try:
            if "prefix" not in params:
                raise SuggestionError(422, "query.prefix: Field required")
            try:
                k = int(params.get("k", DEFAULT_K))
            except ValueError:
                raise SuggestionError(422, "query.k: Input should be a valid integer") from None
            user = params.get("user_id") or None
            result = 200, orjson.dumps(suggester.suggest(params["prefix"], k, params.get("region"), user))
        except SuggestionError as exc:
            return exc.status, orjson.dumps(error_body(exc.status, str(exc)))
        if user is None and suggester.version == self._cache_version:
            if len(self._cache) >= self.CACHE_SIZE:
                self._cache.clear()
            self._cache[query_string] = result
        return result


# ---- page: GET /typeahead -----------------------------------------------------------------------
@router.get("/typeahead", include_in_schema=False)
def get_typeahead_page() -> Any:
    """The search page: a box calling /v1/suggestions as the user types (static HTML, no external assets)."""
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = files("sixfold.typeahead").joinpath("static/typeahead.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
