"""One live system: `sixfold serve` on the embedded profile runs the stream consumers itself.

Driven as a user drives it: the real command in its own process, HTTP only, no other command.
The oracle is what was written: the follower's timeline and the hashtag and geo searches must
come to hold exactly the post made, and the lake the search made.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from accounts import Authed, signup

pytestmark = pytest.mark.e2e
PATIENCE_S = 30.0  # a failure bound on a loaded machine, not a performance target


def eventually(probe: Callable[[], object]) -> tuple[object, float]:
    """(the probe's first truthy answer, seconds it took), or fail after PATIENCE_S."""
    start = time.monotonic()
    while time.monotonic() - start < PATIENCE_S:
        found = probe()
        if found:
            return found, time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"not seen within {PATIENCE_S} s: {probe()!r}")


def test_a_post_reaches_timelines_and_search_with_no_other_command(serve) -> None:
    proc, client = serve()
    (ann, ann_token), (bob, bob_token) = signup(client, "ann"), signup(client, "bob")
    as_ann, as_bob = Authed(client, ann_token), Authed(client, bob_token)
    assert as_bob.post("/v1/follows", json={"follower_id": bob, "followee_id": ann}).status_code == 201
    posted = as_ann.post("/v1/posts", json={"user_id": ann, "caption": "live #now", "hashtags": ["livetest"],
                                            "geo": {"lat": 52.52, "lon": 13.405}})
    assert posted.status_code == 201, posted.text
    post_id = posted.json()["post_id"]

    timeline, took = eventually(lambda: [p["post_id"] for p in as_bob.get(f"/v1/timeline/{bob}").json()["posts"]])
    assert timeline == [post_id]
    tagged, _ = eventually(lambda: [p["post_id"] for p in client.get("/v1/search/hashtags/livetest").json()["posts"]])
    assert tagged == [post_id]
    near, _ = eventually(lambda: [p["post_id"] for p in client.get(
        "/v1/search/geo", params={"lat": 52.52, "lon": 13.40, "radius_km": 5}).json()["posts"]])
    assert near == [post_id]
    print(f"post on the follower's timeline after {took:.2f} s")

    # searches made through the API land in the lake too (the typeahead's consumer)
    me = str(ann)
    sent = as_ann.post("/v1/search-events", json={"user_id": me, "query": "live search", "region": "eu",
                                                  "ts": "2026-12-01T00:01:00Z"})
    assert sent.status_code == 202

    def landed() -> list:
        from schemas.records import LAKE_TABLES
        from sixfold.platform.lake import ArrowLake
        from sixfold.platform.settings import Settings

        lake = ArrowLake(Settings.from_env())
        table = LAKE_TABLES["search_events"]
        return [(r["user_id"], r["query"]) for r in lake.read(table).to_pylist()] if lake.partitions(table) else []

    rows, _ = eventually(landed)
    assert rows == [(me, "live search")]

    # Ctrl-C stops the server and its consumers cleanly
    proc.send_signal(signal.SIGINT)
    assert proc.wait(30) == 0


def test_no_consumers_leaves_the_post_to_the_stream_process(serve, home: Path) -> None:
    _, client = serve("--no-consumers")
    (ann, ann_token), (bob, bob_token) = signup(client, "ann"), signup(client, "bob")
    as_bob = Authed(client, bob_token)
    assert as_bob.post("/v1/follows", json={"follower_id": bob, "followee_id": ann}).status_code == 201
    post_id = Authed(client, ann_token).post("/v1/posts", json={"user_id": ann, "caption": "x"}).json()["post_id"]
    time.sleep(1.5)  # what a live server would have needed; nothing consumes here
    assert as_bob.get(f"/v1/timeline/{bob}").json()["posts"] == []
    done = subprocess.run([sys.executable, "streams/post_fanout.py", "--once", "--idle", "0.3"],
                          cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert [p["post_id"] for p in as_bob.get(f"/v1/timeline/{bob}").json()["posts"]] == [post_id]


def test_two_servers_shorten_at_once_with_distinct_keys_and_clicks_land_live(serve, home: Path) -> None:
    """Two `sixfold serve` processes on one store create links concurrently (keys from leased counter
    blocks); each resolves the other's links; redirects through the one without consumers are landed
    in the lake by the other's consumer thread."""
    import threading

    from schemas.records import LAKE_TABLES
    from sixfold.platform.lake import ArrowLake
    from sixfold.platform.settings import Settings

    _, one = serve()
    _, two = serve("--no-consumers")
    _, token = signup(one, "linker")
    key = {"X-Api-Key": Authed(one, token).post("/v1/api-keys").json()["api_key"]}
    made: dict[str, str] = {}
    lock = threading.Lock()

    def create(client: httpx.Client, tag: str) -> None:
        for batch in range(3):
            urls = [{"long_url": f"https://example.com/{tag}/{batch}/{i}"} for i in range(200)]
            answer = client.post("/v1/urls:batch", json={"urls": urls}, headers=key, timeout=60)
            assert answer.status_code == 200, answer.text
            with lock:
                for sent, result in zip(urls, answer.json()["results"], strict=True):
                    assert result["key"] not in made, "a key was issued twice"
                    made[result["key"]] = sent["long_url"]

    threads = [threading.Thread(target=create, args=(c, t)) for c, t in ((one, "one"), (two, "two"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(made) == 1200
    sample = sorted(made)[::40]
    for k in sample:  # every link resolves on both servers to what was sent
        for client in (one, two):
            hop = client.get(f"/{k}", follow_redirects=False)
            assert hop.status_code == 302 and hop.headers["location"] == made[k]
    lake = ArrowLake(Settings.from_env())

    def landed() -> int:
        try:
            return len(lake.read(LAKE_TABLES["url_clicks"]).to_pylist()) == 2 * len(sample)
        except FileNotFoundError:
            return False

    eventually(landed)
    clicks = lake.read(LAKE_TABLES["url_clicks"]).to_pylist()
    assert sorted(c["key"] for c in clicks) == sorted(sample * 2)
