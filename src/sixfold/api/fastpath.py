"""Answering the hottest GETs without the framework's per-request machinery.

A `FastGet` recognises one path and answers `(status, body[, headers])` from the app's shared state, with
the same answers and error shapes as its FastAPI route, which stays the reference and the OpenAPI
entry. Anything a FastGet does not take (another path, a parameter it would have to explain) goes
on to FastAPI. `sixfold serve` puts `FastPaths` outermost, in front of FastAPI's middleware stack.
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


class FastPaths:
    """ASGI wrapper trying each FastGet on GET requests before handing over to the app.

    `off_loop` (the cluster profile: Cassandra and Memcached are network round trips) runs each answer in
    the thread pool, so one slow store node stalls only the requests waiting on it, never the event loop
    and with it every other connection and the health checks. On the embedded profile the answers read
    SQLite and memory in microseconds, and run on the loop (a thread hop would cost more than the read).
    """

    def __init__(self, app: Any, routes: list[FastGet], fastapi: Any = None, off_loop: bool = False) -> None:
        self.app = app
        self.routes = routes
        self.fastapi = fastapi
        self.off_loop = off_loop

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path = scope["path"]
            for route in self.routes:
                matched = route.match(path)
                if matched is None:
                    continue
                started = time.perf_counter()
                if self.off_loop:
                    from starlette.concurrency import run_in_threadpool

                    result = await run_in_threadpool(route.answer, matched, scope, self.fastapi or scope["app"])
                else:
                    result = route.answer(matched, scope, self.fastapi or scope["app"])
                if result is not None:
                    status, body = result[0], result[1]
                    extra = result[2] if len(result) > 2 and result[2] else {}
                    headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in extra.items()]
                    if not any(name == b"content-type" for name, _ in headers):
                        headers.append((b"content-type", b"application/json"))
                    headers.append((b"content-length", str(len(body)).encode()))
                    await send({"type": "http.response.start", "status": status, "headers": headers})
                    await send({"type": "http.response.body", "body": body})
                    template = getattr(route, "template", None) or type(route).__name__
                    observe_request("GET", template(matched) if callable(template) else template, status,
                                    time.perf_counter() - started)
                    scope["sixfold.counted"] = True  # the request metrics middleware, if it is outside, skips it
                    return
                break
        await self.app(scope, receive, send)


def default_routes() -> list[FastGet]:
    """Every system's fast GETs, handed over the way each hands over its router (`fast_gets`)."""
    from sixfold.feed.api import fast_gets as feed_fast_gets
    from sixfold.shortener.api import fast_gets as shortener_fast_gets
    from sixfold.typeahead.api import fast_gets as typeahead_fast_gets

    # the shortener's /{key} last: it passes on every path the app answers itself
    return [*typeahead_fast_gets(), *feed_fast_gets(), *shortener_fast_gets()]
