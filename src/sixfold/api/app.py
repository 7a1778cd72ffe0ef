"""The FastAPI application: mounts each system's router and shapes every error the same way.

Errors are `{"error": {"code": ..., "message": ...}}` with a proper status; an unexpected
failure is a 500 with a short message and never a stack trace.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import ORJSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from sixfold import __version__
from sixfold.platform.errors import RequestError, ServiceUnavailable, error_body
from sixfold.platform.settings import Settings, load_settings

log = logging.getLogger("sixfold.api")

def _describe_validation(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = tuple(err.get("loc", ()))
        if err.get("type") == "json_invalid":  # its loc is ("body", offset): say so, not "0: JSON decode error"
            reason = (err.get("ctx") or {}).get("error", "malformed")
            offset = loc[1] if len(loc) > 1 else 0
            parts.append(f"the body is not valid JSON ({reason} at character {offset}); send a JSON document")
            continue
        if loc == ("body",) and err.get("type") == "missing":
            parts.append("the body is missing; send a JSON document with Content-Type: application/json")
            continue
        where = ".".join(str(p) for p in loc if p not in ("body",))
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


health = APIRouter(tags=["platform"])


@health.get("/", include_in_schema=False)
def get_landing_page() -> Any:
    """The landing page: each system's page, the API docs, and how to open the Airflow UI."""
    from importlib.resources import files

    from fastapi.responses import HTMLResponse

    page = files("sixfold.api").joinpath("static/index.html").read_text(encoding="utf-8")
    return HTMLResponse(page, headers={"Cache-Control": "no-cache"})


@health.get("/v1/health")
def get_health(request: Request) -> dict[str, Any]:
    settings: Settings = request.app.state.settings
    return {"status": "ok", "version": __version__, "profile": settings.profile}


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    from starlette.concurrency import run_in_threadpool

    from sixfold.typeahead.api import start_shard_registration, stop_shard_registration

    await run_in_threadpool(start_shard_registration, app)  # peers forward this server's typeahead shards here
    yield
    await stop_shard_registration(app)
    clicks = getattr(app.state, "shortener_clicks", None)
    if clicks is not None:  # publish the clicks still buffered
        clicks.close()
    gateway = getattr(app.state, "chat_gateway", None)
    if gateway is not None:
        gateway.stop()
    docs_hub = getattr(app.state, "docs_hub", None)
    if docs_hub is not None:
        docs_hub.stop()
    doc_views = getattr(app.state, "docs_views", None)
    if doc_views is not None:  # publish the views still buffered
        doc_views.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or load_settings()
    # the API's own pages at /api-docs: /docs is the documents' editor (PROTOCOL.md of sixfold.docs)
    app = FastAPI(title="Sixfold", version=__version__, default_response_class=ORJSONResponse, lifespan=_lifespan,
                  docs_url="/api-docs",
                  description="Thin endpoints serving what the Sixfold pipelines precomputed.")
    app.state.settings = settings

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> ORJSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc.__cause__, UnicodeDecodeError):  # FastAPI's 400 for a body it cannot decode says only that
            message = f"the body is not UTF-8 ({exc.__cause__.reason} at byte {exc.__cause__.start}); send UTF-8 JSON"
        return ORJSONResponse(error_body(exc.status_code, message), status_code=exc.status_code,
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> ORJSONResponse:
        return ORJSONResponse(error_body(422, _describe_validation(exc)), status_code=422)

    @app.exception_handler(RequestError)
    async def refused(_request: Request, exc: RequestError) -> ORJSONResponse:
        return ORJSONResponse(error_body(exc.status, str(exc)), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_request: Request, exc: ServiceUnavailable) -> ORJSONResponse:
        # an open circuit breaker or a full bulkhead knows when to come back (sixfold.platform.resilience)
        retry = getattr(exc, "retry_after_s", 5)
        return ORJSONResponse(error_body(503, str(exc)), status_code=503, headers={"Retry-After": str(retry)})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> ORJSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return ORJSONResponse(error_body(500, "internal error; the server log has the details", "internal"),
                              status_code=500)

    app.include_router(health)
    from sixfold.api.operations import router as operations_router

    app.include_router(operations_router)  # /healthz, /readyz, /metrics: before the shortener's GET /{key}
    from sixfold.api.identity import router as identity_router

    app.include_router(identity_router)
    from sixfold.typeahead.api import router as typeahead_router

    app.include_router(typeahead_router)
    from sixfold.feed.api import router as feed_router

    app.include_router(feed_router)
    from sixfold.chat.api import router as chat_router

    app.include_router(chat_router)
    from sixfold.chat.api_groups import router as chat_groups_router

    app.include_router(chat_groups_router)
    from sixfold.docs.api import router as docs_router

    app.include_router(docs_router)
    from sixfold.shortener.api import router as shortener_router

    app.include_router(shortener_router)  # last: its GET /{key} takes any path nobody else answers
    from sixfold.api.fastpath import FastPaths, default_routes
    from sixfold.platform.app_state import store_on_loop

    app.add_middleware(FastPaths, routes=default_routes(),  # `sixfold serve` puts them outermost: create_asgi
                       off_loop=not store_on_loop(settings))
    from sixfold.api.operations import RequestMetrics

    app.add_middleware(RequestMetrics)  # outside FastPaths: it counts what they leave to FastAPI
    from sixfold.platform.resilience import InFlightLimit

    app.add_middleware(InFlightLimit, limit=settings.max_in_flight)  # outermost: a shed request costs nothing else
    return app


def create_asgi() -> Any:
    """What `sixfold serve` runs: the in-flight limit outermost, the fast GET paths, then the FastAPI app."""
    from sixfold.api.fastpath import FastPaths, default_routes
    from sixfold.platform.app_state import store_on_loop
    from sixfold.platform.resilience import InFlightLimit

    app = create_app()
    settings = app.state.settings
    # the app's own FastPaths (for those who serve `create_app()` alone) would try every request these passed
    # on a second time: it goes, before the app builds its middleware stack on the first request
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPaths]
    return InFlightLimit(FastPaths(app, default_routes(), fastapi=app, off_loop=not store_on_loop(settings)),
                         settings.max_in_flight)
