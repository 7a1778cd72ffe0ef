"""`/metrics`: each figure against the test's own count of what it did.

Requests per route template (the fast paths included, and never a raw id as a label), dead
letters against the messages the test poisoned (and the `.dlq` topic's own length), consumer lag
against the messages the test published and left unconsumed, data-quality results against what a
check recorded, and `sixfold serve --workers 2` answering for both workers at once (the
multiprocess mode).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from sixfold.api.app import create_asgi
from sixfold.platform.bus import SpoolBus, dead_letter_topic
from sixfold.platform.consumer import Consumer, ConsumerThreads
from sixfold.platform.metrics import exposition
from sixfold.platform.quality import record_result
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.unit
SIXFOLD = str(Path(sys.executable).with_name("sixfold"))


def samples(text: str, name: str) -> dict[tuple, float]:
    """{sorted label items: value} of one sample name in a text exposition."""
    out: dict[tuple, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def requests_by_route(text: str) -> Counter:
    counts: Counter = Counter()
    for labels, value in samples(text, "sixfold_http_requests_total").items():
        d = dict(labels)
        counts[(d["method"], d["route"], d["status"])] += value
    return counts


def test_requests_are_counted_per_route_template(settings: Settings) -> None:
    client = TestClient(create_asgi())
    before = requests_by_route(client.get("/metrics").text)
    made: Counter = Counter()

    def call(method: str, path: str, template: str) -> None:
        status = client.request(method, path).status_code
        made[(method, template, f"{status // 100}xx")] += 1

    for _ in range(3):
        call("GET", "/v1/health", "/v1/health")
    for doc_id in ("d1", "d2", "some-other-doc"):  # three ids, one template
        call("GET", f"/v1/docs/{doc_id}", "/v1/docs/{doc_id}")
    for prefix in ("ne", "na"):  # the typeahead fast path (or its route, without a trie)
        call("GET", f"/v1/suggestions?prefix={prefix}", "/v1/suggestions")
    for user_id in (11, 12):  # the timeline fast path
        call("GET", f"/v1/timeline/{user_id}", "/v1/timeline/{user_id}")
    for key in ("nokey1", "nokey2"):  # RedirectFastGet: unknown short keys
        call("GET", f"/{key}", "/{key}")
    call("GET", "/x/nokey3", "/{dc}/{key}")
    call("POST", "/v1/no/such/path", "(unmatched)")
    text = client.get("/metrics").text
    after = requests_by_route(text)
    diff = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    diff.pop(("GET", "/metrics", "2xx"), None)  # the first scrape
    assert diff == dict(made)
    routes = {dict(labels)["route"] for labels in samples(text, "sixfold_http_requests_total")}
    assert not any(raw in route for route in routes for raw in ("d1", "some-other-doc", "nokey", "/11"))
    latency = samples(text, "sixfold_http_request_duration_seconds_count")
    for (method, route, status), count in made.items():
        key = (("method", method), ("route", route), ("status", status))
        assert latency[key] - before.get((method, route, status), 0) >= count
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_dead_letters_are_counted_per_dlq_topic(settings: Settings) -> None:
    from sixfold.shortener.clicks import TOPIC, land_clicks

    bus = SpoolBus(settings.spool_dir)
    dlq = dead_letter_topic(TOPIC)
    counted = samples(exposition(settings.var)[0].decode(), "sixfold_dead_letters_total").get((("topic", dlq),), 0)
    poisoned = [b"not json", b"{\"also\": \"not a click\"}", b"[1, 2"]
    for raw in poisoned:
        bus.produce_raw(TOPIC, raw)
    report = land_clicks(settings, bus=bus, idle_timeout_s=0.05)
    assert report.rejected == len(poisoned)
    text = exposition(settings.var)[0].decode()
    assert samples(text, "sixfold_dead_letters_total")[(("topic", dlq),)] - counted == len(poisoned)
    assert bus.end_offset(dlq) == len(poisoned)


def test_consumer_lag_is_what_the_group_has_not_consumed(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    topic, group, take = "lag-test", "lag-test-group", 2
    published = 7
    bus.produce_many(topic, [(None, {"n": i}) for i in range(published)])

    def work(s: Settings, group_name: str, _idle: float, resources: ExitStack):
        consumer = bus.consumer(topic, group_name)
        done = []

        def one_pass() -> dict[str, int]:
            if done:
                return {"received": 0}
            got = consumer.poll(max_records=take, timeout_s=0.1)
            consumer.commit()
            done.append(len(got))
            return {"received": len(got)}

        return one_pass

    def lag() -> float | None:
        return samples(exposition(settings.var)[0].decode(), "sixfold_consumer_lag_messages").get(
            (("group", group), ("topic", topic)))

    threads = ConsumerThreads(settings, [Consumer("lag-test", group, work)], idle_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while lag() != published - take and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lag() == published - take
        bus.produce_many(topic, [(None, {"n": i}) for i in range(3)])
        published += 3
        while lag() != published - take and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lag() == published - take
        assert bus.lag(group) == {topic: published - take}
    finally:
        threads.stop()


def test_latest_data_quality_result_per_check(settings: Settings) -> None:
    record_result(settings.var, "typeahead.window", True)
    record_result(settings.var, "docs.views", True)
    record_result(settings.var, "docs.views", False, "counted 3 of 4 distinct views")
    text = exposition(settings.var)[0].decode()
    assert samples(text, "sixfold_data_quality_passed") == {
        (("check", "docs.views"),): 0.0, (("check", "typeahead.window"),): 1.0}
    assert abs(samples(text, "sixfold_data_quality_checked_timestamp_seconds")[(("check", "docs.views"),)]
               - time.time()) < 60


def test_a_real_check_records_its_result(settings: Settings) -> None:
    from sixfold.feed.timeline_job import check_sample

    check_sample(settings, sample=5)  # an empty lake: nothing to differ, so it passes
    text = exposition(settings.var)[0].decode()
    assert samples(text, "sixfold_data_quality_passed")[(("check", "feed.timelines_sample"),)] == 1.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_workers_answer_for_both(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIXFOLD_", "PROMETHEUS_"))}
    env["SIXFOLD_HOME"] = str(tmp_path)
    port = free_port()
    server = subprocess.Popen([SIXFOLD, "serve", "--port", str(port), "--workers", "2", "--no-consumers"], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None and time.monotonic() < deadline, server.stderr.read() if server.stderr else ""
            time.sleep(0.2)
        sent = 40
        for _ in range(sent):  # a new connection each: the kernel spreads them over both workers
            assert httpx.get(f"{base}/v1/health").status_code == 200
        text = httpx.get(f"{base}/metrics").text
        # whichever worker answers the scrape reports every worker's requests (which one took each is the kernel's)
        assert requests_by_route(text)[("GET", "/v1/health", "2xx")] == sent
        assert list((tmp_path / "var" / "metrics").glob(f"*-{port}/counter_*.db")), \
            "the workers count in var/metrics/<host>-<port>"
    finally:
        server.terminate()
        server.wait(timeout=30)
