"""The frontier: a host is never served faster than its delay nor by two workers at once, every
queued URL is served exactly once (hypothesis, simulated clock), and the persisted frontier
survives a restart without losing queued URLs or requeueing finished ones."""

from __future__ import annotations

import heapq
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sixfold.crawler.frontier import (
    REVISIT_PRIORITY,
    SEED_PRIORITY,
    Completion,
    Frontier,
    FrontierEntry,
    FrontierQueue,
    link_priority,
    utcnow,
)
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@st.composite
def scenarios(draw):
    hosts = draw(st.integers(1, 5))
    delays = [draw(st.sampled_from([0.0, 0.25, 1.0, 2.5])) for _ in range(hosts)]
    urls = draw(st.lists(st.tuples(st.integers(0, hosts - 1), st.integers(0, 9)), min_size=1, max_size=40,
                         unique=True))
    late = draw(st.integers(0, len(urls)))  # the first `late` URLs are queued up front, the rest mid-crawl
    durations = draw(st.lists(st.sampled_from([0.0, 0.1, 0.5, 1.7]), min_size=1, max_size=8))
    workers = draw(st.integers(1, 4))
    robots_first = draw(st.booleans())  # the first take of each host hands the URL back (robots.txt)
    return delays, urls, late, durations, workers, robots_first


@given(scenarios())
@hsettings(max_examples=150, deadline=None)
def test_hosts_are_never_served_faster_than_their_delay_and_every_url_once(scenario) -> None:
    delays, urls, late, durations, workers, robots_first = scenario
    clock = Clock()
    queue = FrontierQueue(clock)

    def push(i: int) -> None:
        h, n = urls[i]
        queue.push(FrontierEntry(f"http://h{h}/p{n}", f"h{h}", link_priority(n % 3)))

    for i in range(late):
        push(i)
    pending_pushes = list(range(late, len(urls)))
    in_flight: list[tuple[float, int, str, FrontierEntry, bool]] = []  # (finish, tie, host, entry, requeue)
    busy: set[str] = set()
    released_at: dict[str, float] = {}
    served: list[str] = []
    robots_read: set[str] = set()
    tie = 0
    for _ in range(10_000):
        got = queue.take() if len(in_flight) < workers else 0.5
        if isinstance(got, FrontierEntry):
            assert got.host not in busy, "a host was handed to two workers at once"
            delay = delays[int(got.host[1:])]
            if got.host in released_at:
                assert clock.now >= released_at[got.host] + delay - 1e-9, "served sooner than the host's delay"
            busy.add(got.host)
            requeue = robots_first and got.host not in robots_read
            robots_read.add(got.host)
            if not requeue:
                served.append(got.url)
            heapq.heappush(in_flight, (clock.now + durations[tie % len(durations)], tie, got.host, got, requeue))
            tie += 1
            continue
        if pending_pushes and (got is None or tie % 3 == 0):
            push(pending_pushes.pop(0))
            continue
        if not in_flight and got is None:
            break
        wake = in_flight[0][0] if in_flight else float("inf")
        if isinstance(got, float):
            wake = min(wake, clock.now + got)
        clock.now = max(clock.now, wake)
        while in_flight and in_flight[0][0] <= clock.now:
            _, _, host, entry, requeue = heapq.heappop(in_flight)
            busy.discard(host)
            queue.release(host, delays[int(host[1:])], requeue=entry if requeue else None)
            released_at[host] = clock.now
    expected = sorted(f"http://h{h}/p{n}" for h, n in urls)
    assert sorted(served) == expected and len(queue) == 0


def test_a_host_serves_its_urls_in_priority_order() -> None:
    clock = Clock()
    queue = FrontierQueue(clock)
    for url, priority in (("http://h/deep", link_priority(5)), ("http://h/seed", SEED_PRIORITY),
                          ("http://h/revisit", REVISIT_PRIORITY), ("http://h/near", link_priority(1))):
        queue.push(FrontierEntry(url, "h", priority))
    order = []
    while len(queue):
        entry = queue.take()
        assert isinstance(entry, FrontierEntry)
        order.append(entry.url)
        queue.release("h", 0.0)
    assert order == ["http://h/seed", "http://h/revisit", "http://h/near", "http://h/deep"]


def test_park_removes_a_hosts_urls_and_release_none_keeps_the_delay() -> None:
    clock = Clock()
    queue = FrontierQueue(clock)
    for i in range(3):
        queue.push(FrontierEntry(f"http://a/{i}", "a", 2))
    queue.push(FrontierEntry("http://b/0", "b", 2))
    first = queue.take()
    assert isinstance(first, FrontierEntry)
    queue.release(first.host, 5.0)
    nxt = queue.take()
    assert isinstance(nxt, FrontierEntry) and nxt.host != first.host
    queue.release(nxt.host, None)  # no request made: the host is not pushed back
    if nxt.host == "a":
        parked = queue.park("b")
    else:
        parked = queue.park("a")
    assert len(parked) >= 1
    assert len(queue) == 4 - 2 - len(parked)


def settings_for(tmp_path) -> Settings:
    return Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CRAWLER_REVISIT_S": "3600"})


def test_persisted_frontier_survives_a_restart(tmp_path) -> None:
    settings = settings_for(tmp_path)
    store = SQLiteStore(settings.sqlite_path)
    now = utcnow().replace(microsecond=0)  # the store keeps milliseconds
    frontier = Frontier(store, settings)
    frontier.read()
    added = frontier.add([FrontierEntry(f"http://h/{i}", "h", link_priority(1), 1, 1, "http://h/") for i in range(5)]
                         + [FrontierEntry("http://h/0", "h", 2)], now)
    assert [e.url for e in added] == [f"http://h/{i}" for i in range(5)]  # the duplicate is not queued twice
    taken = [frontier.queue.take() for _ in range(1)]
    assert isinstance(taken[0], FrontierEntry)
    frontier.complete([Completion("http://h/0", "abc", now)])

    # "crash": a fresh process reads the store
    again = Frontier(SQLiteStore(settings.sqlite_path), settings)
    again.read()
    queued, revisits = again.enqueue_pending(now)
    assert (queued, revisits) == (4, 0)
    assert again.seen("http://h/0") and again.queued_urls() == {f"http://h/{i}" for i in range(1, 5)}
    row = again.rows["http://h/0"]
    assert row["state"] == "done" and row["next_fetch_at"] == now + timedelta(seconds=3600)

    # an hour later the finished page is due for a revisit, at revisit priority
    later = Frontier(SQLiteStore(settings.sqlite_path), settings)
    later.read()
    queued, revisits = later.enqueue_pending(now + timedelta(seconds=3601))
    assert (queued, revisits) == (4, 1)
    first = later.queue.take()
    assert isinstance(first, FrontierEntry) and first.url == "http://h/0" and first.priority == REVISIT_PRIORITY


def test_revisit_schedule_follows_the_change_rate(tmp_path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CRAWLER_REVISIT_S": "4000",
                                  "SIXFOLD_CRAWLER_REVISIT_MIN_S": "1000", "SIXFOLD_CRAWLER_REVISIT_MAX_S": "9000"})
    frontier = Frontier(SQLiteStore(settings.sqlite_path), settings)
    frontier.read()
    t = utcnow().replace(microsecond=0)
    frontier.add([FrontierEntry("http://h/news", "h", SEED_PRIORITY)], t)
    intervals = []
    for sha in ("v1", "v2", "v3", "v3", "v3", "v3"):  # changes twice, then stays
        frontier.complete([Completion("http://h/news", sha, t)])
        intervals.append(frontier.rows["http://h/news"]["interval_s"])
    assert intervals == [4000, 2000, 1000, 1500, 2250, 3375]
    row = frontier.rows["http://h/news"]
    assert row["change_count"] == 2 and row["fetch_count"] == 6
    assert row["next_fetch_at"] == t + timedelta(seconds=3375)
