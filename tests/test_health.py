"""`/healthz` (alive) and `/readyz` (each dependency of the profile), degraded on purpose.

The store is made unusable (the SQLite file overwritten with bytes that are not a database), and
a cluster profile is pointed at closed ports for Kafka, Cassandra and Memcached: `/readyz` answers
503 naming each degraded dependency and why, within about its timeout, while `/healthz` and the
old `/v1/health` still answer 200.
"""

from __future__ import annotations

import socket
import time

import pytest
from fastapi.testclient import TestClient

from sixfold.api.app import create_app
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.unit


def test_ready_on_a_fresh_embedded_home(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    assert client.get("/healthz").json() == {"alive": True}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and set(body["dependencies"]) == {"store", "bus", "lake"}
    assert all(dep["ok"] for dep in body["dependencies"].values())
    client.post("/v1/users", json={"username": "alice"})  # the store now exists: read for real
    assert client.get("/readyz").json()["dependencies"]["store"]["detail"].startswith("SQLite")


def test_unusable_sqlite_store_is_named(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    settings.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    settings.sqlite_path.write_bytes(b"this is not a database " * 200)
    ready = client.get("/readyz")
    assert ready.status_code == 503
    body = ready.json()
    assert body["ready"] is False
    store = body["dependencies"]["store"]
    assert store["ok"] is False and "not a database" in store["detail"]
    assert body["dependencies"]["lake"]["ok"] and body["dependencies"]["bus"]["ok"]  # only the store is named
    assert client.get("/healthz").status_code == 200
    health = client.get("/v1/health")
    assert health.status_code == 200 and set(health.json()) == {"status", "version", "profile"}  # unchanged


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connections are refused


def test_cluster_dependencies_on_closed_ports(home, monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "cluster",
           "SIXFOLD_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
           "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{closed_port()}",
           "SIXFOLD_SHORTENER_MEMCACHED": f"127.0.0.1:{closed_port()}", "SIXFOLD_READINESS_TIMEOUT_S": "0.5"}
    settings = Settings.from_env(env)
    client = TestClient(create_app(settings))
    started = time.monotonic()
    ready = client.get("/readyz")
    assert time.monotonic() - started < 3
    assert ready.status_code == 503
    deps = ready.json()["dependencies"]
    assert set(deps) == {"store", "bus", "lake", "cache"}
    for name, what in (("store", "Cassandra"), ("bus", "Kafka"), ("cache", "Memcached")):
        assert deps[name]["ok"] is False and what in deps[name]["detail"], deps[name]
    assert deps["lake"]["ok"] is True
    assert client.get("/healthz").status_code == 200


def test_a_dependency_that_hangs_is_degraded_within_the_timeout(home) -> None:
    listener = socket.socket()  # accepts connections (the backlog) but never answers a byte
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        env = {"SIXFOLD_HOME": str(home), "SIXFOLD_SHORTENER_MEMCACHED": f"127.0.0.1:{listener.getsockname()[1]}",
               "SIXFOLD_READINESS_TIMEOUT_S": "0.3"}
        client = TestClient(create_app(Settings.from_env(env)))
        started = time.monotonic()
        ready = client.get("/readyz")
        assert time.monotonic() - started < 2
        assert ready.status_code == 503
        cache = ready.json()["dependencies"]["cache"]
        assert cache["ok"] is False and ("0.3" in cache["detail"] or "timed out" in cache["detail"]), cache
    finally:
        listener.close()
