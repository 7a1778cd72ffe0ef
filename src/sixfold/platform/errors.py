"""Errors shared by every adapter and route: each names the service or the fault and says what to do.

Also the one documented shape of an HTTP error (`ErrorBody`, what `error_body` gives) and
`error_responses`, which every router passes to its routes' `responses=` so OpenAPI lists each
status a route can answer, with that shape.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ServiceUnavailable(RuntimeError):
    """A backing service (Kafka, Cassandra, ...) cannot be reached or stopped answering."""

    def __init__(self, service: str, where: str, detail: str, fix: str = "") -> None:
        self.service = service
        self.where = where
        hint = fix or "start it with `sixfold services up` or point the SIXFOLD_* setting at a running one"
        super().__init__(f"{service} at {where} is unavailable: {detail}; {hint}")


_HTTP_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found",
               405: "method_not_allowed", 409: "conflict", 410: "gone", 413: "payload_too_large",
               415: "unsupported_media_type", 421: "misdirected_request", 422: "invalid_request",
               429: "too_many_requests", 503: "service_unavailable"}


def error_body(status: int, message: str, code: str | None = None) -> dict:
    """The one JSON shape of every HTTP error: {"error": {"code", "message"}}."""
    return {"error": {"code": code or _HTTP_CODES.get(status, "error"), "message": message}}


class RequestError(ValueError):
    """A refused request; `status` is the HTTP status that says why (401, 403, 404, 409, 422, 429, ...)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


def error_answer(status: int, message: str, headers: dict[str, str] | None = None) -> tuple:
    """An error as a fast GET answers it: `(status, JSON body[, headers])`, the same shape as every route's."""
    import orjson

    body = orjson.dumps(error_body(status, message))
    return (status, body, headers) if headers else (status, body)


# ---- the documented shape (OpenAPI) -------------------------------------------------------------


class ErrorDetail(BaseModel):
    code: str = Field(..., description="stable and machine-readable: forbidden, not_found, invalid_request, ...",
                      examples=["forbidden"])
    message: str = Field(..., description="what was wrong with the request, and how to fix it")


class ErrorBody(BaseModel):
    """Every HTTP error: `{"error": {"code", "message"}}` (what `error_body` gives)."""

    error: ErrorDetail


_WHY = {
    400: "the body cannot be read: it is not UTF-8 JSON",
    401: "no bearer token, or one that is not valid (POST /v1/users gives one)",
    403: "the request names another user, or their media: a token acts only for its owner",
    404: "a user or an item the request names does not exist",
    409: "it conflicts with what exists",
    410: "it existed and is gone (deleted or expired), for good",
    413: "the body is too large; the message gives the limit",
    415: "the body is not a media type this route accepts",
    421: "this server does not own the shard of the request; see the shard map",
    422: "a parameter or the body is not valid; the message names which and why",
    429: "past an abuse limit; retry after `Retry-After` seconds",
    503: "a backing service, or a built artifact, is not available yet; retry later",
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"required": True, "schema": {"type": "string"},
                               "description": 'the scheme to use: `Bearer realm="sixfold"` '
                                              '(`ApiKey header="X-Api-Key"` on shortener routes)'}},
    429: {"Retry-After": {"required": True, "schema": {"type": "integer", "minimum": 1},
                          "description": "seconds until the limit lets the next request through"}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 1},
                          "description": "seconds to wait, when the outage is a backing service's"}},
}


def error_responses(*statuses: int, why: dict[int, str] | None = None) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route for the error statuses it can answer, each with `ErrorBody`; `why` gives a
    route's own reason for a status instead of the general one.

    A route taking parameters or a body lists 422 here: FastAPI would otherwise document its own
    `HTTPValidationError`, which is not what the app answers.
    """
    reasons = why or {}
    unknown = sorted(set(statuses) - set(_WHY))
    if unknown:
        raise ValueError(f"no general reason for HTTP status {unknown}; add it to _WHY in sixfold.platform.errors")
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        out[status] = {"model": ErrorBody, "description": reasons.get(status, _WHY[status])}
        if status in _HEADERS:
            out[status]["headers"] = _HEADERS[status]
    return out
