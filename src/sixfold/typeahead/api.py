"""HTTP doors of the typeahead system: suggestions, search-event collection, and the search page."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import ORJSONResponse
from pydantic import BaseModel

from sixfold.platform.errors import error_body
from sixfold.platform.store import open_store
from sixfold.typeahead.serving import MAX_PREFIX, SuggestionError, Suggester
from sixfold.typeahead.trie import DEFAULT_K

router = APIRouter(tags=["typeahead"])

# ---- collection: POST /v1/search-events (owned by collection.py) --------------------------------

# ---- serving: GET /v1/suggestions (owned by serving.py) ----------------------------------------
def suggester_for(app: Any) -> Suggester:
    """One Suggester per app, created on first use, watching for swaps."""
    suggester = getattr(app.state, "suggester", None)
    if suggester is None:
        settings = app.state.settings
        owned = set(settings.typeahead_owned_shards) if settings.typeahead_owned_shards is not None else None
        suggester = Suggester(settings, owned=owned, store=store_for(app))
        suggester.watch()
        app.state.suggester = suggester
    return suggester


def store_for(app: Any) -> Any:
    store = getattr(app.state, "store", None)
    if store is None:
        store = app.state.store = open_store(app.state.settings)
    return store


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


class SuggestionsFastPath:
    """ASGI middleware answering GET /v1/suggestions without the framework's per-request machinery.

    Same Suggester, same answers and error shapes as the route above (which stays for OpenAPI and
    as the reference); it only skips dependency injection and model validation on the hot path.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/suggestions" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        status, body = self.answer(scope, scope["app"])
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    def answer(self, scope: dict, app: Any) -> tuple[int, bytes]:
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        params = {key: values[-1] for key, values in params.items()}
        try:
            if "prefix" not in params:
                raise SuggestionError(422, "query.prefix: Field required")
            try:
                k = int(params.get("k", DEFAULT_K))
            except ValueError:
                raise SuggestionError(422, "query.k: Input should be a valid integer") from None
            result = suggester_for(app).suggest(params["prefix"], k, params.get("region"),
                                                          params.get("user_id") or None)
            return 200, orjson.dumps(result)
        except SuggestionError as exc:
            return exc.status, orjson.dumps(error_body(exc.status, str(exc)))

# ---- page: GET /typeahead -----------------------------------------------------------------------
@router.get("/typeahead", include_in_schema=False)
def get_typeahead_page() -> Any:
    """The search page: a box calling /v1/suggestions as the user types (static HTML, no external assets)."""
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = files("sixfold.typeahead").joinpath("static/typeahead.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})
