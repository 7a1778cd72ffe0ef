"""HTTP doors of the shortener: create (one or a batch), redirect, delete, stats, and the page `/s`.

Writes and stats act as the owner of the `X-Api-Key` (`POST /v1/api-keys` gives one), counted
against that key's fixed-window quota. `GET /{key}` and `GET /{dc}/{key}` are answered by
`RedirectFastGet` ahead of FastAPI (`sixfold serve`); the FastAPI routes below are the reference
and the OpenAPI entries, and answer the same.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.security import APIKeyHeader
from pydantic import BaseModel, Field

from sixfold.platform.app_state import app_bus, app_store, on_store, shared
from sixfold.platform.auth import app_credentials
from sixfold.platform.errors import RequestError, ServiceUnavailable, error_answer, error_responses

router = APIRouter(tags=["shortener"])
api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False, scheme_name="apiKey",
                              description="a key from POST /v1/api-keys: `X-Api-Key: sfk_...`")
CHALLENGE = {"WWW-Authenticate": 'ApiKey header="X-Api-Key"'}
BATCH_MAX = 1000


# ---- shared state ---------------------------------------------------------------------------------
def _root_names(app: Any) -> frozenset[str]:
    """First path segments the app answers without the shortener (pages, docs): never an alias."""
    names = set()
    for route in getattr(app, "routes", []):
        first = getattr(route, "path", "").strip("/").split("/")[0]
        if first and "{" not in first:
            names.add(first.lower())
    return frozenset(names)


def app_links(app: Any) -> Any:
    made = getattr(app.state, "shortener_links", None)  # every redirect asks: the made one without imports
    if made is not None:
        return made
    from sixfold.platform.app_state import app_sequencer  # noqa: F401 - same store as every router
    from sixfold.shortener.cache import open_cache
    from sixfold.shortener.links import RESERVED, Links

    def make() -> Any:
        settings = app.state.settings
        return Links(app_store(app), settings, cache=open_cache(settings), reserved=RESERVED | _root_names(app))

    return shared(app.state, "shortener_links", make)


def app_quota(app: Any) -> Any:
    from sixfold.shortener.quota import FixedWindowQuota

    settings = app.state.settings
    return shared(app.state, "shortener_quota",
                  lambda: FixedWindowQuota(settings.shortener_limit_per_key, settings.rate_limit_storage))


def app_clicks(app: Any) -> Any:
    made = getattr(app.state, "shortener_clicks", None)
    if made is not None:
        return made
    from sixfold.shortener.emit import ClickEmitter

    return shared(app.state, "shortener_clicks",
                  lambda: ClickEmitter(app_bus(app), flush_s=app.state.settings.shortener_click_flush_s))


def owner_of_key(app: Any, api_key: str | None) -> tuple[int, str]:
    """(user id, credential id) of an X-Api-Key, or 401."""
    user = app_credentials(app).owner(api_key, "api_key")
    if user is None:
        why = ("no API key: send `X-Api-Key: <key>` (POST /v1/api-keys with your bearer token gives one)"
               if not api_key else "the API key is not valid: use a key POST /v1/api-keys returned")
        raise RequestError(401, why, headers=CHALLENGE)
    return user, api_key.split(".", 1)[0]


async def key_owner(request: Request, api_key: str | None = Depends(api_key_header)) -> tuple[int, str]:
    """`owner_of_key`, checked where store work runs (`on_store`)."""
    return await on_store(request.app, owner_of_key, request.app, api_key)


def spend_key(app: Any, owner: tuple[int, str], cost: int = 1) -> int:
    """Count `cost` against the key's fixed-window quota (429 past it); the owner's user id."""
    app_quota(app).hit(owner[1], cost)
    return owner[0]


def spend(request: Request, owner: tuple[int, str], cost: int = 1) -> int:
    return spend_key(request.app, owner, cost)


def short_url_at(app: Any, base_url: str, key: str) -> str:
    base = app.state.settings.shortener_public_url or base_url.rstrip("/")
    return f"{base}/{key}"


def created_at(app: Any, base_url: str, row: dict[str, Any]) -> dict[str, Any]:
    return {"key": row["key"], "short_url": short_url_at(app, base_url, row["key"]), "long_url": row["long_url"],
            "expire_at": row["expire_at"]}


def created(request: Request, row: dict[str, Any]) -> dict[str, Any]:
    return created_at(request.app, str(request.base_url), row)


# ---- models -----------------------------------------------------------------------------------------
class NewUrl(BaseModel):
    long_url: str = Field(..., description="http(s) URL, at most 2,048 characters; public hosts only by default",
                          examples=["https://example.com/a/long/page?with=query"])
    custom_alias: str | None = Field(None, description="4 to 32 letters, digits, '-' or '_' (409 when taken)",
                                     examples=["spring-sale"])
    expire_at: datetime | None = Field(None, description="default: two years from now; at most five years; "
                                                         "a time without zone is UTC")


class CreatedUrl(BaseModel):
    key: str
    short_url: str
    long_url: str = Field(..., description="as it will be redirected to (host IDNA-encoded, path percent-encoded)")
    expire_at: datetime


class UrlBatch(BaseModel):
    urls: list[NewUrl] = Field(..., min_length=1, max_length=BATCH_MAX,
                               description=f"1 to {BATCH_MAX} links; each gets its own result, in order")


class BatchError(BaseModel):
    status: int
    code: str
    message: str


class BatchResult(BaseModel):
    key: str | None = None
    short_url: str | None = None
    long_url: str | None = None
    expire_at: datetime | None = None
    error: BatchError | None = None


class BatchResults(BaseModel):
    created: int
    failed: int
    results: list[BatchResult]


class HourClicks(BaseModel):
    hour: datetime
    clicks: int


class ReferrerClicks(BaseModel):
    host: str
    clicks: int


class BrowserClicks(BaseModel):
    family: str
    clicks: int


class UrlStats(BaseModel):
    key: str
    long_url: str | None
    state: str
    created_at: datetime
    expire_at: datetime
    total: int = Field(..., description="redirects counted by the url_clicks DAG so far (hourly)")
    hourly: list[HourClicks]
    referrers: list[ReferrerClicks]
    browsers: list[BrowserClicks]


# ---- routes -------------------------------------------------------------------------------------------
@router.post("/v1/urls", status_code=201, response_model=CreatedUrl,
             summary="Shorten a URL (a generated key, or your custom alias)",
             responses=error_responses(400, 401, 409, 422, 429, 503, why={
                 409: "the custom alias is taken", 429: "this API key's fixed-window quota is spent"}))
async def post_url(request: Request, body: NewUrl, owner: tuple[int, str] = Depends(key_owner)) -> Any:
    def create() -> dict[str, Any]:
        user = spend(request, owner)
        return app_links(request.app).create(user, body.long_url, body.custom_alias, body.expire_at)

    return created(request, await on_store(request.app, create))


@router.post("/v1/urls:batch", response_model=BatchResults, response_model_exclude_none=True,
             summary=f"Shorten up to {BATCH_MAX} URLs; each has its own result (a key, or an error)",
             responses=error_responses(400, 401, 422, 429, 503, why={
                 429: "the batch would pass this API key's quota (each URL counts once)"}))
def post_url_batch(request: Request, body: UrlBatch, owner: tuple[int, str] = Depends(key_owner)) -> Any:
    from sixfold.platform.errors import error_body

    user = spend(request, owner, len(body.urls))
    results = []
    for outcome in app_links(request.app).create_many(user, [u.model_dump() for u in body.urls]):
        if isinstance(outcome, RequestError):
            results.append({"error": {"status": outcome.status, **error_body(outcome.status, str(outcome))["error"]}})
        else:
            results.append(created(request, outcome))
    failed = sum(1 for r in results if "error" in r)
    return {"created": len(results) - failed, "failed": failed, "results": results}


@router.delete("/v1/urls/{key}", status_code=204, response_class=Response,
               summary="Delete your short link: it answers 410 from now on, and its key is never issued again",
               responses=error_responses(401, 403, 404, 429, 503))
def delete_url(request: Request, key: str, owner: tuple[int, str] = Depends(key_owner)) -> Response:
    user = spend(request, owner)
    app_links(request.app).delete(user, key)
    return Response(status_code=204)


@router.get("/v1/urls/{key}/stats", response_model=UrlStats,
            summary="Clicks of your short link: total, per hour, per referrer host and per browser family",
            responses=error_responses(401, 403, 404, 503))
def get_url_stats(request: Request, key: str, owner: tuple[int, str] = Depends(key_owner)) -> Any:
    from sixfold.shortener.stats import click_stats

    row = app_links(request.app).owned(owner[0], key)
    stats = click_stats(app_store(request.app), key)
    return {**stats, "key": key, "long_url": row.get("long_url"), "state": row["state"],
            "created_at": row["created_at"], "expire_at": row["expire_at"]}


@router.get("/s", include_in_schema=False)
def get_shortener_page() -> Any:
    from importlib.resources import files

    page = files("sixfold.shortener").joinpath("static/shortener.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


def _redirect(request: Request, key: str) -> Any:
    result = resolve_and_count(request.app, key, request.headers.get("referer"), request.headers.get("user-agent"))
    status, body = result[0], result[1]
    if status == 302:
        return RedirectResponse(result[2]["Location"], status_code=302, headers={"Cache-Control": "private, max-age=0"})
    return Response(body, status_code=status, media_type="application/json")


REDIRECT_RESPONSES = {302: {"description": "to the long URL (`Location`)"},
                      **error_responses(404, 410, 503, why={404: "no such short link",
                                                            410: "the link was deleted or has expired"})}


@router.get("/{dc}/{key}", response_class=RedirectResponse, status_code=302, responses=REDIRECT_RESPONSES,
            summary="Redirect through a data centre's prefix (/x/{key}), as the course's short URLs carry it")
def get_redirect_via_datacentre(request: Request, dc: str, key: str) -> Any:
    own = request.app.state.settings.shortener_datacentre
    if len(dc) != 1:  # not a data-centre prefix at all (e.g. /v1/nope): the app's plain 404
        return Response(error_answer(404, "Not Found")[1], status_code=404, media_type="application/json")
    if dc != own:
        return Response(error_answer(404, f"no path /{dc}/...: the data-centre prefix of this server is /{own}/")[1],
                        status_code=404, media_type="application/json")
    return _redirect(request, key)


@router.get("/{key}", response_class=RedirectResponse, status_code=302, responses=REDIRECT_RESPONSES,
            summary="Follow a short link: 302 to its long URL")
def get_redirect(request: Request, key: str) -> Any:
    return _redirect(request, key)


# ---- the fast path ---------------------------------------------------------------------------------------
def resolve_and_count(app: Any, key: str, referer: str | None, user_agent: str | None) -> tuple:
    """(status, body, headers): a 302 counts a click; 404 and 410 explain."""
    try:
        resolution = app_links(app).resolve(key)
    except ServiceUnavailable as exc:  # an open breaker or a full bulkhead says when (sixfold.platform.resilience)
        return error_answer(503, str(exc), {"Retry-After": str(getattr(exc, "retry_after_s", 5))})
    if resolution.status != 302:
        return error_answer(resolution.status, resolution.reason)
    app_clicks(app).record(key, referer, user_agent)
    return 302, b"", {"Location": resolution.long_url, "Cache-Control": "private, max-age=0",
                      "Content-Type": "text/plain"}


class RedirectFastGet:
    """GET /{key} and /{dc}/{key}; paths the app answers itself (pages, docs) go on to FastAPI."""

    PATH = re.compile(r"/(?:([a-z])/)?([A-Za-z0-9_-]{1,64})")

    def __init__(self) -> None:
        self._reserved: frozenset[str] | None = None

    def match(self, path: str) -> Any | None:
        return self.PATH.fullmatch(path)

    def template(self, matched: Any) -> str:
        """Its route's path, for the request metrics."""
        return "/{key}" if matched.group(1) is None else "/{dc}/{key}"

    def answer(self, matched: Any, scope: dict, app: Any) -> Any:
        if self._reserved is None:
            from sixfold.shortener.links import RESERVED

            self._reserved = RESERVED | _root_names(app)
        dc, key = matched.group(1), matched.group(2)
        if dc is None and key.lower() in self._reserved:
            return None
        if dc is not None and dc != app.state.settings.shortener_datacentre:
            return None
        referer = user_agent = None
        for name, value in scope["headers"]:
            if name == b"referer":
                referer = value.decode("latin-1")
            elif name == b"user-agent":
                user_agent = value.decode("latin-1")
        return resolve_and_count(app, key, referer, user_agent)


class CreateFastPost:
    """POST /v1/urls with a plain body (`{"long_url": ...}`, and a `custom_alias` string or null): the same
    key check, quota, creation and answer as `post_url`, without FastAPI's routing, dependencies and
    models. Any other body (another content type, an `expire_at`, a field more, a wrong type, not JSON)
    goes to FastAPI untouched, which answers it or explains what is wrong with it."""

    method = "POST"
    template = "/v1/urls"
    _FIELDS = frozenset(("long_url", "custom_alias"))

    def match(self, path: str) -> Any | None:
        return True if path == "/v1/urls" else None

    def takes(self, scope: dict) -> bool:
        from sixfold.api.fastpath import MAX_FAST_BODY

        content_type = length = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                content_type = value
            elif name == b"content-length":
                length = value
        return (content_type is not None and content_type.split(b";")[0].strip().lower() == b"application/json"
                and length is not None and length.isdigit() and int(length) <= MAX_FAST_BODY)

    def answer(self, matched: Any, scope: dict, app: Any, body: bytes) -> Any:
        import orjson

        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        if (type(payload) is not dict or not payload.keys() <= self._FIELDS or type(payload.get("long_url")) is not str
                or type(payload.get("custom_alias", "")) not in (str, type(None))):
            return None
        api_key = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                api_key = value.decode("latin-1")
                break
        try:
            user = spend_key(app, owner_of_key(app, api_key))
            row = app_links(app).create(user, payload["long_url"], payload.get("custom_alias"))
        except RequestError as exc:
            return error_answer(exc.status, str(exc), exc.headers)
        except ServiceUnavailable as exc:  # an open breaker or a full bulkhead says when (sixfold.platform.resilience)
            return error_answer(503, str(exc), {"Retry-After": str(getattr(exc, "retry_after_s", 5))})
        answer = CreatedUrl.model_validate(created_at(app, _base_url(scope), row)).model_dump(mode="json")
        return 201, orjson.dumps(answer)


def _base_url(scope: dict) -> str:
    """What `Request.base_url` is for this request (scheme, Host, root path), as FastAPI's route sees it."""
    from starlette.requests import Request as StarletteRequest

    return str(StarletteRequest(scope).base_url)


def fast_gets() -> list:
    """This system's answers to its hottest requests ahead of FastAPI (`sixfold.api.fastpath`): the
    redirects, and the creation of a link."""
    return [RedirectFastGet(), CreateFastPost()]

