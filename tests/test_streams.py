"""The stream consumers in streams/ as an operator runs them: a subprocess with --once, then SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.platform.bus import SpoolBus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store
from sixfold.typeahead.collection import check_search_event, publish

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]


def stream(settings: Settings, name: str, *args: str, env: dict | None = None, **popen) -> subprocess.Popen:
    env = {**os.environ, "SIXFOLD_HOME": str(settings.home), "SIXFOLD_PROFILE": "embedded", **(env or {})}
    return subprocess.Popen([sys.executable, str(REPO / "streams" / name), *args], env=env, cwd=settings.home,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


def test_search_events_once_lands_the_good_and_rejects_the_bad(settings: Settings) -> None:
    ts = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    bus = SpoolBus(settings.spool_dir)
    publish(bus, [check_search_event({"user_id": f"u{i}", "query": f"query {i}", "region": "us", "ts": ts})
                  for i in range(3)])
    bus.produce_raw("search-events", b"not json", key="x")
    out, err = stream(settings, "search_events.py", "--once", "--idle", "0.3").communicate(timeout=120)
    assert "done: received 4, landed 3, rejected 1" in out, out + err
    assert sorted(ArrowLake(settings).read(LAKE_TABLES["search_events"]).column("query").to_pylist()) == [
        "query 0", "query 1", "query 2"]


def test_post_fanout_pushes_to_followers_and_stops_on_sigterm(settings: Settings) -> None:
    client = TestClient(create_app(settings))
    (ann, ann_token), (bob, bob_token), (cat, cat_token) = (signup(client, n) for n in ("ann", "bob", "cat"))
    for follower, token in ((bob, bob_token), (cat, cat_token)):
        assert Authed(client, token).post("/v1/follows", json={"follower_id": follower, "followee_id": ann}).status_code == 201
    posts = [Authed(client, ann_token).post("/v1/posts", json={"user_id": ann, "caption": f"p{i}"}).json()["post_id"]
             for i in range(2)]
    proc = stream(settings, "post_fanout.py", "--idle", "0.2")
    store = open_store(settings)
    deadline = time.monotonic() + 90
    timelines = SERVING_TABLES["timelines"]
    while time.monotonic() < deadline and len(store.query(timelines, {"user_id": cat})) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # stops between passes, closing the store and the bus
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    for follower in (bob, cat):
        assert [r["post_id"] for r in store.query(timelines, {"user_id": follower})] == sorted(posts, reverse=True)
    assert store.query(timelines, {"user_id": ann}) == []
    assert "posts 2, pushed 4" in out, out


def test_a_bad_setting_stops_a_consumer_with_the_variable_named(settings: Settings) -> None:
    proc = stream(settings, "post_fanout.py", "--once", env={"SIXFOLD_PROFILE": "bogus"})
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "SIXFOLD_PROFILE" in err and "Traceback" not in err


def test_a_consumer_whose_kafka_is_away_says_so_and_keeps_trying(settings: Settings) -> None:
    """A broker that is not there (yet, or any more) is one line and a retry, not a stack trace and an exit:
    a consumer run by hand or by a supervisor outlives an outage. `--once` says it and exits 1."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once the socket is closed
    env = {"SIXFOLD_PROFILE": "cluster", "SIXFOLD_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed}",
           "SIXFOLD_CONNECT_TIMEOUT_S": "1"}
    once = stream(settings, "search_events.py", "--once", env=env)
    _out, err = once.communicate(timeout=60)
    assert once.returncode == 1, err
    assert f"Kafka at 127.0.0.1:{closed} is unavailable" in err and "Traceback" not in err, err

    running = stream(settings, "search_events.py", env=env)
    try:
        time.sleep(6)  # the first tries: after 1 s, then 2 s
        assert running.poll() is None, running.communicate()[1]  # still there, trying
    finally:
        running.send_signal(signal.SIGTERM)
        out, err = running.communicate(timeout=30)
    assert running.returncode == 0, err
    assert err.count("retrying in") >= 2 and "Traceback" not in err, err
