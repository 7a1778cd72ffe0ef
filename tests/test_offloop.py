"""Store calls never block the event loop (issue 14, item 4).

A real `sixfold serve` on the cluster profile reads Cassandra through a TCP proxy that holds what the
server sends for 3 s (one slow node). Several home-timeline requests (the fast path: two stamp reads,
then the page) are sent first and are stuck on the slow store; a health check sent after them must be
answered while every one of them is still waiting. That is an order of events, not a time limit: if
a fast path read the store on the event loop, the loop would be blocked and the health check could only
be answered after the first stuck request came back. The stuck requests then end with a timeline (the
last page, marked stale) or a 503 with Retry-After, never a 500.
"""

from __future__ import annotations

import threading
import uuid

import httpx
import pytest
from faults.proxy import DelayingProxy

from sixfold.platform.settings import Settings

pytestmark = pytest.mark.integration

STUCK = 6


@pytest.fixture
def cassandra_proxy(services_running: Settings):
    proxy = DelayingProxy(services_running.cassandra_contact)
    yield proxy
    proxy.close()


def test_a_slow_store_never_stalls_the_health_checks(cassandra_proxy, serve, monkeypatch) -> None:
    for name, value in {"SIXFOLD_PROFILE": "cluster", "SIXFOLD_CASSANDRA_HOST": cassandra_proxy.address,
                        "SIXFOLD_CASSANDRA_KEYSPACE": "sixfold_resilience", "SIXFOLD_SHORTENER_MEMCACHED": "",
                        "SIXFOLD_FEED_PAGE_CACHE_S": "0"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    _proc, client = serve()
    made = client.post("/v1/users", json={"username": f"slow{uuid.uuid4().hex[:10]}"}).json()
    auth = {"Authorization": f"Bearer {made['token']}"}
    path = f"/v1/timeline/{made['user_id']}"
    assert client.get(path, headers=auth).status_code == 200  # the token verified (and kept), statements prepared

    cassandra_proxy.delay = 3.0
    done: list[int] = []
    lock = threading.Lock()
    in_flight = threading.Barrier(STUCK + 1)

    def stuck() -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=60) as http:
            in_flight.wait()
            status = http.get(path, headers=auth).status_code
        with lock:
            done.append(status)

    threads = [threading.Thread(target=stuck) for _ in range(STUCK)]
    for thread in threads:
        thread.start()
    in_flight.wait()
    # the stuck requests' store reads are now held by the proxy (a Cassandra read is one round trip; each
    # request needs several); a health check from another connection:
    with httpx.Client(base_url=str(client.base_url), timeout=60) as http:
        for _ in range(3):
            assert http.get("/healthz").status_code == 200
            with lock:
                finished_before_health = list(done)
            assert finished_before_health == [], "a health check waited for a stuck store read: the loop was blocked"
    for thread in threads:
        thread.join(60)
    cassandra_proxy.delay = 0.0
    assert len(done) == STUCK and set(done) <= {200, 503}, done
