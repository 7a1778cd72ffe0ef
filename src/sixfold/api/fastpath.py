"""Answering the hottest requests without the framework's per-request machinery.

A `FastGet` recognises one path and answers `(status, body[, headers])` from the app's shared state, with
the same answers and error shapes as its FastAPI route, which stays the reference and the OpenAPI
entry. Anything a FastGet does not take (another path, a parameter it would have to explain) goes
on to FastAPI. A `FastPost` does the same for a POST whose body it reads itself (link creation: FastAPI's
routing, dependencies and models cost more than the creation). `sixfold serve` puts `FastPaths`
outermost, in front of FastAPI's middleware stack.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from sixfold.platform.metrics import observe_request

Answer = tuple[int, bytes] | tuple[int, bytes, dict[str, str]]


class FastGet(Protocol):
    def match(self, path: str) -> Any | None:
        """Something truthy when this handler owns `path` (passed on to `answer`), else None."""

    def answer(self, matched: Any, scope: dict, app: Any) -> Answer | None:
        """The response to this ASGI request, or None to let FastAPI answer (and explain) it."""

    # and `template`: its route's path ("/v1/timeline/{user_id}"), or a method of `matched` returning it,
    # under which the request metrics count its answers


class FastPost(Protocol):
    """A POST a fast path answers: `match` and `template` as a FastGet's, and

    `takes(scope)`: whether to read the body at all (its content type and length), else FastAPI answers;
    `answer(matched, scope, app, body)`: as a FastGet's, with the whole body; None hands the request,
    body and all, to FastAPI (before the answer changed anything: it explains what it would refuse)."""

    method: str  # "POST"


MAX_FAST_BODY = 16 * 1024  # the largest body a fast POST reads itself; a larger one goes to FastAPI


class FastPaths:
    """ASGI wrapper trying each FastGet on GET requests (and each FastPost, `method = "POST"`, on POSTs)
    before handing over to the app.

    `off_loop` (the cluster profile: Cassandra and Memcached are network round trips) runs each answer in
    the thread pool, so one slow store node stalls only the requests waiting on it, never the event loop
    and with it every other connection and the health checks. On the embedded profile the answers read
    SQLite and memory in microseconds, and run on the loop (a thread hop would cost more than the read).
    """

    def __init__(self, app: Any, routes: list[Any], fastapi: Any = None, off_loop: bool = False) -> None:
        self.app = app
        self.routes = routes
        self.by_method: dict[str, list[Any]] = {}
        for route in routes:
            self.by_method.setdefault(getattr(route, "method", "GET"), []).append(route)
        self.fastapi = fastapi
        self.off_loop = off_loop

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        routes = self.by_method.get(scope["method"], ()) if scope["type"] == "http" else ()
        for route in routes:
            matched = route.match(scope["path"])
            if matched is None:
                continue
            args: tuple = (matched, scope, self.fastapi or scope["app"])
            if scope["method"] != "GET":
                if not route.takes(scope):
                    break
                body = await _whole_body(receive)
                if body is None:  # the client went away mid-body
                    return
                receive = _replaying(body, receive)  # FastAPI reads the same body if the route passes
                args += (body,)
            started = time.perf_counter()
            try:
                if self.off_loop:
                    from starlette.concurrency import run_in_threadpool

                    result = await run_in_threadpool(route.answer, *args)
                else:
                    result = route.answer(*args)
            except Exception:  # noqa: BLE001 - as the app's own handler answers an unexpected error
                import logging

                logging.getLogger("sixfold.api").exception("unhandled error on %s %s", scope["method"], scope["path"])
                result = (500, _internal_body())
            if result is not None:
                status, body_out = result[0], result[1]
                extra = result[2] if len(result) > 2 and result[2] else {}
                headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
                if not any(name == b"content-type" for name, _ in headers):
                    headers.append((b"content-type", b"application/json"))
                headers.append((b"content-length", str(len(body_out)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": headers})
                await send({"type": "http.response.body", "body": body_out})
                template = getattr(route, "template", None) or type(route).__name__
                observe_request(scope["method"], template(matched) if callable(template) else template, status,
                                time.perf_counter() - started)
                scope["sixfold.counted"] = True  # the request metrics middleware, if it is outside, skips it
                return
            break
        await self.app(scope, receive, send)


def _internal_body() -> bytes:
    import orjson

    from sixfold.platform.errors import error_body

    return orjson.dumps(error_body(500, "internal error; the server log has the details", "internal"))


async def _whole_body(receive: Any) -> bytes | None:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def _replaying(body: bytes, receive: Any) -> Any:
    """A `receive` that gives `body` once, as one message, then whatever the client sends next."""
    given = False

    async def replay() -> dict:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


def default_routes() -> list[FastGet]:
    """Every system's fast GETs, handed over the way each hands over its router (`fast_gets`)."""
    from sixfold.feed.api import fast_gets as feed_fast_gets
    from sixfold.shortener.api import fast_gets as shortener_fast_gets
    from sixfold.typeahead.api import fast_gets as typeahead_fast_gets

    # the shortener's /{key} last: it passes on every path the app answers itself
    return [*typeahead_fast_gets(), *feed_fast_gets(), *shortener_fast_gets()]
