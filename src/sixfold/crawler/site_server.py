"""Serving the crawler's test site over HTTP, and the server-side access log that checks a crawl.

One uvicorn server listens on one socket per host (127.0.0.2, 127.0.0.3, ... all on the same port;
all of 127/8 is loopback on Linux) and answers by the local address the request came in on (the
ASGI scope's "server"), with `Site.respond`. The slow host waits before answering with
`asyncio.sleep`, so it slows only its own requests. Every request is logged on arrival time
(`time.time()` on the server): {"host", "target", "status", "t", "method", "ua", "type", "bytes"}.

`serve(spec)` returns a `RunningSite` (a context manager): in a background thread for tests, or
in a subprocess (`python -m sixfold.crawler.site_server`) for the benchmark, so the server never
shares a GIL with the crawler it measures. A state directory gets `seeds.txt` (one URL a line,
for `sixfold crawl run --seeds`), `truth.json` (`SiteTruth`), `access.jsonl` and, once the
sockets listen, `ready` (the port).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Self

from sixfold.crawler.site import Site, SiteSpec, SiteTruth, build
from sixfold.platform.processes import read_jsonl, stop_group

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class SiteServerError(RuntimeError):
    """The site could not be served; the message says why and what to change."""


class AccessLog:
    """Thread-safe list of request records, mirrored line by line into a JSONL file when given one
    (remember=False keeps only the file: a site served for hours must not grow in memory)."""

    def __init__(self, path: Path | None = None, *, remember: bool = True) -> None:
        self._remember = remember
        self._records: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._file = open(path, "a", encoding="utf-8") if path else None  # noqa: SIM115 - closed in close()

    def add(self, record: dict[str, Any]) -> None:
        with self._lock:
            if self._remember:
                self._records.append(record)
            if self._file:
                self._file.write(json.dumps(record) + "\n")
                self._file.flush()

    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._records)

    def close(self) -> None:
        with self._lock:
            if self._file:
                self._file.close()
                self._file = None


def site_app(site: Site, port: int, log: AccessLog) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    """The ASGI app: dispatch on the local address, answer with `site.respond`, log on arrival."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        arrived = time.time()
        local_ip = scope["server"][0] if scope.get("server") else "127.0.0.1"
        host = f"{local_ip}:{port}"
        target = scope.get("raw_path", scope["path"].encode()).decode("latin-1")
        if scope.get("query_string"):
            target += "?" + scope["query_string"].decode("latin-1")
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            status, headers, body = 405, {"allow": "GET, HEAD", "content-type": "text/plain"}, b"GET or HEAD\n"
        else:
            delay = site.latency_s(host)
            if delay:
                await asyncio.sleep(delay)
            status, headers, body = site.respond(host, target)
        headers = {**headers, "content-length": str(len(body))}
        await send({"type": "http.response.start", "status": status,
                    "headers": [(k.encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
        ua = next((v.decode("latin-1") for k, v in scope.get("headers", []) if k == b"user-agent"), "")
        log.add({"host": host, "target": target, "status": status, "t": arrived, "method": method, "ua": ua,
                 "type": headers.get("content-type", ""), "bytes": len(body)})

    return app


def bind_sockets(site: Site, port: int, attempts: int = 50) -> tuple[list[socket.socket], int]:
    """One listening-ready socket per host on the same port; port 0 finds one free on every address."""
    ips = [site.ip(h) for h in range(site.spec.hosts)]
    last: OSError | None = None
    for _ in range(attempts if port == 0 else 1):
        socks: list[socket.socket] = []
        try:
            chosen = port
            for ip in ips:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind((ip, chosen))
                chosen = sock.getsockname()[1]
            for sock in socks:
                sock.listen(2048)
            return socks, chosen
        except OSError as exc:
            last = exc
            for sock in socks:
                sock.close()
    raise SiteServerError(f"cannot listen on {ips[0]}..{ips[-1]} port {port}: {last}; "
                          f"choose another --port (or 0 for a free one)")


class RunningSite:
    """A served site: its seeds, truth and port, and the server's access log. Stop with `stop()` or `with`."""

    def __init__(self, site: Site, port: int, state_dir: Path, stop: Callable[[], None],
                 log: AccessLog | None = None) -> None:
        self.site = site
        self.port = port
        self.state_dir = state_dir
        self.truth: SiteTruth = site.truth(port)
        self.seeds: list[str] = list(self.truth.seeds)
        self._stop = stop
        self._log = log

    @property
    def seeds_file(self) -> Path:
        return self.state_dir / "seeds.txt"

    def access_log(self) -> list[dict[str, Any]]:
        """Every request so far, in arrival order per connection (server-side `time.time()` in "t")."""
        if self._log is not None:
            return self._log.records()
        return read_jsonl(self.state_dir / "access.jsonl")  # a line being written now is skipped

    def stop(self) -> None:
        self._stop()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def write_state(directory: Path, truth: SiteTruth, port: int) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "seeds.txt").write_text("".join(f"{url}\n" for url in truth.seeds))
    (directory / "truth.json").write_text(truth.to_json())
    (directory / "ready").write_text(f"{port}\n")


def _serve_in_thread(site: Site, port: int, state_dir: Path, timeout_s: float, remember: bool = True) -> RunningSite:
    import uvicorn

    socks, port = bind_sockets(site, port)
    (state_dir / "ready").unlink(missing_ok=True)
    log_path = state_dir / "access.jsonl"
    log_path.write_text("")
    log = AccessLog(log_path, remember=remember)
    config = uvicorn.Config(site_app(site, port, log), lifespan="off", log_level="warning", access_log=False,
                            timeout_keep_alive=30)
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=socks)
        except BaseException as exc:  # noqa: BLE001 - reported to the starting thread
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"site-server-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if failure or not thread.is_alive():
            raise SiteServerError(f"the site server stopped while starting: {failure[0] if failure else 'no error'}")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise SiteServerError(f"the site server did not start in {timeout_s:.0f} s")
        time.sleep(0.01)

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        for sock in socks:
            sock.close()
        log.close()

    running = RunningSite(site, port, state_dir, stop, log if remember else None)
    write_state(state_dir, running.truth, port)
    return running


def spec_json(spec: SiteSpec) -> str:
    return json.dumps(asdict(spec))


def spec_from_json(text: str) -> SiteSpec:
    return SiteSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()})


def _serve_in_subprocess(site: Site, port: int, state_dir: Path, timeout_s: float) -> RunningSite:
    (state_dir / "ready").unlink(missing_ok=True)
    log_path = state_dir / "server.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "sixfold.crawler.site_server", "--spec", spec_json(site.spec),
                                 "--port", str(port), "--state-dir", str(state_dir)],
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    ready = state_dir / "ready"
    while not (ready.exists() and ready.read_text().strip()):
        if proc.poll() is not None:
            raise SiteServerError(f"the site server exited with {proc.returncode}: "
                                  f"{log_path.read_text(errors='replace')[-2000:]}")
        if time.monotonic() > deadline:
            stop_group(proc)
            raise SiteServerError(f"the site server did not start in {timeout_s:.0f} s; log: {log_path}")
        time.sleep(0.02)
    chosen = int(ready.read_text().strip())
    return RunningSite(site, chosen, state_dir, lambda: stop_group(proc))


def serve(spec: SiteSpec, port: int = 0, *, in_process: bool = True, state_dir: Path | None = None,
          timeout_s: float = 30.0, remember: bool = True) -> RunningSite:
    """Serve the site for `spec` on 127.0.0.2.. `port` (0: a free one) until the RunningSite stops.

    in_process=True runs uvicorn in a daemon thread of this process; False starts a subprocess.
    `state_dir` (default: a fresh temporary directory) receives seeds.txt, truth.json, access.jsonl.
    remember=False (in process only) keeps the access log in the file alone; `access_log()` reads it.
    """
    site = build(spec)
    directory = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="sixfold-site-"))
    directory.mkdir(parents=True, exist_ok=True)
    if in_process:
        return _serve_in_thread(site, port, directory, timeout_s, remember)
    return _serve_in_subprocess(site, port, directory, timeout_s)


def serve_until_signal(spec: SiteSpec, port: int, state_dir: Path, say: Callable[[str], None] = print) -> None:
    """Serve in this process until SIGINT or SIGTERM (the `sixfold crawl site` command and the subprocess)."""
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with serve(spec, port, in_process=True, state_dir=state_dir, remember=False) as running:
        say(f"serving {spec.hosts} host(s) on port {running.port}; seeds:")
        for url in running.seeds:
            say(f"  {url}")
        say(f"wrote {running.seeds_file}, {state_dir / 'truth.json'}; access log {state_dir / 'access.jsonl'}")
        stop.wait()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the crawler's test site (used by `sixfold bench crawler`).")
    parser.add_argument("--spec", default="{}", help="SiteSpec fields as JSON")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", required=True)
    args = parser.parse_args(argv)
    serve_until_signal(spec_from_json(args.spec), args.port, Path(args.state_dir), say=lambda m: print(m, flush=True))


if __name__ == "__main__":
    main()
