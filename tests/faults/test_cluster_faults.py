"""Cassandra down, and a slow network that resets every connection, while the feed's fanout consumer runs
(cluster profile: the suite's own Kafka and the shared Cassandra, each behind a DelayingProxy).

The input is a generated follow graph of users of this run's own ids, seeded in the store, and their
posts and follows on Kafka. streams/post_fanout.py lands each batch in the lake and pushes it into the
followers' timelines, kept running by a supervisor (compose's `restart: unless-stopped`). While it works:

- Cassandra goes away (its proxy cuts every connection and refuses new ones, or its process is SIGKILLed) for a
  few seconds, while posts keep being published before, during and after it (so the fault lands with fanout
  work left, which the test asserts);
- or every Kafka and Cassandra request is delayed 300 ms and every connection is reset (RST) once.

Afterwards the store's timelines and hashtag rows and the lake's posts and follow events must be the
brute force over the input, row for row: every follower has every post of everyone they follow, once.
Meanwhile a reader asks the API for an author's posts (public, read from Cassandra) to see what users see.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from faults.harness import Stream, Supervisor, close_app, cluster_env, record, wait_for
from faults.proxy import DelayingProxy
from faults.workloads import T0, Workload
from sixfold.platform.bus import KafkaBus
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

pytestmark = [pytest.mark.faults, pytest.mark.integration]
OUTAGE_S = 4.0
FAULT_POSTS = 30  # posts of the Cassandra-down test, published across the fault (see Publisher)
DELAY_S, DELAYED_S = 0.3, 3.0


def expected_rows(workload: Workload) -> dict[str, list[tuple]]:
    """The brute force: who must hold which post, which tag which post (every author is pushed)."""
    feed = workload._feed()
    fans: dict[int, list[int]] = {}
    for f in feed.follows:
        fans.setdefault(f["followee_id"], []).append(f["follower_id"])
    return {"store timelines": sorted((u, p["post_id"], p["author_id"]) for p in feed.posts
                                      for u in fans.get(p["author_id"], [])),
            "store hashtag_posts": sorted((t, p["post_id"]) for p in feed.posts for t in set(p["hashtags"]))}


class Feed:
    """The feed workload on the cluster profile: seeded through direct connections, consumed through proxies."""

    def __init__(self, tmp_path: Path, kafka: DelayingProxy, cassandra: DelayingProxy, direct: str,
                 posts: int, posts_later: bool = False) -> None:
        """`posts_later`: the store and the follows are seeded, the posts left for `publish` (a Publisher)."""
        extra = {"SIXFOLD_FEED_CELEBRITY_THRESHOLD": "1000000"}
        # ids from this run's own milliseconds: rows of earlier runs in the keyspace are not this run's
        end = T0 - timedelta(milliseconds=random.randrange(1, 10**9))
        self.workload = Workload("post_fanout", "post_fanout.py", (), (), events=posts,
                                 data={"end": end, "users": 100, "posts_later": posts_later})
        self.env = cluster_env(tmp_path, kafka, cassandra.address, **extra)
        self.direct = Settings.from_env(cluster_env(tmp_path, kafka, direct, **extra))
        self.store = open_store(self.direct)
        bus = KafkaBus(self.direct)
        try:
            self.workload.seed(self.direct, bus, self.store)
        finally:
            bus.close()
        self.log = tmp_path / "post_fanout.log"

    def output(self) -> dict[str, list[tuple]]:
        return self.workload.output(self.direct, self.store)

    def progress(self) -> int:
        return len(self.output()["store timelines"])

    def complete(self) -> bool:
        from sixfold.platform.errors import ServiceUnavailable

        try:
            got = self.output()
        except ServiceUnavailable:  # the test's own reads while Cassandra restarts: not yet
            return False
        return all(len(got[name]) >= count for name, count in self.workload.expected().items())

    def close(self) -> None:
        self.store.close()


class Reader:
    """A user reading an author's posts through the API (Cassandra behind the proxy) every 0.2 s: what they
    got (status, 0 for no answer) and how long it took."""

    def __init__(self, env: dict[str, str], author: int, monkeypatch: pytest.MonkeyPatch) -> None:
        from sixfold.api.app import create_app

        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.app = create_app(Settings.from_env(env))
        self.client = TestClient(self.app)
        self.author = author
        self.seen: list[tuple[float, int, float]] = []  # (when sent, status, seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)

    def _read(self) -> None:
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status = self.client.get(f"/v1/users/{self.author}/posts").status_code
            except Exception:  # noqa: BLE001 - what the user got: no answer at all
                status = 0
            self.seen.append((sent, status, time.monotonic() - sent))
            self._stop.wait(0.2)

    def start(self) -> Reader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        close_app(self.app)

    def during(self, start: float, end: float) -> str:
        window = [(status, took) for sent, status, took in self.seen if start <= sent < end]
        return f"{dict(Counter(s for s, _ in window))}, slowest {max((t for _, t in window), default=0):.2f} s"

    def first_ok_after(self, start: float) -> float:
        return min((s for s, status, _ in self.seen if s >= start and status == 200), default=float("nan")) - start


class Publisher:
    """Keeps the fanout fed across a fault: publishes the feed's posts CHUNK at a time, PAUSE_S apart, in three
    parts: `before` from the start, `during` once `fault` is set (Cassandra going away: Kafka stays up, so the
    consumer reads them while it cannot write), `after` once `over` is set (Cassandra back). `published` holds the
    posts on the bus so far."""

    CHUNK, PAUSE_S = 2, 0.25

    def __init__(self, feed: Feed, before: int, during: int) -> None:
        posts = feed.workload._feed().posts
        self.feed = feed
        self.parts = (posts[:before], posts[before:before + during], posts[before + during:])
        self.fault, self.over = threading.Event(), threading.Event()
        self.published: list[dict] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._publish, daemon=True)

    def _publish(self) -> None:
        bus = KafkaBus(self.feed.direct)
        try:
            for gate, part in zip((None, self.fault, self.over), self.parts):
                while gate is not None and not gate.wait(0.1):
                    if self._stop.is_set():
                        return
                for at in range(0, len(part), self.CHUNK):
                    if self._stop.wait(self.PAUSE_S):
                        return
                    self.feed.workload.publish_posts(bus, part[at:at + self.CHUNK])
                    self.published.extend(part[at:at + self.CHUNK])
        except BaseException as exc:  # noqa: BLE001 - reported by the test (`done`)
            self.error = exc
        finally:
            bus.close()

    def start(self) -> Publisher:
        self._thread.start()
        return self

    def done(self) -> bool:
        assert self.error is None, f"publishing the posts failed: {self.error!r}"
        return not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)


def check(feed: Feed) -> dict[str, list[tuple]]:
    got = feed.output()
    want = expected_rows(feed.workload)
    for name, rows in want.items():
        assert got[name] == rows, (name, len(got[name]), len(rows))
    counts = feed.workload.expected()
    assert {name: len(rows) for name, rows in got.items()} == counts
    return got


@pytest.mark.parametrize("how", ["network", pytest.param("sigkill", marks=pytest.mark.destructive)])
def test_cassandra_down_while_the_fanout_writes_timelines(how: str, kafka_proxy, cassandra_proxy,
                                                         services_running: Settings, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """`network`: the proxy cuts Cassandra off; `sigkill`: the shared Cassandra's process group is killed (no
    clean shutdown, its commit log replayed at the restart), then started again: destructive, so it runs last."""
    host, port = services_running.cassandra_contact
    feed = Feed(tmp_path, kafka_proxy, cassandra_proxy, f"{host}:{port}", posts=FAULT_POSTS, posts_later=True)
    total = len(expected_rows(feed.workload)["store timelines"])
    # posts keep coming across the fault: a third from the start, a third once it begins, the rest once it is over
    publisher = Publisher(feed, before=FAULT_POSTS // 3, during=FAULT_POSTS // 3)
    reader = Reader(feed.env, feed.workload._feed().posts[0]["author_id"], monkeypatch)
    consumer = Supervisor(Stream("post_fanout.py", feed.env, feed.log, "--idle", "0.5"))
    try:
        reader.start()
        consumer.start()
        publisher.start()
        wait_for(lambda: feed.progress() > 0, 120, "the first timeline entries", 0.1)
        at_down, posted_at_down = feed.progress(), len(publisher.published)
        publisher.fault.set()
        down_at = time.monotonic()
        if how == "network":
            cassandra_proxy.down()
            time.sleep(OUTAGE_S)
            cassandra_proxy.up()
        else:
            from sixfold.platform.services.runner import Cassandra

            server = Cassandra(services_running)
            os.killpg(server.pid(), signal.SIGKILL)
            time.sleep(OUTAGE_S)
            server.start(log=lambda _msg: None)  # the commit log replayed, then healthy
        up_at = time.monotonic()
        posted_meanwhile = len(publisher.published) - posted_at_down
        publisher.over.set()
        wait_for(lambda: publisher.done() and feed.complete(), 180, "every timeline entry and follow event", 0.2)
        complete = time.monotonic() - up_at
    finally:
        cassandra_proxy.up()
        publisher.stop()
        consumer.stop()
        reader.stop()
    try:
        got = check(feed)
    finally:
        feed.close()
    # the fault landed with fanout work left: entries of posts not yet written (or not yet even published)
    assert at_down < total, (f"the fault landed after the fanout was done ({at_down}/{total} entries written): "
                             "it did not test a failure mid-stream")
    exits = [t for t, _ in consumer.exits if t >= down_at]
    what = "Cassandra down" if how == "network" else "Cassandra SIGKILLed, started again after"
    record(f"{what} {OUTAGE_S:.0f} s (post_fanout.py writing timelines as posts kept coming: at the "
           f"{'cut' if how == 'network' else 'kill'} {at_down}/{total} entries written, {posted_at_down}/"
           f"{FAULT_POSTS} posts published; {posted_meanwhile} more published during the outage): API reads "
           f"meanwhile {reader.during(down_at, up_at)}; consumer exited {len(exits)} time(s) (restarted by its "
           f"supervisor); reads 200 again {reader.first_ok_after(up_at):.2f} s after Cassandra was back; all "
           f"{len(got['store timelines'])} entries written once {complete:.2f} s after it was back")


def test_delay_and_resets_on_kafka_and_cassandra(kafka_proxy, cassandra_proxy, services_running: Settings,
                                                 tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """300 ms on every request both ways to Kafka and Cassandra from the consumer's start (it joins its group,
    connects and writes through it), every connection reset once when the first entries show, the delay
    lifted DELAYED_S later."""
    host, port = services_running.cassandra_contact
    feed = Feed(tmp_path, kafka_proxy, cassandra_proxy, f"{host}:{port}", posts=20)
    reader = Reader(feed.env, feed.workload._feed().posts[0]["author_id"], monkeypatch)
    # the default --idle (1 s): a pass ends at a poll that waited this long, so it must outlast a round trip
    consumer = Supervisor(Stream("post_fanout.py", feed.env, feed.log))
    started = time.monotonic()
    try:
        kafka_proxy.delay = cassandra_proxy.delay = DELAY_S
        reader.start()
        consumer.start()
        wait_for(lambda: feed.progress() > 0, 120, "the first timeline entries", 0.1)
        accepted = (kafka_proxy.accepted, cassandra_proxy.accepted)
        reset = (kafka_proxy.reset_all(), cassandra_proxy.reset_all())
        at_reset = feed.progress()
        time.sleep(DELAYED_S)
        kafka_proxy.delay = cassandra_proxy.delay = 0.0
        lifted_at = time.monotonic()
        wait_for(lambda: feed.complete(), 180, "every timeline entry and follow event", 0.2)
        complete = time.monotonic() - lifted_at
        reconnects = {"kafka": kafka_proxy.accepted - accepted[0], "cassandra": cassandra_proxy.accepted - accepted[1]}
    finally:
        kafka_proxy.delay = cassandra_proxy.delay = 0.0
        consumer.stop()
        reader.stop()
    try:
        got = check(feed)
    finally:
        feed.close()
    record(f"{DELAY_S * 1000:.0f} ms delay on every Kafka and Cassandra request for {lifted_at - started:.1f} s, "
           f"{sum(reset)} connections reset (RST) once mid-stream at {at_reset}/{len(got['store timelines'])} "
           f"entries: API reads meanwhile {reader.during(started, lifted_at)}; consumer exited "
           f"{len(consumer.exits)} time(s); reconnections {reconnects}; all {len(got['store timelines'])} entries "
           f"once {complete:.2f} s after the delay was lifted")
