"""Errors shared by every adapter: each names the service and says what to do."""

from __future__ import annotations


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
