"""Browser-test plumbing shared by the page tests: the real app in a thread, Debian's Chromium."""

from __future__ import annotations

import socket
import threading
from typing import Any, Self

import httpx
import uvicorn

from sixfold.api.app import create_app
from sixfold.platform.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]
TIMEOUT_MS = 10_000


class Server:
    """The real app under uvicorn in a thread, on a socket bound before start (no port race)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.app = create_app(Settings.from_env())
        self.server = uvicorn.Server(uvicorn.Config(self.app, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Self:
        self.thread.start()
        with httpx.Client(timeout=1.0) as client:
            for _ in range(200):
                try:
                    if client.get(self.url + "/v1/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                self.thread.join(0.05)
                if not self.thread.is_alive():
                    break
        raise RuntimeError(f"the app did not start on {self.url}")

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        suggester = getattr(self.app.state, "suggester", None)
        if suggester is not None:
            suggester.close()
        self.sock.close()


def goto(page: Any, url: str) -> None:
    """Open `url` and wait until the page says it is ready (`<body data-ready="true">`)."""
    page.goto(url)
    page.wait_for_function("() => document.body.dataset.ready === 'true'")


class People:
    """Calling it opens one more person: a browser context of its own (own localStorage: one person, one
    device) with `url` open, its requests and WebSocket URLs in `page.requested`, its script errors in
    `page.errors`. `close()` closes every context it opened."""

    def __init__(self, browser: Any, url: str, width: int) -> None:
        self.browser, self.url, self.width = browser, url, width
        self.contexts: list[Any] = []

    def __call__(self) -> Any:
        context = self.browser.new_context(viewport={"width": self.width, "height": 900})
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.requested, page.errors = [], []
        page.on("request", lambda r: page.requested.append(r.url))
        page.on("websocket", lambda ws: page.requested.append(ws.url))
        page.on("pageerror", lambda e: page.errors.append(str(e)))
        goto(page, self.url)
        return page

    def close(self) -> None:
        for context in self.contexts:
            context.close()
