"""Timeouts, retries, circuit breakers, bulkheads and load shedding (`sixfold.platform.resilience`).

Unit: backoff delays stay within full jitter's [0, min(cap, base * 2**(n-1))] and attempts are
counted; a non-idempotent call is made once whatever fails; the breaker walks closed -> open ->
half-open -> open/closed on a controlled clock; the bulkhead refuses past its queue, and at once
on an event-loop thread; the in-flight limit answers 503 with Retry-After and lets the probes by.
Memcached's breaker is driven by a real socket that never answers.

Integration (real Cassandra and Kafka, through a TCP proxy that delays what the client sends): a
Cassandra write whose outcome is unknown (the lightweight transaction timed out, yet landed) is not
repeated while an upsert is; and a real `sixfold serve` driven with far more concurrent slow
requests than its limits answers 503 with Retry-After (never 500), keeps answering /healthz within
a fraction of a second, and keeps its memory bounded.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
import uuid
from pathlib import Path

import pytest
from faults.proxy import DelayingProxy

from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.resilience import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    CircuitOpen,
    Guard,
    InFlightLimit,
    Overloaded,
    Policy,
)
from sixfold.platform.settings import Settings, SettingsError


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeDependency:
    """Counts its calls; fails the first `failures` of them with `error`."""

    def __init__(self, failures: int, error: type[BaseException] = ConnectionError) -> None:
        self.calls = 0
        self.failures = failures
        self.error = error

    def __call__(self, value: str = "ok") -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error(f"failure {self.calls}")
        return value


def make_guard(policy: Policy, **kwargs) -> tuple[Guard, list[float]]:
    slept: list[float] = []
    g = Guard(f"test-{uuid.uuid4().hex[:8]}", "Test", "test:1", timeout_s=kwargs.pop("timeout_s", 1.0),
              policy=policy, sleep=slept.append, **kwargs)
    return g, slept


# ---- backoff ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_backoff_delays_bounded_by_full_jitter_and_attempts_counted() -> None:
    policy = Policy(attempts=5, backoff_base_s=0.1, backoff_cap_s=0.3, budget_s=60, failures_to_open=100)
    by_retry: list[list[float]] = [[], [], [], []]
    for _ in range(300):
        g, slept = make_guard(policy)
        dependency = FakeDependency(failures=99)
        with pytest.raises(ConnectionError, match="failure 5"):  # the last failure, as it was
            g.call(dependency, idempotent=True)
        assert dependency.calls == 5 and len(slept) == 4  # 5 attempts, a wait between each two
        assert g.failed_in_a_row == 5
        for n, delay in enumerate(slept):
            by_retry[n].append(delay)
    for n, delays in enumerate(by_retry):
        ceiling = min(0.3, 0.1 * 2 ** n)  # 0.1, 0.2, 0.3 (capped), 0.3
        assert all(0 <= d <= ceiling for d in delays), (n, max(delays))
        # full jitter: spread over the whole of [0, ceiling], not bunched at the top or the bottom
        assert min(delays) < 0.1 * ceiling and max(delays) > 0.9 * ceiling, (n, min(delays), max(delays))


@pytest.mark.unit
def test_a_transient_failure_is_retried_and_the_success_counts() -> None:
    g, slept = make_guard(Policy(attempts=3, failures_to_open=100))
    dependency = FakeDependency(failures=2)
    assert g.call(dependency, "row", idempotent=True) == "row"
    assert dependency.calls == 3 and len(slept) == 2
    assert g.state == CLOSED and g.failed_in_a_row == 0  # a success resets the count


@pytest.mark.unit
def test_a_refusal_is_not_a_failure_and_not_retried() -> None:
    g, slept = make_guard(Policy(attempts=3, failures_to_open=2))
    dependency = FakeDependency(failures=5, error=ValueError)  # e.g. a bad statement: the service answered
    for _ in range(5):
        with pytest.raises(ValueError):
            g.call(dependency, idempotent=True)
    assert dependency.calls == 5 and not slept and g.state == CLOSED


@pytest.mark.unit
def test_a_non_idempotent_write_is_made_once_whatever_fails() -> None:
    g, slept = make_guard(Policy(attempts=5, failures_to_open=100))
    write = FakeDependency(failures=1, error=TimeoutError)  # timed out: did it land? unknown
    with pytest.raises(TimeoutError):
        g.call(write, idempotent=False)
    assert write.calls == 1 and not slept


@pytest.mark.unit
def test_retries_stop_when_the_breaker_opens() -> None:
    g, slept = make_guard(Policy(attempts=10, failures_to_open=3, budget_s=60))
    dependency = FakeDependency(failures=99)
    with pytest.raises(CircuitOpen):
        g.call(dependency, idempotent=True)
    assert dependency.calls == 3 and g.state == OPEN


# ---- the breaker -----------------------------------------------------------------------------------------
def gauge(g: Guard) -> float | None:
    from prometheus_client import REGISTRY

    return REGISTRY.get_sample_value("sixfold_circuit_breaker_state", {"dependency": g.name, "target": g.where})


@pytest.mark.unit
def test_breaker_closed_open_half_open_closed_on_a_controlled_clock() -> None:
    clock = Clock()
    g, _ = make_guard(Policy(attempts=1, failures_to_open=3, open_s=10.0), clock=clock)
    dependency = FakeDependency(failures=3)
    assert g.state == CLOSED and gauge(g) == 0
    for _ in range(2):
        with pytest.raises(ConnectionError):
            g.call(dependency, idempotent=True)
    assert g.state == CLOSED
    with pytest.raises(ConnectionError):
        g.call(dependency, idempotent=True)
    assert g.state == OPEN and gauge(g) == 2

    clock.now += 4
    with pytest.raises(CircuitOpen) as refused:  # fails fast: the dependency is not called
        g.call(dependency, idempotent=True)
    assert dependency.calls == 3
    assert refused.value.retry_after_s == 6 and isinstance(refused.value, ServiceUnavailable)
    assert "3 failures in a row" in str(refused.value)

    clock.now += 6  # open_s over: the next call is the one probe
    seen_inside: list[str] = []

    def probe() -> str:
        assert g.state == HALF_OPEN and gauge(g) == 1
        try:
            g.call(dependency, idempotent=True)  # a second caller while the probe runs
        except CircuitOpen as exc:
            seen_inside.append(str(exc))
        return dependency()

    assert g.call(probe, idempotent=True) == "ok"
    assert seen_inside and "half-open" in seen_inside[0]
    assert g.state == CLOSED and g.failed_in_a_row == 0 and gauge(g) == 0


@pytest.mark.unit
def test_a_failed_probe_opens_the_breaker_again_for_a_full_period() -> None:
    clock = Clock()
    g, _ = make_guard(Policy(attempts=1, failures_to_open=2, open_s=5.0), clock=clock)
    dependency = FakeDependency(failures=3)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            g.call(dependency, idempotent=True)
    assert g.state == OPEN
    clock.now += 5
    with pytest.raises(ConnectionError):  # the probe fails
        g.call(dependency, idempotent=True)
    assert g.state == OPEN and dependency.calls == 3
    clock.now += 4.5
    with pytest.raises(CircuitOpen) as refused:
        g.call(dependency, idempotent=True)
    assert refused.value.retry_after_s == 1
    clock.now += 0.5
    assert g.call(dependency, idempotent=True) == "ok" and g.state == CLOSED


# ---- the bulkhead ---------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_bulkhead_bounds_calls_in_flight_and_waiting() -> None:
    g, _ = make_guard(Policy(attempts=1), concurrency=2, queue=1, timeout_s=5.0)
    release = threading.Event()
    results: list[str] = []

    def slow() -> str:
        release.wait(10)
        return "done"

    threads = [threading.Thread(target=lambda: results.append(g.call(slow, idempotent=True))) for _ in range(3)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 5
    while g._waiting < 1 and time.monotonic() < deadline:  # two in flight, the third waiting
        time.sleep(0.01)
    assert g.describe()["in_flight"] == 2 and g.describe()["waiting"] == 1
    started = time.monotonic()
    with pytest.raises(Overloaded) as refused:  # the fourth: refused at once
        g.call(slow, idempotent=True)
    assert time.monotonic() - started < 0.5 and refused.value.retry_after_s == 1
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["done"] * 3  # the one that waited got its slot
    assert g.state == CLOSED  # overload is not the dependency failing


@pytest.mark.unit
def test_bulkhead_never_waits_on_an_event_loop_thread() -> None:
    g, _ = make_guard(Policy(attempts=1), concurrency=1, queue=10, timeout_s=5.0)
    release = threading.Event()
    holder = threading.Thread(target=lambda: g.call(lambda: release.wait(10), idempotent=True))
    holder.start()
    while g.describe()["in_flight"] < 1:
        time.sleep(0.01)

    async def on_the_loop() -> float:
        started = time.monotonic()
        with pytest.raises(Overloaded, match="event-loop thread"):
            g.call(lambda: "x", idempotent=True)
        return time.monotonic() - started

    try:
        assert asyncio.run(on_the_loop()) < 0.1
    finally:
        release.set()
        holder.join(10)


# ---- the in-flight limit ----------------------------------------------------------------------------------------
@pytest.mark.unit
def test_in_flight_limit_sheds_at_once_and_lets_probes_by() -> None:
    async def scenario() -> None:
        gate = asyncio.Event()

        async def app(scope, receive, send):  # every request waits for the gate
            if scope["path"] != "/healthz":
                await gate.wait()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"ok"})

        limited = InFlightLimit(app, limit=2)

        async def request(path: str) -> tuple[int, dict[bytes, bytes]]:
            sent: list[dict] = []

            async def send(message: dict) -> None:
                sent.append(message)

            async def receive() -> dict:
                return {"type": "http.request", "body": b""}

            scope = {"type": "http", "method": "GET", "path": path, "headers": []}
            await limited(scope, receive, send)
            return sent[0]["status"], dict(sent[0]["headers"])

        slow = [asyncio.create_task(request("/v1/slow")) for _ in range(2)]
        await asyncio.sleep(0.01)
        assert limited.in_flight == 2
        status, headers = await asyncio.wait_for(request("/v1/slow"), 1)
        assert status == 503 and headers[b"retry-after"] == b"1"
        assert (await asyncio.wait_for(request("/healthz"), 1))[0] == 200  # exempt
        gate.set()
        assert [s for s, _ in await asyncio.gather(*slow)] == [200, 200]
        assert limited.in_flight == 0 and limited.shed == 1
        assert (await request("/v1/slow"))[0] == 200

    asyncio.run(scenario())


@pytest.mark.unit
def test_limit_settings_are_validated() -> None:
    ok = Settings.from_env({"SIXFOLD_MAX_IN_FLIGHT": "64", "SIXFOLD_DEPENDENCY_CONCURRENCY": "8",
                            "SIXFOLD_DEPENDENCY_QUEUE": "0"})
    assert (ok.max_in_flight, ok.dependency_concurrency, ok.dependency_queue) == (64, 8, 0)
    with pytest.raises(SettingsError) as bad:
        Settings.from_env({"SIXFOLD_MAX_IN_FLIGHT": "0", "SIXFOLD_DEPENDENCY_CONCURRENCY": "lots",
                           "SIXFOLD_DEPENDENCY_QUEUE": "-1"})
    named = {var for var, _ in bad.value.problems}
    assert named == {"SIXFOLD_MAX_IN_FLIGHT", "SIXFOLD_DEPENDENCY_CONCURRENCY", "SIXFOLD_DEPENDENCY_QUEUE"}


# ---- Memcached behind its breaker, on a real socket ------------------------------------------------------------
@pytest.mark.unit
def test_memcached_that_never_answers_is_skipped_once_its_breaker_opens() -> None:
    from sixfold.shortener.cache import MemcachedCache

    listener = socket.socket()  # accepts (the backlog) but never answers a byte
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    try:
        cache = MemcachedCache("127.0.0.1", listener.getsockname()[1], ttl_s=30, timeout_s=0.05)
        timings = []
        for _ in range(6):
            started = time.perf_counter()
            assert cache.get("abc") is None  # a miss: the redirect reads the store
            timings.append(time.perf_counter() - started)
        assert all(t >= 0.04 for t in timings[:3]), timings  # three timeouts in a row ...
        assert cache._guard.state == OPEN
        assert all(t < 0.005 for t in timings[3:]), timings  # ... then no wait at all
    finally:
        listener.close()


# ---- real Cassandra through a delaying proxy ---------------------------------------------------------------------
@pytest.fixture
def cassandra_proxy(services_running: Settings):
    proxy = DelayingProxy(services_running.cassandra_contact)
    yield proxy
    proxy.close()


@pytest.mark.integration
def test_cassandra_write_with_unknown_outcome_is_not_repeated_and_an_upsert_is(cassandra_proxy, home) -> None:
    from schemas.records import SERVING_TABLES
    from sixfold.platform.store import CassandraStore

    settings = Settings.from_env({"SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "cluster",
                                  "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{cassandra_proxy.port}",
                                  "SIXFOLD_CONNECT_TIMEOUT_S": "1"})
    links = SERVING_TABLES["url_expiry"]  # (day, key): a small table with a whole-key primary key
    store = CassandraStore(settings)
    try:
        day = f"test-{uuid.uuid4().hex[:12]}"
        store.upsert(links, {"day": day, "key": "warm"})  # table made and statements prepared at full speed
        store.insert_if_absent(links, {"day": day, "key": "warm-lwt"})
        g = store._guard
        cassandra_proxy.delay = 1.5  # every request now outlives the 1 s timeout, and still lands later

        with pytest.raises(ServiceUnavailable, match="timed out"):
            store.insert_if_absent(links, {"day": day, "key": "alias"})
        assert g.failed_in_a_row == 1  # one attempt: a retry would find its own row and answer "taken"

        with pytest.raises(ServiceUnavailable, match="timed out"):
            store.upsert(links, {"day": day, "key": "upserted"})
        assert g.failed_in_a_row == 1 + g.policy.attempts  # an upsert by primary key: retried

        cassandra_proxy.delay = 0.0
        time.sleep(2.0)  # let the late requests land
        # the timed-out lightweight transaction did apply: its outcome was unknown, not a failure
        assert store.get(links, {"day": day, "key": "alias"}) is not None
        assert store.insert_if_absent(links, {"day": day, "key": "alias"}) is False
    finally:
        cassandra_proxy.delay = 0.0
        store.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.integration
def test_overloaded_server_sheds_with_503_and_stays_alive(cassandra_proxy, serve, monkeypatch) -> None:
    import httpx

    for name, value in {"SIXFOLD_PROFILE": "cluster", "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{cassandra_proxy.port}",
                        "SIXFOLD_CASSANDRA_KEYSPACE": "sixfold_resilience", "SIXFOLD_SHORTENER_MEMCACHED": "",
                        "SIXFOLD_MAX_IN_FLIGHT": "16", "SIXFOLD_DEPENDENCY_CONCURRENCY": "4",
                        "SIXFOLD_DEPENDENCY_QUEUE": "4"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    proc, client = serve()
    path = "/v1/search/hashtags/resilience"
    assert client.get(path).status_code == 200  # table made, statement prepared, before the slowness
    for _ in range(20):
        client.get(path)
    rss_before = rss_kib(proc.pid)
    cassandra_proxy.delay = 1.0
    base = str(client.base_url)
    storm = 400

    health_waits: list[float] = []
    storm_over = threading.Event()

    def probe_health() -> None:  # its own thread and connection: what a load balancer's probe sees
        with httpx.Client(base_url=base, timeout=10) as http:
            while not storm_over.is_set():
                started = time.monotonic()
                assert http.get("/healthz").status_code == 200
                health_waits.append(time.monotonic() - started)
                time.sleep(0.1)

    async def drive() -> list[httpx.Response | Exception]:
        limits = httpx.Limits(max_connections=storm + 10, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
            async def one() -> httpx.Response | Exception:
                try:
                    return await http.get(path)
                except httpx.HTTPError as exc:
                    return exc

            return await asyncio.gather(*(one() for _ in range(storm)))

    prober = threading.Thread(target=probe_health)
    prober.start()
    try:
        started = time.monotonic()
        answers = asyncio.run(drive())
        took = time.monotonic() - started
    finally:
        storm_over.set()
        prober.join(15)
    rss_after = rss_kib(proc.pid)
    cassandra_proxy.delay = 0.0

    errors = [a for a in answers if isinstance(a, Exception)]
    assert not errors, errors[:3]
    statuses = [a.status_code for a in answers]
    shed = [a for a in answers if a.status_code == 503]
    assert 500 not in statuses and set(statuses) <= {200, 503}, sorted(set(statuses))
    assert len(shed) >= storm // 2, (len(shed), statuses.count(200))
    assert all(a.headers.get("retry-after", "").isdigit() for a in shed)
    assert statuses.count(200) >= 4  # what was admitted was served, slowly
    assert len(health_waits) >= 3 and max(health_waits) < 1.0, health_waits  # alive and answering during the storm
    by_limit = sum(1 for a in shed if "SIXFOLD_MAX_IN_FLIGHT" in a.text)  # the rest: Cassandra's bulkhead
    assert rss_after - rss_before < 150 * 1024, (rss_before, rss_after)  # KiB: bounded (generously)
    print(f"\noverload: {storm} concurrent requests in {took:.1f} s -> {statuses.count(200)} served, {len(shed)} "
          f"answered 503 ({by_limit} by the in-flight limit, {len(shed) - by_limit} by Cassandra's bulkhead); "
          f"/healthz {len(health_waits)} probes, max {max(health_waits) * 1000:.0f} ms; "
          f"RSS {rss_before // 1024} -> {rss_after // 1024} MiB")

    ready = client.get("/readyz").json()
    assert any(b["dependency"] == "cassandra" for b in ready["breakers"].values()), ready
    assert client.get(path).status_code == 200  # and back to normal once the store is fast again
    assert os.kill(proc.pid, 0) is None


@pytest.mark.integration
def test_redirects_from_cache_while_the_store_is_down(cassandra_proxy, home) -> None:
    from accounts import Authed, signup
    from fastapi.testclient import TestClient

    from sixfold.api.app import create_app

    settings = Settings.from_env({"SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "cluster",
                                  "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{cassandra_proxy.port}",
                                  "SIXFOLD_CASSANDRA_KEYSPACE": "sixfold_resilience",
                                  "SIXFOLD_SHORTENER_MEMCACHED": "", "SIXFOLD_CONNECT_TIMEOUT_S": "2"})
    app = create_app(settings)
    client = TestClient(app, follow_redirects=False)
    _, token = signup(client, f"r{uuid.uuid4().hex[:10]}")
    headers = {"X-Api-Key": Authed(client, token).post("/v1/api-keys").json()["api_key"]}
    keys = [client.post("/v1/urls", json={"long_url": f"https://example.com/{n}"}, headers=headers).json()["key"]
            for n in ("hot", "cold")]
    hot, cold = keys
    assert client.get(f"/{hot}").status_code == 302  # read once: now in this server's cache

    cassandra_proxy.down()
    guard = app.state.store._guard  # the breaker of Cassandra at the proxy's address
    for _ in range(3):
        answer = client.get(f"/{hot}")
        assert answer.status_code == 302 and answer.headers["location"] == "https://example.com/hot"
    answers = []
    for _ in range(guard.policy.failures_to_open + 2):
        started = time.monotonic()
        answer = client.get(f"/{cold}")
        answers.append((answer.status_code, answer.headers.get("retry-after"), time.monotonic() - started))
    assert all(status == 503 and retry and retry.isdigit() for status, retry, _ in answers), answers
    assert guard.state == OPEN
    assert answers[-1][2] < 0.05, answers  # the open breaker answers at once, no timeout
    assert "circuit open" in client.get(f"/{cold}").text
    ready = client.get("/readyz")
    breaker = ready.json()["breakers"][f"cassandra {guard.where}"]
    assert ready.status_code == 503 and breaker["state"] == "open" and breaker["probe_in_s"] > 0, ready.json()

    cassandra_proxy.up()  # back: a probe after open_s closes the breaker
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if client.get(f"/{cold}").status_code == 302:
            break
        time.sleep(1)
    assert client.get(f"/{cold}").status_code == 302 and guard.state == CLOSED
