"""Feed users, follows, posts, hybrid fanout and timelines, against a brute force over an explicit graph.

Every expected timeline is computed here in plain Python from the follow graph and the posts the
test made (newest first, authors the user follows now and the user's own posts), never read back
from the code under test.
"""

from __future__ import annotations

import base64
import io
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.feed.fanout import fanout_targets, fanout_writes, land_follow_events, run_fanout, run_post_deletions
from sixfold.platform import schema
from sixfold.platform.bus import open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

TIMELINES = SERVING_TABLES["timelines"]
FOLLOWER_COUNTS = SERVING_TABLES["follower_counts"]


# ---- the brute force ---------------------------------------------------------------------------
def oracle(graph: set[tuple[int, int]], posts: list[tuple[int, int]], user: int, own: bool = True) -> list[int]:
    """Post ids by everyone `user` follows in `graph` (and by `user`, with `own`), newest (largest id) first:
    the home timeline. `own=False`: what may be pushed into the user's rows."""
    followed = {b for a, b in graph if a == user} | ({user} if own else set())
    return sorted((pid for pid, author in posts if author in followed), reverse=True)


def pushed_oracle(graph: set[tuple[int, int]], posts: list[tuple[int, int]], user: int, threshold: int,
                  per_user: int) -> list[tuple[int, int]]:
    """(post_id, author_id) the offline job keeps for `user`: non-celebrity followees, newest per_user."""
    fans: dict[int, int] = {}
    for _a, b in graph:
        fans[b] = fans.get(b, 0) + 1
    followed = {b for a, b in graph if a == user and fans[b] < threshold}
    return sorted(((pid, a) for pid, a in posts if a in followed), reverse=True)[:per_user]


def celebrity_oracle(graph: set[tuple[int, int]], threshold: int) -> dict[int, int]:
    """Authors with at least `threshold` followers in `graph`, with their follower counts."""
    fans = Counter(b for _a, b in graph)
    return {author: n for author, n in fans.items() if n >= threshold}


# ---- a small world driven over HTTP ------------------------------------------------------------
@dataclass
class World:
    client: TestClient
    settings: Settings
    users: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)
    graph: set[tuple[int, int]] = field(default_factory=set)
    posts: list[tuple[int, int]] = field(default_factory=list)

    def user(self, name: str) -> int:
        self.users[name], self.tokens[name] = signup(self.client, name)
        return self.users[name]

    def as_(self, name: str) -> Authed:
        """The client acting as `name` (with their token)."""
        return Authed(self.client, self.tokens[name])

    def follow(self, a: str, b: str) -> None:
        r = self.as_(a).post("/v1/follows", json={"follower_id": self.users[a], "followee_id": self.users[b]})
        assert r.status_code == 201, r.text
        self.graph.add((self.users[a], self.users[b]))

    def unfollow(self, a: str, b: str) -> None:
        r = self.as_(a).request("DELETE", "/v1/follows",
                                json={"follower_id": self.users[a], "followee_id": self.users[b]})
        assert r.status_code == 200, r.text
        self.graph.discard((self.users[a], self.users[b]))

    def post(self, author: str, caption: str = "", **extra) -> int:
        r = self.as_(author).post("/v1/posts", json={"user_id": self.users[author], "caption": caption, **extra})
        assert r.status_code == 201, r.text
        self.posts.append((r.json()["post_id"], self.users[author]))
        return r.json()["post_id"]

    def pump(self) -> None:
        """What the streams do: fan out and land posts, apply deletions, land follow events."""
        store, bus = open_store(self.settings), open_bus(self.settings)
        try:
            run_fanout(self.settings, store, bus, idle_timeout_s=0.05)
            run_post_deletions(self.settings, store, bus, idle_timeout_s=0.05)
            land_follow_events(self.settings, bus, idle_timeout_s=0.05)
        finally:
            store.close()

    def walk(self, name: str, limit: int) -> list[int]:
        """Every post id of a user's timeline, page by page; checks each page's shape on the way."""
        ids: list[int] = []
        cursor = None
        for _ in range(1000):
            params = {"limit": limit, **({"before": cursor} if cursor else {})}
            r = self.as_(name).get(f"/v1/timeline/{self.users[name]}", params=params)
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["user_id"] == self.users[name]
            assert len(body["posts"]) <= limit
            ids += [p["post_id"] for p in body["posts"]]
            cursor = body["next_cursor"]
            if cursor is None:
                break
            assert len(body["posts"]) == limit
        assert all(a > b for a, b in pairwise(ids)), "not strictly newest first (or duplicated)"
        return ids

    def expect(self, name: str, limits: tuple[int, ...] = (1, 2, 3, 20, 100)) -> None:
        want = oracle(self.graph, self.posts, self.users[name])
        for limit in limits:
            assert self.walk(name, limit) == want, f"{name}, limit {limit}"


def make_world(settings: Settings, threshold: int) -> World:
    tuned = replace(settings, feed_celebrity_threshold=threshold)
    return World(TestClient(create_app(tuned)), tuned)


def stored_timeline(settings: Settings, user_id: int) -> list[tuple[int, int]]:
    store = open_store(settings)
    try:
        return [(r["post_id"], r["author_id"]) for r in store.query(TIMELINES, {"user_id": user_id})]
    finally:
        store.close()


def celebrity_world(settings: Settings) -> World:
    """ann, bob, cat, dan follow each other a little; star has 3 followers (a celebrity at threshold 3)."""
    w = make_world(settings, threshold=3)
    for name in ("ann", "bob", "cat", "dan", "star"):
        w.user(name)
    for a, b in [("ann", "bob"), ("ann", "star"), ("bob", "star"), ("cat", "star"), ("cat", "ann"),
                 ("dan", "bob"), ("bob", "ann"), ("ann", "cat")]:
        w.follow(a, b)
    for i in range(7):
        for author in ("bob", "star", "ann", "cat", "dan") if i % 2 else ("star", "cat", "bob"):
            w.post(author, f"{author} #{i}")
    w.pump()
    return w


# ---- users and follows -------------------------------------------------------------------------
@pytest.mark.unit
def test_users_and_follows_answer_with_the_right_status(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    ann, bob = w.user("ann.lee"), w.user("bob_2")
    assert ann != bob
    c = w.as_("ann.lee")
    taken = c.post("/v1/users", json={"username": "Ann.Lee"})
    assert taken.status_code == 409 and "taken" in taken.json()["error"]["message"]
    for bad in ("", "has space", "x" * 65, "émoji😀", 5):
        r = c.post("/v1/users", json={"username": bad})
        assert r.status_code == 422, bad
        assert r.json()["error"]["code"] == "invalid_request"
    assert c.post("/v1/follows", json={"follower_id": ann, "followee_id": 42}).status_code == 404
    assert c.post("/v1/follows", json={"follower_id": 42, "followee_id": ann}).status_code == 403  # not ann
    selfie = c.post("/v1/follows", json={"follower_id": ann, "followee_id": ann})
    assert selfie.status_code == 422 and "themselves" in selfie.json()["error"]["message"]

    store = open_store(w.settings)
    for _ in range(2):  # idempotent: one edge, counted once
        assert c.post("/v1/follows", json={"follower_id": ann, "followee_id": bob}).status_code == 201
    assert store.get(FOLLOWER_COUNTS, {"user_id": bob})["followers"] == 1
    assert [r["follower_id"] for r in store.query(SERVING_TABLES["followers"], {"followee_id": bob})] == [ann]
    assert [r["followee_id"] for r in store.query(SERVING_TABLES["following"], {"follower_id": ann})] == [bob]
    for _ in range(2):
        r = c.request("DELETE", "/v1/follows", json={"follower_id": ann, "followee_id": bob})
        assert r.status_code == 200 and r.json()["following"] is False
    assert store.get(FOLLOWER_COUNTS, {"user_id": bob})["followers"] == 0
    assert store.query(SERVING_TABLES["followers"], {"followee_id": bob}) == []

    # the graph's history reaches the lake, in order, one event per call
    w.pump()
    events = ArrowLake(w.settings).read(LAKE_TABLES["follow_events"]).to_pylist()
    assert [e["action"] for e in sorted(events, key=lambda e: e["at"])] == ["follow"] * 2 + ["unfollow"] * 2
    assert all(e["at"] < f["at"] for e, f in zip(sorted(events, key=lambda e: e["at"]),
                                                 sorted(events, key=lambda e: e["at"])[1:]))


@pytest.mark.unit
@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 3), st.integers(0, 3)), min_size=3, max_size=30))
def test_the_celebrity_list_is_the_brute_force_after_any_follows(settings: Settings, ops) -> None:
    from sixfold.feed.graph import FollowGraph, celebrities
    from sixfold.feed.users import UserDirectory

    store, bus = open_store(settings), open_bus(settings)
    users = UserDirectory(store)
    ids = [users.create(f"u{uuid.uuid4().hex[:16]}")["user_id"] for _ in range(4)]  # fresh users per example
    told: list[int] = []
    graph = FollowGraph(store, bus, 2, users, changed=told.append)
    edges: set[tuple[int, int]] = set()
    for follow, a, b in ops:
        if a == b:
            continue
        before = celebrity_oracle(edges, 2)
        (graph.follow if follow else graph.unfollow)(ids[a], ids[b])
        (edges.add if follow else edges.discard)((ids[a], ids[b]))
        want = celebrity_oracle(edges, 2)
        assert {u: n for u, n in celebrities(store).items() if u in ids} == want
        crossed = (ids[b] in before) != (ids[b] in want)  # only a crossing is worth telling the readers
        assert told == ([ids[b]] if crossed else [])
        told.clear()
    store.close()


# ---- posts -------------------------------------------------------------------------------------
def png() -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(out, "PNG")
    return out.getvalue()


@pytest.mark.unit
def test_posts_are_validated_written_and_published(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    ann, bob = w.user("ann"), w.user("bob")
    c = w.as_("ann")
    w.follow("bob", "ann")
    media = c.post(f"/v1/media?user_id={ann}", content=png(), headers={"content-type": "image/png"})
    assert media.status_code == 201, media.text
    media_id = media.json()["media_id"]
    r = c.post("/v1/posts", json={"user_id": ann, "caption": "sunset", "media_ids": [media_id],
                                  "hashtags": ["#Sunset", "beach", "sunset"], "geo": {"lat": 48.85, "lon": 2.35}})
    assert r.status_code == 201, r.text
    post_id, created_at = r.json()["post_id"], r.json()["created_at"]
    assert created_at.endswith("Z")
    later = c.post("/v1/posts", json={"user_id": ann, "caption": "later"}).json()
    assert later["post_id"] > post_id and later["created_at"] >= created_at

    rejected = {
        "another user": ({"user_id": 7, "caption": "x"}, 403),
        "lat": ({"user_id": ann, "geo": {"lat": 90.5, "lon": 0}}, 422),
        "lon": ({"user_id": ann, "geo": {"lat": 0, "lon": -181}}, 422),
        "geo shape": ({"user_id": ann, "geo": {"lat": 1}}, 422),
        "hashtag": ({"user_id": ann, "hashtags": ["two words"]}, 422),
        "caption": ({"user_id": ann, "caption": "x" * 2201}, 422),
        "media unknown": ({"user_id": ann, "media_ids": [123]}, 404),
        "as another": ({"user_id": bob, "media_ids": [media_id]}, 403),
        "no user": ({"caption": "x"}, 422),
    }
    # bob may not use ann's media: a 403 from the media check, not from the token
    answer = w.as_("bob").post("/v1/posts", json={"user_id": bob, "media_ids": [media_id]})
    assert answer.status_code == 403 and "media" in answer.json()["error"]["message"]
    for why, (payload, status) in rejected.items():
        answer = c.post("/v1/posts", json=payload)
        assert answer.status_code == status, why
        assert answer.json()["error"]["message"], why

    store = open_store(w.settings)
    row = store.get(SERVING_TABLES["posts"], {"post_id": post_id})
    assert row["hashtags"] == ["sunset", "beach"] and row["media_ids"] == [str(media_id)]
    assert (row["lat"], row["lon"]) == (48.85, 2.35)
    assert [r["post_id"] for r in store.query(SERVING_TABLES["author_posts"], {"author_id": ann})] == \
        [later["post_id"], post_id]
    consumer = open_bus(w.settings).consumer("post-created", "test-reader")
    events = [schema.validate_event(EVENTS["post-created"], m.json()) for m in consumer.poll(timeout_s=0.1)]
    assert [e["post_id"] for e in events] == [post_id, later["post_id"]]
    assert events[0]["hashtags"] == ["sunset", "beach"]

    # the follower's timeline shows both, newest first, with media and hashtags
    w.pump()
    page = w.as_("bob").get(f"/v1/timeline/{bob}").json()
    assert [p["post_id"] for p in page["posts"]] == [later["post_id"], post_id]
    first = page["posts"][1]
    assert first == {"post_id": post_id, "author_id": ann, "created_at": created_at, "caption": "sunset",
                     "media": [str(media_id)], "hashtags": ["sunset", "beach"]}
    assert c.get(f"/v1/media/{first['media'][0]}").status_code == 200
    # one's own posts are in one's home timeline (merged at read time, never pushed to oneself)
    assert [p["post_id"] for p in c.get(f"/v1/timeline/{ann}").json()["posts"]] == [later["post_id"], post_id]
    assert stored_timeline(w.settings, ann) == []


# ---- timelines: pushed, pulled, merged, paginated --------------------------------------------------
@pytest.mark.unit
def test_pushed_timelines_equal_the_brute_force(settings: Settings) -> None:
    w = make_world(settings, threshold=100_000)
    names = [f"u{i}" for i in range(6)]
    for n in names:
        w.user(n)
    for i, a in enumerate(names):
        for b in names[i + 1:i + 4]:
            w.follow(a, b)
        if i % 2:
            w.follow(a, names[0])
    for i in range(25):
        w.post(names[(i * 7) % 6], f"post {i}")
    w.pump()
    for n in names:
        w.expect(n)
        # nothing pulled: every entry was pushed
        assert [p for p, _a in stored_timeline(w.settings, w.users[n])] == oracle(w.graph, w.posts, w.users[n],
                                                                                   own=False)
    # the fanout wrote exactly what the write-count model says
    total = sum(len(stored_timeline(w.settings, w.users[n])) for n in names)
    assert total == fanout_writes(w.graph, w.posts, 100_000)["hybrid"] == fanout_writes(w.graph, w.posts, 100_000)["push"]


@pytest.mark.unit
def test_celebrities_are_pulled_and_merged(settings: Settings) -> None:
    w = celebrity_world(settings)
    star = w.users["star"]
    for n in w.users:
        w.expect(n)
    # star's posts were never pushed; ann's timeline mixes pushed, pulled and her own posts
    for n in w.users:
        assert star not in {a for _p, a in stored_timeline(w.settings, w.users[n])}
    ann_page = w.as_("ann").get(f"/v1/timeline/{w.users['ann']}", params={"limit": 100}).json()["posts"]
    assert {p["author_id"] for p in ann_page} == {w.users["bob"], w.users["cat"], star, w.users["ann"]}
    post = ann_page[0]
    assert set(post) == {"post_id", "author_id", "created_at", "caption", "media", "hashtags"}
    pushed = fanout_writes(w.graph, w.posts, 3)
    assert pushed["hybrid"] == sum(len(stored_timeline(w.settings, u)) for u in w.users.values())
    assert pushed["push"] - pushed["hybrid"] == 3 * sum(1 for _p, a in w.posts if a == star)


@pytest.mark.unit
def test_unfollow_hides_at_once_and_new_posts_follow_the_graph(settings: Settings) -> None:
    w = celebrity_world(settings)
    w.unfollow("ann", "bob")  # pushed entries of bob stay in the table but are hidden
    w.unfollow("ann", "star")  # pulled author: gone from the merge
    assert any(a == w.users["bob"] for _p, a in stored_timeline(w.settings, w.users["ann"]))
    w.expect("ann")
    w.follow("dan", "cat")  # cat's recent posts (fewer than FOLLOW_BACKFILL) show at once
    w.expect("dan")
    w.post("cat", "after dan followed")
    w.post("star", "star again")
    w.pump()
    w.expect("ann")
    w.expect("dan")
    # ann's unfollow took star below the threshold (3 -> 2 followers): star's posts are pushed from now on
    # (the older ones, made as a celebrity, reach bob and cat with the next offline run)
    assert stored_timeline(w.settings, w.users["bob"])[0] == (w.posts[-1][0], w.users["star"])
    assert stored_timeline(w.settings, w.users["cat"])[0] == (w.posts[-1][0], w.users["star"])


@pytest.mark.unit
def test_two_servers_racing_for_one_username_give_it_to_exactly_one(settings: Settings) -> None:
    import threading

    from sixfold.feed.users import UserDirectory
    from sixfold.platform.errors import RequestError
    from sixfold.platform.ids import Sequencer

    # each server its own store connection and, as server processes have, its own sequencer worker id
    servers = [UserDirectory(open_store(settings), Sequencer(worker=i)) for i in range(4)]
    barrier = threading.Barrier(len(servers) * 2)
    outcomes: list[object] = []

    def claim(directory: UserDirectory, spelling: str) -> None:
        barrier.wait()
        try:
            outcomes.append(directory.create(spelling)["user_id"])
        except RequestError as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=claim, args=(d, spelling)) for d in servers for spelling in ("Zed", "zed")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [o for o in outcomes if o != 409]
    assert len(winners) == 1 and outcomes.count(409) == len(threads) - 1
    store = open_store(settings)
    assert store.get(SERVING_TABLES["usernames"], {"username": "zed"})["user_id"] == winners[0]
    users = [r for r in store.scan(SERVING_TABLES["users"]) if r["username"].lower() == "zed"]
    assert [u["user_id"] for u in users] == winners  # the losers' accounts were taken back


@pytest.mark.unit
def test_a_servers_author_cache_drops_its_own_writes_at_once_and_others_within_the_ttl(settings: Settings) -> None:
    from sixfold.feed.graph import FollowGraph
    from sixfold.feed.posts import PostService
    from sixfold.feed.timelines import AuthorCache, TimelineReader
    from sixfold.feed.users import UserDirectory

    s = replace(settings, feed_celebrity_threshold=2)
    store, bus = open_store(s), open_bus(s)
    now = [1000.0]
    cache = AuthorCache(store, ttl_s=2.0, clock=lambda: now[0])
    users = UserDirectory(store)
    reader = TimelineReader(store, 2, users, cache)
    here_graph = FollowGraph(store, bus, 2, users, changed=cache.celebrity_changed)  # writes through this server
    here_posts = PostService(store, bus, users, changed=cache.posted)
    other_graph, other_posts = FollowGraph(store, bus, 2, users), PostService(store, bus, users)  # another server
    ann, bob, star = (users.create(n)["user_id"] for n in ("ann", "bob", "star"))
    graph: set[tuple[int, int]] = set()
    posts: list[tuple[int, int]] = []

    def post(service: PostService) -> None:
        posts.append((service.create(star, "hi")["post_id"], star))
        run_fanout(s, store, bus, idle_timeout_s=0.05)

    def read() -> list[int]:
        return [p["post_id"] for p in reader.timeline(ann, 100)["posts"]]

    here_graph.follow(ann, star)
    graph.add((ann, star))
    post(here_posts)  # star has 1 follower: pushed
    assert read() == oracle(graph, posts, ann)
    other_graph.follow(bob, star)  # star becomes a celebrity on another server; its posts are pulled now
    graph.add((bob, star))
    post(other_posts)
    stale = read()
    assert stale == oracle(graph, posts, ann)[1:]  # this server still counts 1 follower and pulls nothing
    now[0] += 2.01
    assert read() == oracle(graph, posts, ann)  # past the ttl: pulled
    post(other_posts)
    assert read() == oracle(graph, posts, ann)[1:]  # another server's post: the kept newest ids are stale
    now[0] += 2.01
    assert read() == oracle(graph, posts, ann)
    post(here_posts)  # a post through this server shows at once
    assert read() == oracle(graph, posts, ann)
    here_graph.unfollow(bob, star)  # and so does the count: star is pushed again, not pulled
    graph.discard((bob, star))
    post(here_posts)
    # pushed again: the new post and the first one; the posts made as a celebrity wait for the offline job
    assert read() == [posts[-1][0], posts[0][0]]
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
def feed_store(request, settings: Settings):
    """The serving store of a feed test: SQLite, and the real Cassandra (its own keyspace)."""
    if request.param == "sqlite":
        store = open_store(settings)
    else:
        from sixfold.platform.store import CassandraStore

        store = CassandraStore(replace(request.getfixturevalue("services_running"), cassandra_keyspace="sixfold_feed"))
    yield store
    store.close()


@pytest.mark.unit
def test_the_graph_stamps_follows_and_lists_celebrities_on_every_store(feed_store, settings: Settings) -> None:
    import random

    from sixfold.feed.graph import FollowGraph, celebrities, follow_version, relist_celebrities
    from sixfold.feed.users import UserDirectory

    users = UserDirectory(feed_store)
    ids = [users.create(f"u{uuid.uuid4().hex[:16]}")["user_id"] for _ in range(4)]
    graph = FollowGraph(feed_store, open_bus(settings), 2, users)
    edges: set[tuple[int, int]] = set()
    rng = random.Random(11)
    stamps = set()
    for _ in range(40):
        follow, (a, b) = rng.random() < 0.6, rng.sample(ids, 2)
        before = follow_version(feed_store, a)
        (graph.follow if follow else graph.unfollow)(a, b)
        moved = ((a, b) not in edges) if follow else ((a, b) in edges)
        (edges.add if follow else edges.discard)((a, b))
        after = follow_version(feed_store, a)
        assert (after != before) == moved and (not moved or after not in stamps)  # a fresh stamp per change
        stamps.add(after)
        assert {u: n for u, n in celebrities(feed_store).items() if u in ids} == celebrity_oracle(edges, 2)
    mine = {u: n for u, n in celebrities(feed_store).items() if u in ids}
    others = {u: n for u, n in celebrities(feed_store).items() if u not in ids}
    assert relist_celebrities(feed_store, others)["unlisted"] == len(mine)  # what the offline job would do
    assert not set(celebrities(feed_store)) & set(ids)
    relist_celebrities(feed_store, {**others, **mine})
    assert {u: n for u, n in celebrities(feed_store).items() if u in ids} == celebrity_oracle(edges, 2)


@pytest.mark.unit
def test_a_kept_page_is_reused_only_while_nothing_it_was_built_from_moved(feed_store, settings: Settings) -> None:
    """Every write goes through another server; the oracle is the brute force over the graph and posts."""
    from sixfold.feed.graph import FollowGraph
    from sixfold.feed.posts import PostService
    from sixfold.feed.timelines import AuthorCache, TimelineReader
    from sixfold.feed.users import UserDirectory

    s = replace(settings, feed_celebrity_threshold=3)
    store, bus = feed_store, open_bus(s)
    now = [1000.0]
    users = UserDirectory(store)
    reader = TimelineReader(store, 3, users, AuthorCache(store, ttl_s=2.0, clock=lambda: now[0]), page_cache_s=30.0)
    graph, poster = FollowGraph(store, bus, 3, users), PostService(store, bus, users)  # the other server
    suffix = uuid.uuid4().hex[:8]  # fresh names: the Cassandra keyspace outlives a run
    ids = {n: users.create(f"{n}_{suffix}")["user_id"] for n in ("ann", "bob", "cat", "star", "fan1", "fan2")}
    edges: set[tuple[int, int]] = set()
    posts: list[tuple[int, int]] = []

    def follow(a: str, b: str, on: bool = True) -> None:
        (graph.follow if on else graph.unfollow)(ids[a], ids[b])
        (edges.add if on else edges.discard)((ids[a], ids[b]))

    def post(author: str) -> int:
        posts.append((poster.create(ids[author], "hi")["post_id"], ids[author]))
        run_fanout(s, store, bus, idle_timeout_s=0.05)
        return posts[-1][0]

    def read(limit: int = 100) -> list[int]:
        ids_seen, cursor = [], None
        while True:
            page = reader.timeline(ids["ann"], limit, cursor)
            ids_seen += [p["post_id"] for p in page["posts"]]
            if (cursor := page["next_cursor"]) is None:
                return ids_seen

    def hits_after(expected: list[int], limit: int = 100) -> int:
        before = reader.hits
        assert read(limit) == expected
        return reader.hits - before

    for a, b in [("ann", "bob"), ("ann", "cat"), ("ann", "star"), ("fan1", "star"), ("fan2", "star")]:
        follow(a, b)
    for author in ("bob", "cat", "star", "bob", "star"):
        post(author)
    want = oracle(edges, posts, ids["ann"])
    assert hits_after(want) == 0 and hits_after(want) == 1  # built once, then reused
    assert hits_after(want, limit=2) == 0 and hits_after(want, limit=2) == 3  # each page of a walk is kept
    post("bob")  # a push: the newest pushed entry moved
    assert hits_after(oracle(edges, posts, ids["ann"])) == 0
    follow("ann", "cat", on=False)  # an unfollow on another server: the follower's stamp moved
    assert hits_after(oracle(edges, posts, ids["ann"])) == 0
    follow("ann", "cat")
    assert hits_after(oracle(edges, posts, ids["ann"])) == 0
    post("star")  # a celebrity's post is pulled: this server sees it when its AuthorCache does
    assert read() == oracle(edges, posts, ids["ann"])[1:]
    now[0] += 2.01
    assert hits_after(oracle(edges, posts, ids["ann"])) == 0
    assert hits_after(oracle(edges, posts, ids["ann"])) == 1
    # what no stamp covers (an older entry the offline job writes back) shows within page_cache_s
    lost = post("cat")
    post("bob")
    store.delete(TIMELINES, {"user_id": ids["ann"], "post_id": lost})
    without = [p for p in oracle(edges, posts, ids["ann"]) if p != lost]
    assert hits_after(without) == 0
    store.upsert(TIMELINES, {"user_id": ids["ann"], "post_id": lost, "author_id": ids["cat"]})
    assert hits_after(without) == 1
    now[0] += 30.01
    assert hits_after(oracle(edges, posts, ids["ann"])) == 0
    # star stops being a celebrity on another server: pages built with the old list go once this
    # server re-reads it, and the posts star made as a celebrity (never pushed) wait for the offline job
    follow("fan2", "star", on=False)
    assert hits_after(oracle(edges, posts, ids["ann"])) == 1
    now[0] += 2.01
    pulled_only = {p for p, a in posts if a == ids["star"]}
    assert hits_after([p for p in oracle(edges, posts, ids["ann"]) if p not in pulled_only]) == 0


@pytest.mark.unit
def test_timeline_rejects_bad_limits_cursors_and_users(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    ann = w.user("ann")
    c = w.as_("ann")
    for limit in (0, 101, -1):
        r = c.get(f"/v1/timeline/{ann}", params={"limit": limit})
        assert r.status_code == 422 and "limit" in r.json()["error"]["message"]
    for cursor in ("zz", base64.urlsafe_b64encode(b"p:12").decode(), "!!!", base64.urlsafe_b64encode(b"t:x").decode()):
        r = c.get(f"/v1/timeline/{ann}", params={"before": cursor})
        assert r.status_code == 422 and "cursor" in r.json()["error"]["message"], cursor
    assert c.get("/v1/timeline/12345").status_code == 403  # another user's home timeline
    assert c.get(f"/v1/timeline/{ann}").json() == {"user_id": ann, "posts": [], "next_cursor": None}


# ---- the fanout consumer -------------------------------------------------------------------------
@pytest.mark.unit
def test_bad_messages_go_to_the_dead_letter_topic_and_offsets_move_on(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    ann, bob = w.user("ann"), w.user("bob")
    w.follow("bob", "ann")
    bus = open_bus(w.settings)
    bus.produce_raw("post-created", b"not json")
    bus.produce("post-created", {"post_id": 1, "author_id": ann})  # created_at missing
    good = w.post("ann", "fine")
    store = open_store(w.settings)
    report = run_fanout(w.settings, store, bus, idle_timeout_s=0.05)
    assert (report.received, report.landed, report.rejected, report.pushed) == (3, 1, 2, 1)
    dead = [m.json() for m in bus.consumer("post-created.dlq", "t").poll(timeout_s=0.1)]
    assert dead[0]["payload"] == "not json"
    assert "not JSON" in dead[0]["reason"] and "created_at: required" in dead[1]["reason"]
    assert stored_timeline(w.settings, bob) == [(good, ann)]
    again = run_fanout(w.settings, store, bus, idle_timeout_s=0.05)  # committed: nothing replays
    assert again.received == 0
    landed = ArrowLake(w.settings).read(LAKE_TABLES["posts"]).to_pylist()
    assert [p["post_id"] for p in landed] == [good]


@pytest.mark.unit
def test_replayed_batch_is_harmless(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    for name in ("ann", "bob"):
        w.user(name)
    w.follow("bob", "ann")
    w.post("ann", "once")
    store, bus = open_store(w.settings), open_bus(w.settings)
    run_fanout(w.settings, store, bus, group="first", idle_timeout_s=0.05)
    run_fanout(w.settings, store, bus, group="second", idle_timeout_s=0.05)  # same messages again
    assert len(stored_timeline(w.settings, w.users["bob"])) == 1
    assert ArrowLake(w.settings).read(LAKE_TABLES["posts"]).num_rows == 1


@pytest.mark.unit
@hsettings(max_examples=60, deadline=None)
@given(edges=st.sets(st.tuples(st.integers(0, 9), st.integers(0, 9)), max_size=40),
       authors=st.lists(st.integers(0, 9), max_size=30), threshold=st.integers(1, 12))
def test_fanout_write_counts(edges: set[tuple[int, int]], authors: list[int], threshold: int) -> None:
    posts = [(i, a) for i, a in enumerate(authors)]
    counts = fanout_writes(edges, posts, threshold)
    fans = {b: {a for a, bb in edges if bb == b and a != b} for b in range(10)}
    assert counts["push"] == sum(len(fans[a]) for a in authors)
    assert counts["hybrid"] == sum(len(fans[a]) for a in authors if len(fans[a]) < threshold)
    assert counts["hybrid"] <= counts["push"]
    assert fanout_writes(edges, posts, 10**9)["hybrid"] == counts["push"]
    for a in range(10):
        targets = fanout_targets(a, fans[a], len(fans[a]), threshold)
        assert targets == (sorted(fans[a]) if len(fans[a]) < threshold else [])


@pytest.mark.unit
def test_bulk_timeline_writes_are_validated_like_any_row(settings: Settings) -> None:
    store = open_store(settings)
    good = {"user_id": 1, "post_id": 2, "author_id": 3}
    bad = [({**good, "post_id": True}, "expected an integer"), ({**good, "author_id": 2**63}, "outside the long range"),
           ({"user_id": 1, "post_id": 2}, "author_id: required"), ({**good, "extra": 1}, "unknown field"),
           ({**good, "post_id": "2"}, "expected an integer"), ([1, 2, 3], "expected a JSON object")]
    for row, message in bad:
        with pytest.raises(ValueError, match=message):
            store.upsert_many(TIMELINES, [good, row])
        with pytest.raises(ValueError, match=message):
            schema.validate(TIMELINES.record, row)
    assert store.query(TIMELINES, {"user_id": 1}) == []  # nothing of a rejected batch is written
    assert store.upsert_many(TIMELINES, [good, {**good, "post_id": -(2**63)}]) == 2
    assert store.query(TIMELINES, {"user_id": 1}, columns=("post_id",)) == [{"post_id": 2}, {"post_id": -(2**63)}]
    store.close()


# ---- the offline job ---------------------------------------------------------------------------------
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.mark.spark
def test_job_transformations_equal_the_brute_force(spark) -> None:
    from pyspark.sql import Row

    from schemas.records import FOLLOW_EVENT, POST
    from sixfold.feed.timeline_job import celebrity_authors, current_follows, timelines
    from sixfold.platform.schema import spark_struct

    def ev(a: int, b: int, action: str, minute: int) -> dict:
        return {"follower_id": a, "followee_id": b, "action": action, "at": T0 + timedelta(minutes=minute)}

    events = [ev(1, 2, "follow", 0), ev(1, 3, "follow", 1), ev(1, 3, "unfollow", 2),  # 1 unfollowed 3
              ev(4, 3, "follow", 0), ev(4, 3, "unfollow", 1), ev(4, 3, "follow", 5),  # 4 refollowed 3
              ev(5, 2, "follow", 3), ev(5, 2, "unfollow", 3),  # same instant: unfollow wins
              ev(6, 6, "follow", 1),  # self-follow never counts
              ev(1, 9, "follow", 1), ev(4, 9, "follow", 1), ev(6, 9, "follow", 1), ev(6, 2, "follow", 4)]
    graph = {(1, 2), (4, 3), (1, 9), (4, 9), (6, 9), (6, 2)}
    posts = [{"post_id": 100 + i, "author_id": a, "created_at": T0, "caption": None, "media_ids": [], "hashtags": [],
              "lat": None, "lon": None} for i, a in enumerate([2, 3, 9, 2, 3, 9, 2, 2, 6, 3])]
    ev_df = spark.createDataFrame([Row(**e) for e in events], spark_struct(FOLLOW_EVENT))
    post_df = spark.createDataFrame([Row(**p) for p in posts], spark_struct(POST))

    follows = current_follows(ev_df)
    assert {(r.follower_id, r.followee_id) for r in follows.collect()} == graph
    celebs = celebrity_authors(follows, 3)
    assert [r.author_id for r in celebs.collect()] == [9]
    pairs = [(p["post_id"], p["author_id"]) for p in posts]
    for per_user in (1, 2, 500):
        got = timelines(follows, post_df, celebs, per_user).collect()
        by_user: dict[int, list[tuple[int, int]]] = {}
        for r in got:
            by_user.setdefault(r.user_id, []).append((r.post_id, r.author_id))
        want = {u: pushed_oracle(graph, pairs, u, 3, per_user) for u in (1, 4, 5, 6)}
        assert {u: sorted(v, reverse=True) for u, v in by_user.items()} == {u: v for u, v in want.items() if v}


@pytest.mark.spark
def test_generate_timelines_repairs_the_table_and_passes_the_check(spark, settings: Settings) -> None:
    from sixfold.feed.timeline_job import check_sample, generate_timelines

    w = celebrity_world(settings)
    w.follow("dan", "cat")  # cat's recent posts at once (the follow), the rest with the job
    w.unfollow("ann", "bob")  # bob's pushed entries: the job deletes them
    w.pump()
    store = open_store(w.settings)
    counts = generate_timelines(spark, w.settings, store, per_user=500)
    assert counts["users"] == 4 and counts["deleted"] > 0
    for name, uid in w.users.items():
        assert stored_timeline(w.settings, uid) == pushed_oracle(w.graph, w.posts, uid, 3, 500), name
        w.expect(name)
    assert check_sample(w.settings, store, sample=10)["sampled"] == 4
    # a rerun changes nothing; a small window keeps only the newest
    before = {u: stored_timeline(w.settings, u) for u in w.users.values()}
    assert generate_timelines(spark, w.settings, store, per_user=500)["deleted"] == 0
    assert {u: stored_timeline(w.settings, u) for u in w.users.values()} == before
    generate_timelines(spark, w.settings, store, per_user=2)
    for uid in w.users.values():
        assert stored_timeline(w.settings, uid) == pushed_oracle(w.graph, w.posts, uid, 3, 2)
    # the check notices a timeline that lost an entry
    generate_timelines(spark, w.settings, store, per_user=500)
    victim = stored_timeline(w.settings, w.users["dan"])[0][0]
    store.delete(TIMELINES, {"user_id": w.users["dan"], "post_id": victim})
    with pytest.raises(ValueError, match="1 missing"):
        check_sample(w.settings, store, sample=10)


@pytest.mark.spark
def test_generate_timelines_writes_only_the_difference(spark, settings: Settings) -> None:
    from sixfold.feed.timeline_job import generate_timelines

    w = celebrity_world(settings)
    w.follow("dan", "cat")
    w.unfollow("ann", "bob")
    w.pump()
    store = open_store(w.settings)
    for post_id, _author in stored_timeline(w.settings, w.users["dan"])[::3]:  # pushes a dead consumer lost
        store.delete(TIMELINES, {"user_id": w.users["dan"], "post_id": post_id})
    want = {u: pushed_oracle(w.graph, w.posts, u, 3, 500) for u in w.users.values()}
    pushed_before = {u: set(stored_timeline(w.settings, u)) for u in w.users.values()}
    first = generate_timelines(spark, w.settings, store, per_user=500)
    assert first["entries"] == sum(len(v) for v in want.values())
    # fanout had pushed most entries already: only the missing ones are written
    assert first["written"] == sum(len(set(want[u]) - pushed_before[u]) for u in w.users.values()) > 0
    again = generate_timelines(spark, w.settings, store, per_user=500)
    assert (again["users"], again["entries"], again["written"], again["deleted"]) == (4, first["entries"], 0, 0)
    assert {u: stored_timeline(w.settings, u) for u in w.users.values()} == want
    # the job relists the celebrities from the lake: a lowered threshold lists more, the old one fewer again
    from sixfold.feed.graph import celebrities

    assert celebrities(store) == celebrity_oracle(w.graph, 3) != celebrity_oracle(w.graph, 2)
    assert generate_timelines(spark, replace(w.settings, feed_celebrity_threshold=2), store)["celebrities_unlisted"] == 0
    assert celebrities(store) == celebrity_oracle(w.graph, 2)
    assert generate_timelines(spark, w.settings, store)["celebrities_unlisted"] == 2
    assert celebrities(store) == celebrity_oracle(w.graph, 3)
    # and recounts followers: two servers' concurrent follows can leave a count wrong
    store.upsert(FOLLOWER_COUNTS, {"user_id": w.users["bob"], "followers": 7})
    store.upsert(FOLLOWER_COUNTS, {"user_id": w.users["dan"], "followers": 2})  # nobody follows dan
    assert generate_timelines(spark, w.settings, store)["followers_recounted"] == 2
    counted = {r["user_id"]: r["followers"] for r in store.scan(FOLLOWER_COUNTS) if r["followers"]}
    assert counted == Counter(b for _a, b in w.graph)
    assert generate_timelines(spark, w.settings, store)["followers_recounted"] == 0
    store.close()


@pytest.mark.spark
def test_cli_feed_timelines(spark, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from sixfold.cli import app

    monkeypatch.setenv("SIXFOLD_FEED_CELEBRITY_THRESHOLD", "3")
    w = celebrity_world(Settings.from_env())
    w.follow("dan", "cat")  # pending on the bus: the command lands it first
    result = CliRunner().invoke(app, ["feed", "timelines"])
    assert result.exit_code == 0, result.output
    assert "timelines: 4 users" in result.output
    for name in w.users:
        w.expect(name)


@pytest.mark.airflow
def test_timelines_dag_runs_one_interval(airflow: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.models.dagbag import DagBag

    from sixfold.platform.airflow_env import DAGS_FOLDER

    monkeypatch.setenv("SIXFOLD_FEED_CELEBRITY_THRESHOLD", "3")
    w = celebrity_world(Settings.from_env())
    w.follow("dan", "cat")
    w.unfollow("ann", "bob")
    w.pump()
    bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    dag = bag.dags["timelines"]
    assert {t.task_id for t in dag.tasks} == {"generate", "dq"}
    assert [t.task_id for t in dag.get_task("generate").downstream_list] == ["dq"]
    assert dag.default_args["retries"] >= 1 and dag.default_args["execution_timeout"]
    assert not dag.catchup
    run = dag.test(logical_date=datetime(2026, 3, 2, 10, tzinfo=UTC))
    assert run.state == "success"
    for name, uid in w.users.items():
        assert stored_timeline(w.settings, uid) == pushed_oracle(w.graph, w.posts, uid, 3, 500), name
        w.expect(name)


@pytest.mark.unit
def test_two_servers_racing_on_the_same_edges_count_each_edge_once(feed_store, settings: Settings) -> None:
    """Threads on two FollowGraphs (two servers) follow and unfollow a few edges at random; the counts
    must equal the edges left in `followers` (the independent record), and the celebrity list too."""
    import random
    import threading

    from sixfold.feed.graph import FOLLOWERS, FollowGraph, celebrities, follower_count
    from sixfold.feed.users import UserDirectory

    class Sluggish:
        """The store with a pause before every call, so racing threads interleave between calls."""

        def __init__(self, store) -> None:
            self.store = store

        def __getattr__(self, name: str):
            attr = getattr(self.store, name)

            def slow(*args, **kwargs):
                time.sleep(0.003)
                return attr(*args, **kwargs)
            return slow if callable(attr) else attr

    users = UserDirectory(feed_store)
    ids = [users.create(f"r{uuid.uuid4().hex[:16]}")["user_id"] for _ in range(4)]
    servers = [FollowGraph(Sluggish(feed_store), open_bus(settings), 2, users) for _ in range(2)]
    barrier = threading.Barrier(4)
    first: list[int] = []

    def churn(seed: int) -> None:
        rng = random.Random(seed)
        barrier.wait(timeout=60)
        servers[seed % 2].follow(ids[1 + seed % 3], ids[0])  # at once: two on one edge, two on others
        barrier.wait(timeout=60)
        if seed == 0:
            first.append(follower_count(feed_store, ids[0]))
        barrier.wait(timeout=60)
        for _ in range(12):
            graph = servers[rng.randrange(2)]
            a, b = rng.sample(ids[:3], 2) if rng.random() < 0.5 else (rng.choice(ids[1:]), ids[0])
            (graph.follow if rng.random() < 0.65 else graph.unfollow)(a, b)

    threads = [threading.Thread(target=churn, args=(seed,)) for seed in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert first == [3]  # three distinct edges at once: no double count, no lost update
    edges = {(r["follower_id"], u) for u in ids for r in feed_store.query(FOLLOWERS, {"followee_id": u})}
    fans = Counter(b for _a, b in edges)
    for u in ids:
        assert follower_count(feed_store, u) == fans[u], u
    assert {u: n for u, n in celebrities(feed_store).items() if u in ids} == celebrity_oracle(edges, 2)
