"""Kafka down while the API produces and a consumer lands (cluster profile, the suite's own broker).

A user posts search events through the real app (POST /v1/search-events, 20 a request, retrying a
refused request as a client would) while streams/search_events.py lands them, kept running by a
supervisor as compose's `restart: unless-stopped` does. Midway Kafka goes away for a few seconds, then
comes back: either the network (its proxy cuts every connection and refuses new ones), or the broker
process itself (SIGKILL of its process group, then started again on the same log directories). Every event the API accepted
(202) must be in the lake exactly once, and nothing else: the oracle is the accepted requests' bodies.
The user keeps posting until enough requests were accepted after Kafka came back, so the outage lands
mid-stream: at least one request must have been on the wire during it (sent during it, or in flight across it).
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient

from faults.harness import Stream, Supervisor, close_app, cluster_env, record, wait_for
from faults.workloads import T0, lake_rows
from sixfold.platform.settings import Settings

pytestmark = [pytest.mark.faults, pytest.mark.integration]
OUTAGE_S = 4.0
PER_BATCH = 20
MIN_BATCHES = 40  # the producer sends at least these, and keeps sending until AFTER_UP were accepted after the fault
AFTER_UP = 10


@pytest.mark.parametrize("how", ["network", "sigkill"])
def test_kafka_down_while_producing_and_consuming(how: str, kafka_proxy, services_running: Settings, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from sixfold.api.app import create_app

    host, port = services_running.cassandra_contact
    env = cluster_env(tmp_path, kafka_proxy, f"{host}:{port}", SIXFOLD_LIMIT_WRITES_PER_USER="",
                      SIXFOLD_LIMIT_WRITES_PER_CLIENT="", SIXFOLD_LIMIT_SIGNUP_PER_CLIENT="")
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    settings = Settings.from_env(env)
    app = create_app(settings)
    client = TestClient(app)
    user, token = signup(client, f"kafkadown{uuid.uuid4().hex[:8]}")
    me = Authed(client, token)
    run = uuid.uuid4().hex[:8]

    answers: list[tuple[float, int, float]] = []  # (when sent, status, seconds it took)
    accepted: list[dict] = []
    errors: list[BaseException] = []
    producing_done, stop_producing = threading.Event(), threading.Event()

    def produce() -> None:
        try:
            send()
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            errors.append(exc)
        finally:
            producing_done.set()

    def send() -> None:
        b = 0
        while b < MIN_BATCHES or not stop_producing.is_set():  # across the fault, until the test has seen enough
            body = [{"user_id": str(user), "query": f"outage {run} {b} {i}", "region": "eu",
                     "ts": (T0 + timedelta(seconds=b * PER_BATCH + i)).isoformat()} for i in range(PER_BATCH)]
            while True:  # a client resends a refused request until it is accepted
                sent = time.monotonic()
                answer = me.post("/v1/search-events", json=body)
                answers.append((sent, answer.status_code, time.monotonic() - sent))
                if answer.status_code == 202:
                    accepted.extend(body)
                    break
                assert answer.status_code == 503, answer.text  # unavailable, never a 500
                time.sleep(min(float(answer.headers.get("retry-after", "1")), 1.0))
            time.sleep(0.05)
            b += 1

    def accepted_after(at: float) -> int:
        assert not errors, f"the producer failed: {errors[0]!r}"
        return sum(1 for sent, status, _ in list(answers) if sent >= at and status == 202)

    def landed() -> list[tuple]:
        return lake_rows(settings, "search_events", ("user_id", "query", "region", "ts"),
                         lambda r: r["query"].startswith(f"outage {run} "))

    consumer = Supervisor(Stream("search_events.py", env, tmp_path / "consumer.log", "--idle", "0.3")).start()
    producer = threading.Thread(target=produce, daemon=True)
    try:
        producer.start()
        wait_for(lambda: len(landed()) >= 100, 90, "the first events landed", 0.2)
        down_at = time.monotonic()
        if how == "network":
            kafka_proxy.down()
            time.sleep(OUTAGE_S)
            kafka_proxy.up()
        else:
            broker = kafka_proxy.broker
            os.killpg(broker.pid(), signal.SIGKILL)  # the JVM and anything it started: no clean shutdown
            time.sleep(OUTAGE_S)
            broker.start(log=lambda _msg: None)  # log recovery of an unclean shutdown, then healthy
        up_at = time.monotonic()
        wait_for(lambda: accepted_after(up_at) >= AFTER_UP, 180, f"{AFTER_UP} requests accepted after the fault", 0.1)
        stop_producing.set()
        wait_for(producing_done.is_set, 180, "every request accepted", 0.1)
        assert not errors, f"the producer failed: {errors[0]!r}"
        wait_for(lambda: len(landed()) >= len(accepted), 180, "every accepted event landed", 0.2)
        complete = time.monotonic() - up_at
    finally:
        stop_producing.set()
        kafka_proxy.up()
        consumer.stop()
        producer.join(30)
        close_app(app)

    got = landed()
    want = sorted((r["user_id"], r["query"], r["region"], r["ts"]) for r in accepted)  # ts: UTC, isoformat
    assert len(accepted) >= MIN_BATCHES * PER_BATCH and len(set(want)) == len(want)
    assert len(got) == len(want)
    assert got == want  # every accepted event once, nothing else

    # a request was in the outage if it was on the wire at any moment of it: sent during it, or sent before and
    # answered after it began (in flight across the cut or the kill)
    during = [(sent, status, took) for sent, status, took in answers if sent < up_at and sent + took >= down_at]
    assert during, ("no request overlapped the outage: the producer was not producing when Kafka went away, so the "
                    "test did not check a fault mid-stream")
    statuses = Counter(status for _, status, _ in during)
    in_flight = sum(1 for sent, _, _ in during if sent < down_at)
    first_ok = min((sent for sent, status, _ in answers if sent >= up_at and status == 202), default=None)
    restarts = [t for t, _ in consumer.exits if t >= down_at]
    what = "Kafka down" if how == "network" else "Kafka SIGKILLed, started again after"
    record(f"{what} {OUTAGE_S:.0f} s (API producing, search_events.py landing): requests overlapping the outage "
           f"{dict(statuses)} ({in_flight} in flight when it began, {len(during) - in_flight} sent during it), "
           f"slowest {max((t for _, _, t in during), default=0):.2f} s; consumer exited {len(restarts)} time(s) "
           f"(restarted by its supervisor); first 202 {(first_ok or up_at) - up_at:.2f} s after Kafka was back, all "
           f"{len(got)} accepted events ({len(accepted) // PER_BATCH} requests) landed once {complete:.2f} s after "
           f"it was back")
