"""What operators read: `/healthz` (alive), `/readyz` (each dependency), `/metrics` (Prometheus), and the
middleware that counts every request under its route template.

`/v1/health` (the app's version and profile) stays as it was; these follow the usual probe names
so a load balancer or Kubernetes finds them without configuration.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import ORJSONResponse, PlainTextResponse, Response
from pydantic import BaseModel, Field

from sixfold.platform.metrics import UNMATCHED, exposition, observe_request

router = APIRouter(tags=["operations"])


class Alive(BaseModel):
    alive: bool


class Dependency(BaseModel):
    ok: bool
    detail: str


class Breaker(BaseModel):
    dependency: str
    target: str
    state: str = Field(..., description="closed (calls go through), open (failing fast) or half_open (one probe call)")
    failures_in_a_row: int
    in_flight: int
    waiting: int
    probe_in_s: float | None = Field(None, description="while open: seconds until a probe call is let through")
    last_failure: str | None = None


class Readiness(BaseModel):
    ready: bool
    dependencies: dict[str, Dependency]
    breakers: dict[str, Breaker] = Field(..., description="this process's circuit breakers, by dependency and target; "
                                                          "informational: `ready` is the probes' verdict")


@router.get("/healthz", response_model=Alive, summary="Liveness: 200 whenever this process serves requests")
async def get_healthz() -> dict[str, bool]:  # on the event loop: answers while every worker thread is busy
    return {"alive": True}


@router.get("/readyz", response_model=Readiness,
            responses={503: {"model": Readiness, "description": "a dependency is degraded; `dependencies` says "
                                                                  "which and why"}},
            summary="Readiness: each dependency of the profile (store, bus, lake, cache), probed with a short timeout")
async def get_readyz(request: Request) -> Any:
    from sixfold.platform.readiness import readiness
    from sixfold.platform.resilience import breakers

    ready, dependencies = await readiness(request.app.state.settings)
    return ORJSONResponse({"ready": ready, "dependencies": dependencies, "breakers": breakers()},
                          status_code=200 if ready else 503)


@router.get("/metrics", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                             "description": "Prometheus text exposition format"}},
            summary="Prometheus metrics: requests and latency per route, consumer lag, dead letters, data quality")
def get_metrics(request: Request) -> Response:
    body, content_type = exposition(request.app.state.settings.var)
    return Response(body, media_type=content_type)


class RequestMetrics:
    """ASGI middleware: times every HTTP request and counts it under the template of the route that took it
    (`/v1/docs/{doc_id}`, never each id), its method and its status class."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception escaping the app becomes one

        async def watch(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            if not scope.get("sixfold.counted"):  # a fast path inside answered and counted it
                route = scope.get("route")
                observe_request(scope["method"], getattr(route, "path", None) or UNMATCHED, status,
                                time.perf_counter() - started)
