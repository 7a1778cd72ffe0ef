"""Whether each dependency of the configured profile answers now: what `/readyz` reports.

Each check is small and independent of the app's own connections (a probe, not a request through
the store or bus objects, which may be mid-retry): the store (SQLite opened read-write and read,
or Cassandra's native port), the bus (the spool directory writable, or Kafka's port), the lake
directory writable, and, when configured, Memcached (`version`) and the rate-limit Redis (`PING`).
Every check runs in a thread with `readiness_timeout_s`; one that does not finish in time is
degraded with "no answer within ...", whatever it was blocked on.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sixfold.platform.settings import Settings, _parse_hostport

Check = Callable[[], str]  # returns what it found; raises with the reason when degraded


def _writable_dir(path: Path) -> str:
    path.mkdir(parents=True, exist_ok=True)
    probe = path / f".ready.{os.getpid()}"
    fd = os.open(probe, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"ok")
    finally:
        os.close(fd)
        probe.unlink(missing_ok=True)
    return f"{path} writable"


def _sqlite(path: Path, timeout_s: float) -> str:
    if not path.exists():  # created by the first write; what matters now is that it can be
        _writable_dir(path.parent)
        return f"SQLite {path} not created yet; its directory is writable"
    db = sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=timeout_s)
    try:
        tables = db.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    finally:
        db.close()
    return f"SQLite {path} ({tables} schema objects)"


def _tcp(what: str, host: str, port: int, timeout_s: float, ask: bytes = b"", expect: tuple[bytes, ...] = ()) -> str:
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as conn:
            if ask:
                conn.sendall(ask)
                answer = conn.recv(256)
                if not answer.startswith(expect):
                    raise ConnectionError(f"{what} at {host}:{port} answered {answer[:60]!r}")
    except OSError as exc:
        raise ConnectionError(f"{what} at {host}:{port}: {exc.strerror or exc}") from None
    return f"{what} at {host}:{port} answers"


def dependency_checks(settings: Settings) -> dict[str, Check]:
    """The checks of every dependency this profile's server uses, by name."""
    t = settings.readiness_timeout_s
    checks: dict[str, Check] = {}
    if settings.profile == "cluster":
        checks["store"] = lambda: _tcp("Cassandra", *settings.cassandra_contact, t)
        checks["bus"] = lambda: _tcp("Kafka", *settings.kafka_bootstrap, t)
    else:
        checks["store"] = lambda: _sqlite(settings.sqlite_path, t)
        checks["bus"] = lambda: _writable_dir(settings.spool_dir)
    checks["lake"] = lambda: _writable_dir(settings.lake_dir)
    if settings.shortener_memcached:
        host, port = _parse_hostport("SIXFOLD_SHORTENER_MEMCACHED", settings.shortener_memcached, 11211)
        checks["cache"] = lambda: _tcp("Memcached", host, port, t, b"version\r\n", (b"VERSION",))
    if settings.rate_limit_storage.startswith(("redis://", "rediss://")):
        from urllib.parse import urlsplit

        url = urlsplit(settings.rate_limit_storage)
        redis_host, redis_port = url.hostname or "127.0.0.1", url.port or 6379
        checks["rate_limits"] = lambda: _tcp("Redis", redis_host, redis_port, t, b"PING\r\n",
                                             (b"+PONG", b"-NOAUTH", b"-ERR"))
    return checks


async def readiness(settings: Settings) -> tuple[bool, dict[str, dict[str, Any]]]:
    """(all ready, {dependency: {"ok", "detail"}}), every check at once, each within the timeout."""
    checks = dependency_checks(settings)
    timeout = settings.readiness_timeout_s

    async def run(check: Check) -> dict[str, Any]:
        try:
            detail = await asyncio.wait_for(asyncio.to_thread(check), timeout)
            return {"ok": True, "detail": detail}
        except asyncio.TimeoutError:
            return {"ok": False, "detail": f"no answer within {timeout:g} s (SIXFOLD_READINESS_TIMEOUT_S)"}
        except Exception as exc:  # noqa: BLE001 - a failed probe is the answer, not an error
            return {"ok": False, "detail": f"{type(exc).__name__}: {exc}"}

    results = await asyncio.gather(*(run(check) for check in checks.values()))
    dependencies = dict(zip(checks, results))
    return all(r["ok"] for r in results), dependencies
