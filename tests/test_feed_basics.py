"""Feed basics users expect: profiles, one's own posts at home, deleting a post, a follow's recent
posts, kept pages that never hide a late push, and search that sees a post once fanout has run.

Every expected answer is computed here in plain Python from the graph and the posts the test made
(newest first), from the bytes it uploaded and the files it saw on disk, never read back from the
code under test.
"""

from __future__ import annotations

import hashlib
import io
import uuid
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from test_feed_search import CENTRES, TAGS, expected_geo, expected_tag, hand_made_posts
from test_feed_timelines import World, make_world, oracle, pushed_oracle, stored_timeline

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.platform.bus import open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

POSTS = SERVING_TABLES["posts"]


def png(rgb: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", size, rgb).save(out, "PNG")
    return out.getvalue()


def walk(get, limit: int) -> list[int]:
    """Every post id of a paginated feed answer (`get(params)` -> response), checking each page's shape."""
    ids: list[int] = []
    cursor = None
    for _ in range(1000):
        r = get({"limit": limit, **({"before": cursor} if cursor else {})})
        assert r.status_code == 200, r.text
        body = r.json()
        assert set(body) == {"user_id", "posts", "next_cursor"} and len(body["posts"]) <= limit
        ids += [p["post_id"] for p in body["posts"]]
        if (cursor := body["next_cursor"]) is None:
            return ids
        assert len(body["posts"]) == limit
    raise AssertionError("more than 1000 pages")


def profile(w: World, name: str, limit: int) -> list[int]:
    """A user's profile, read with no token (a public read)."""
    return walk(lambda params: w.client.get(f"/v1/users/{w.users[name]}/posts", params=params), limit)


def home(w: World, name: str, limit: int = 100, client: TestClient | None = None) -> list[int]:
    """A user's home timeline, through `client` (another server) if given."""
    from accounts import Authed

    as_user = Authed(client, w.tokens[name]) if client is not None else w.as_(name)
    return walk(lambda params: as_user.get(f"/v1/timeline/{w.users[name]}", params=params), limit)


def by(w: World, name: str) -> list[int]:
    """The brute force of a profile: the user's posts, newest first."""
    return sorted((p for p, a in w.posts if a == w.users[name]), reverse=True)


# ---- profile ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_a_profile_lists_a_users_posts_newest_first_to_anyone(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    for name in ("ann", "bob", "cat"):
        w.user(name)
    w.follow("bob", "ann")
    for i in range(11):
        w.post("ann" if i % 3 else "bob", f"post {i}", hashtags=["daily"])
    w.pump()
    for limit in (1, 2, 3, 20, 100):
        assert profile(w, "ann", limit) == by(w, "ann"), limit
        assert profile(w, "bob", limit) == by(w, "bob"), limit
    assert profile(w, "cat", 20) == []
    # the same post shape as the timeline's
    shown = w.client.get(f"/v1/users/{w.users['ann']}/posts").json()["posts"][0]
    assert shown == w.as_("bob").get(f"/v1/timeline/{w.users['bob']}").json()["posts"][0]
    assert shown["post_id"] == by(w, "ann")[0] and shown["hashtags"] == ["daily"]
    unknown = w.client.get("/v1/users/12345/posts")
    assert unknown.status_code == 404 and "12345" in unknown.json()["error"]["message"]
    for params in ({"limit": 0}, {"limit": 101}, {"before": "!!!"}):
        assert w.client.get(f"/v1/users/{w.users['ann']}/posts", params=params).status_code == 422, params


# ---- one's own posts in one's home timeline ------------------------------------------------------------
@pytest.mark.unit
def test_ones_own_posts_show_in_ones_home_timeline_at_once_merged_in_order(settings: Settings) -> None:
    w = make_world(settings, threshold=100)  # the app keeps answered pages (feed_page_cache_s)
    for name in ("ann", "bob"):
        w.user(name)
    assert home(w, "ann") == []
    mine = w.post("ann", "first")
    assert home(w, "ann") == [mine]  # before any consumer ran, and past the page kept a moment ago
    w.follow("ann", "bob")
    for i in range(6):
        w.post("bob" if i % 2 else "ann", f"p{i}")
    w.pump()
    for limit in (1, 2, 5, 100):
        assert home(w, "ann", limit) == oracle(w.graph, w.posts, w.users["ann"]), limit
    assert stored_timeline(w.settings, w.users["ann"]) == pushed_oracle(w.graph, w.posts, w.users["ann"], 100, 500)


# ---- a follow shows the followee's recent posts ---------------------------------------------------------
@pytest.mark.unit
def test_a_new_follow_shows_the_followees_recent_posts_at_once_and_an_unfollow_hides_them(settings: Settings) -> None:
    from sixfold.feed.graph import FOLLOW_BACKFILL

    w = make_world(settings, threshold=100)
    for name in ("ann", "bob"):
        w.user(name)
    for i in range(FOLLOW_BACKFILL + 5):
        w.post("bob", f"bob {i}")
    w.pump()  # nobody follows bob yet: nothing pushed
    assert home(w, "ann") == []  # kept by the server
    w.follow("ann", "bob")
    assert home(w, "ann", 20) == by(w, "bob")[:FOLLOW_BACKFILL]  # no consumer, no offline job
    w.unfollow("ann", "bob")
    assert home(w, "ann") == []
    w.follow("ann", "bob")
    w.post("bob", "after")
    w.pump()
    assert home(w, "ann") == by(w, "bob")[:FOLLOW_BACKFILL + 1]


@pytest.mark.unit
def test_following_a_celebrity_pushes_nothing_and_pulls_everything(settings: Settings) -> None:
    w = make_world(settings, threshold=2)
    for name in ("ann", "bob", "star"):
        w.user(name)
    w.follow("bob", "star")
    for i in range(5):
        w.post("star", f"star {i}")
    w.pump()
    w.follow("ann", "star")  # star's second follower: a celebrity, pulled at read time
    assert stored_timeline(w.settings, w.users["ann"]) == []
    assert home(w, "ann", 2) == by(w, "star") == oracle(w.graph, w.posts, w.users["ann"])


# ---- deleting a post ------------------------------------------------------------------------------------
def blob_files(settings: Settings) -> set[str]:
    """Names of the blob files on disk (manifests and temporary files aside)."""
    root = Path(settings.blob_dir)
    return {f.name for f in root.rglob("*") if f.is_file() and "manifests" not in f.parts and not f.name.startswith(".")}


@pytest.mark.unit
def test_deleting_a_post_removes_it_from_every_read_and_collects_its_unused_media(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    for name in ("ann", "bob", "cat"):
        w.user(name)
    w.follow("bob", "ann")
    w.follow("cat", "ann")
    w.follow("ann", "bob")
    c = w.as_("ann")

    def upload(data: bytes) -> int:
        r = c.post("/v1/media", content=data, headers={"content-type": "image/png"})
        assert r.status_code == 201, r.text
        return r.json()["media_id"]

    shared_bytes, story_bytes, twice_bytes, only_bytes = (png(rgb) for rgb in
                                                          ((10, 200, 10), (10, 10, 200), (200, 200, 10), (200, 10, 10)))
    m_shared, m_story, m_twice, m_twin = (upload(b) for b in (shared_bytes, story_bytes, twice_bytes, twice_bytes))
    assert c.post("/v1/stories", json={"user_id": w.users["ann"], "media_id": m_story}).status_code == 201
    before_only = blob_files(w.settings)
    m_only = upload(only_bytes)
    assert hashlib.sha256(only_bytes).hexdigest() in blob_files(w.settings) - before_only
    doomed = w.post("ann", "at the pier", media_ids=[m_only, m_shared, m_story, m_twice], hashtags=["pier"],
                    geo={"lat": 48.8566, "lon": 2.3522})
    kept = w.post("ann", "again", media_ids=[m_shared], hashtags=["pier"], geo={"lat": 48.8566, "lon": 2.3522})
    w.post("bob", "hello")
    w.pump()
    other = TestClient(create_app(w.settings))  # a second server, with its own kept pages and caches
    for client in (None, other):
        assert doomed in home(w, "bob", client=client) and doomed in home(w, "ann", client=client)

    # only the author, with a token; a repeat (a retry after a lost answer) answers the same
    assert w.as_("bob").delete(f"/v1/posts/{doomed}").status_code == 403
    assert w.client.delete(f"/v1/posts/{doomed}").status_code == 401
    assert c.delete("/v1/posts/12345").status_code == 404
    for _ in range(2):
        r = c.delete(f"/v1/posts/{doomed}")
        assert r.status_code == 200 and r.json() == {"post_id": doomed, "deleted": True}
    assert w.as_("bob").delete(f"/v1/posts/{doomed}").status_code == 403
    w.posts.remove((doomed, w.users["ann"]))

    # gone from every read at once, on both servers, before any consumer ran
    for client in (None, other):
        for name in ("ann", "bob", "cat"):
            assert home(w, name, client=client) == oracle(w.graph, w.posts, w.users[name]), name
            assert home(w, name, 1, client=client) == oracle(w.graph, w.posts, w.users[name]), name
    assert profile(w, "ann", 1) == by(w, "ann") == [kept]
    assert [p["post_id"] for p in w.client.get("/v1/search/hashtags/pier").json()["posts"]] == [kept]
    near = w.client.get("/v1/search/geo", params={"lat": 48.8566, "lon": 2.3522, "radius_km": 1}).json()
    assert [p["post_id"] for p in near["posts"]] == [kept]

    # the consumer: pushed entries and unused media go, the deletion reaches the lake
    w.pump()
    for name in ("bob", "cat"):
        assert doomed not in {p for p, _a in stored_timeline(w.settings, w.users[name])}
    assert w.client.get(f"/v1/media/{m_only}").status_code == 404
    assert blob_files(w.settings) == before_only  # its original and renditions, nothing else
    for media_id, data in ((m_shared, shared_bytes), (m_story, story_bytes), (m_twin, twice_bytes)):
        assert w.client.get(f"/v1/media/{media_id}").content == data  # another post, a story, another upload
        for size in ("feed", "thumb"):
            assert w.client.get(f"/v1/media/{media_id}", params={"size": size}).status_code == 200
    assert w.client.get(f"/v1/media/{m_twice}").status_code == 404  # its row went; its bytes stay for the twin
    landed = ArrowLake(w.settings).read(LAKE_TABLES["post_deletions"]).to_pylist()
    assert [(d["post_id"], d["author_id"], d["hashtags"]) for d in landed] == [(doomed, w.users["ann"], ["pier"])]
    # a replay of everything changes nothing, and never brings the post back
    store, bus = open_store(w.settings), open_bus(w.settings)
    from sixfold.feed.fanout import run_fanout, run_post_deletions

    run_fanout(w.settings, store, bus, group="replay", idle_timeout_s=0.05)
    again = run_post_deletions(w.settings, store, bus, group="replay", idle_timeout_s=0.05)
    store.close()
    assert (again.received, again.media, again.blobs) == (1, 0, 0)
    for name in ("ann", "bob", "cat"):
        assert home(w, name) == oracle(w.graph, w.posts, w.users[name]), name
    assert [p["post_id"] for p in w.client.get("/v1/search/hashtags/pier").json()["posts"]] == [kept]


@pytest.mark.unit
def test_a_deleted_celebrity_post_leaves_kept_pages(settings: Settings) -> None:
    """A celebrity's followers are not stamped: their kept pages follow the author cache, which a deletion
    through this server drops at once, and a page older than the post ids it keeps checks tombstones, on
    any server."""
    from sixfold.feed.timelines import AuthorCache

    w = make_world(settings, threshold=2)
    for name in ("ann", "bob", "star"):
        w.user(name)
    w.follow("ann", "star")
    w.follow("bob", "star")
    for i in range(AuthorCache.NEWEST + 3):
        w.post("star", f"star {i}")
    w.pump()
    other = TestClient(create_app(w.settings))
    for client in (None, other):  # the last page of 100 holds the oldest posts, past the 128 kept ids
        assert home(w, "ann", 100, client) == oracle(w.graph, w.posts, w.users["ann"])
    oldest, newest = by(w, "star")[-1], by(w, "star")[0]
    for doomed in (oldest, newest):
        assert w.as_("star").delete(f"/v1/posts/{doomed}").status_code == 200
        w.posts.remove((doomed, w.users["star"]))
        assert home(w, "ann", 100) == oracle(w.graph, w.posts, w.users["ann"])
    # another server: the deep page at once (the newest goes within its author cache's feed_read_cache_s)
    seen = home(w, "ann", 100, other)
    assert oldest not in seen and seen[-20:] == oracle(w.graph, w.posts, w.users["ann"])[-20:]


# ---- kept pages: a post pushed after a newer one shows at once --------------------------------------


def _servers(settings: Settings, threshold: int = 100):
    """A reader keeping pages (frozen clock: nothing lapses), and another server's post service."""
    from sixfold.feed.graph import FollowGraph
    from sixfold.feed.posts import PostService
    from sixfold.feed.timelines import AuthorCache, TimelineReader
    from sixfold.feed.users import UserDirectory

    s = replace(settings, feed_celebrity_threshold=threshold)
    store, bus = open_store(s), open_bus(s)
    users = UserDirectory(store)
    reader = TimelineReader(store, threshold, users, AuthorCache(store, ttl_s=2.0, clock=lambda: 1000.0),
                            page_cache_s=30.0)
    return store, users, reader, FollowGraph(store, bus, threshold, users), PostService(store, bus, users)


@pytest.mark.unit
def test_a_post_pushed_after_a_newer_one_shows_at_once(settings: Settings) -> None:
    """Two servers, a slow consumer: p1 < p2 are created, p2 is pushed first, p1 after a read."""
    from sixfold.feed.fanout import fanout_post

    store, users, reader, graph, poster = _servers(settings)
    ann, bob = users.create("ann")["user_id"], users.create("bob")["user_id"]
    graph.follow(ann, bob)
    p1, p2 = (poster.create(bob, caption)["post_id"] for caption in ("first", "second"))
    row = {p: store.get(POSTS, {"post_id": p}) for p in (p1, p2)}

    def read() -> list[int]:
        return [p["post_id"] for p in reader.timeline(ann, 20)["posts"]]

    fanout_post(store, row[p2], 100)
    assert read() == [p2]
    fanout_post(store, row[p1], 100)
    assert read() == [p2, p1]  # not hidden until the kept page lapses
    store.close()


@pytest.mark.unit
@hsettings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(order=st.permutations(range(6)), limit=st.sampled_from([1, 2, 4, 20]))
def test_kept_pages_show_every_push_in_any_order(settings: Settings, order: list[int], limit: int) -> None:
    """Whatever order fanout pushes six posts in, every walk (kept pages included) is the pushed set."""
    from sixfold.feed.fanout import fanout_post

    store, users, reader, graph, poster = _servers(settings)
    ann, bob, cat = (users.create(f"{n}{uuid.uuid4().hex[:12]}")["user_id"] for n in ("ann", "bob", "cat"))
    graph.follow(ann, bob)
    graph.follow(ann, cat)
    made = [poster.create((bob, cat)[i % 2], f"p{i}")["post_id"] for i in range(6)]
    pushed: list[int] = []

    def walk() -> list[int]:
        seen, cursor = [], None
        while True:
            page = reader.timeline(ann, limit, cursor)
            seen += [p["post_id"] for p in page["posts"]]
            if (cursor := page["next_cursor"]) is None:
                return seen

    for i in order:
        fanout_post(store, store.get(POSTS, {"post_id": made[i]}), 100)
        pushed.append(made[i])
        assert walk() == sorted(pushed, reverse=True)
        assert walk() == sorted(pushed, reverse=True)  # the same again, from kept pages
    store.close()


# ---- live search: the fanout consumer indexes, deletion unindexes -----------------------------------------
@pytest.mark.unit
def test_a_post_is_found_by_hashtag_and_place_once_the_consumer_ran_and_gone_once_deleted(settings: Settings) -> None:
    w = make_world(settings, threshold=100)
    w.user("ann")
    at = {"lat": 40.7128, "lon": -74.0060}
    post = w.post("ann", "bagels", hashtags=["#NYC", "food"], geo=at)
    w.post("ann", "no tags, no place")

    def tagged(tag: str) -> list[int]:
        return [p["post_id"] for p in w.client.get(f"/v1/search/hashtags/{tag}").json()["posts"]]

    def near(radius_km: float) -> list[int]:
        answer = w.client.get("/v1/search/geo", params={**at, "radius_km": radius_km}).json()
        return [p["post_id"] for p in answer["posts"]]

    assert tagged("nyc") == [] and near(1) == []
    w.pump()  # one pass of the consumer, no index job
    assert tagged("nyc") == tagged("Food") == [post]
    assert near(0.5) == near(50) == [post]
    assert w.as_("ann").delete(f"/v1/posts/{post}").status_code == 200
    assert tagged("nyc") == tagged("food") == near(50) == []
    w.pump()
    assert tagged("nyc") == near(50) == []
    index_rows = [r for table in ("hashtag_posts", "geo_posts") for r in open_store(w.settings).scan(SERVING_TABLES[table])]
    assert index_rows == []


@pytest.mark.unit
def test_live_index_rows_answer_searches_like_the_brute_force(settings: Settings) -> None:
    from sixfold.feed.search import index_posts, search_geo, search_hashtag

    posts = hand_made_posts()
    store = open_store(settings)
    store.upsert_many(POSTS, posts)
    written = index_posts(store, posts)
    assert index_posts(store, posts) == written  # a replay writes the same rows, no more
    assert written == len(store.scan(SERVING_TABLES["hashtag_posts"])) + len(store.scan(SERVING_TABLES["geo_posts"]))
    for tag in TAGS:
        assert [p["post_id"] for p in search_hashtag(store, tag, 100)["posts"]] == expected_tag(posts, tag)
    for lat, lon in CENTRES:
        for radius in (0.5, 3.0, 25.0, 150.0):
            got, cursor = [], None
            while True:
                page = search_geo(store, lat, lon, radius, 7, cursor)
                got += [p["post_id"] for p in page["posts"]]
                if (cursor := page["next_cursor"]) is None:
                    break
            assert got == expected_geo(posts, lat, lon, radius), (lat, lon, radius)
    store.close()


@pytest.mark.spark
def test_live_index_rows_are_the_index_jobs_rows(spark) -> None:
    from pyspark.sql import Row

    from schemas.records import POST
    from sixfold.feed.search import geo_index, geo_rows, hashtag_index, hashtag_rows
    from sixfold.platform.schema import spark_struct

    posts = hand_made_posts()
    frame = spark.createDataFrame([Row(**p) for p in posts], spark_struct(POST))
    assert sorted(tuple(r.asDict().values()) for r in hashtag_index(frame).collect()) == \
        sorted(tuple(r.values()) for p in posts for r in hashtag_rows(p))
    assert sorted(tuple(r.asDict().values()) for r in geo_index(frame).collect()) == \
        sorted(tuple(r.values()) for p in posts for r in geo_rows(p))


# ---- the offline jobs after follows and deletions ---------------------------------------------------------
@pytest.mark.spark
def test_the_offline_jobs_agree_with_backfills_and_never_bring_a_deleted_post_back(spark, settings: Settings) -> None:
    from sixfold.feed.search import build_search_index
    from sixfold.feed.timeline_job import check_sample, generate_timelines

    w = make_world(settings, threshold=3)
    for name in ("ann", "bob", "cat", "dan"):
        w.user(name)
    for a, b in [("ann", "bob"), ("cat", "bob"), ("dan", "cat")]:
        w.follow(a, b)
    for i in range(9):
        w.post(("bob", "cat", "ann")[i % 3], f"p{i}", hashtags=["daily"])
    w.pump()
    w.follow("dan", "bob")  # bob's recent posts now, the job's window later: the same rows
    gone = [p for p, a in w.posts if a == w.users["bob"]][1]
    assert w.as_("bob").delete(f"/v1/posts/{gone}").status_code == 200
    w.posts.remove((gone, w.users["bob"]))
    w.pump()
    store = open_store(w.settings)
    counts = generate_timelines(spark, w.settings, store, per_user=500)
    assert counts["written"] == 0  # fanout, the follow and the deletion left nothing to repair
    for name, uid in w.users.items():
        assert stored_timeline(w.settings, uid) == pushed_oracle(w.graph, w.posts, uid, 3, 500), name
        assert home(w, name) == oracle(w.graph, w.posts, uid), name
    assert check_sample(w.settings, store, sample=10)["sampled"] == 3
    build_search_index(spark, w.settings, store)
    assert [p["post_id"] for p in w.client.get("/v1/search/hashtags/daily", params={"limit": 100}).json()["posts"]] \
        == sorted((p for p, _a in w.posts), reverse=True)
    assert gone not in {r["post_id"] for r in store.scan(SERVING_TABLES["hashtag_posts"])}
    store.close()


# ---- degradation: the last page while the store fails ---------------------------------------------------
class FailingReads:
    """Fault injection on the app's real store: while `down`, every read raises what a store past its timeout
    or behind an open breaker raises (ServiceUnavailable); writes too."""

    METHODS = ("get", "get_many", "query", "scan", "upsert", "upsert_many", "delete")

    def __init__(self, store) -> None:
        self.store, self.down = store, False
        self.real = {name: getattr(store, name) for name in self.METHODS if hasattr(store, name)}
        for name, method in self.real.items():
            setattr(store, name, self._guarded(method))

    def _guarded(self, method):
        from sixfold.platform.errors import ServiceUnavailable

        def call(*args, **kwargs):
            if self.down:
                raise ServiceUnavailable("store", "the test's", "timed out (injected)", "wait")
            return method(*args, **kwargs)
        return call


@pytest.mark.unit
def test_timelines_answer_the_last_page_marked_stale_while_the_store_fails(settings: Settings) -> None:
    from sixfold.platform.app_state import app_store

    w = make_world(replace(settings, feed_page_cache_s=0.0), threshold=100)  # no kept pages: every read hits the store
    for name in ("ann", "bob"):
        w.user(name)
    w.follow("ann", "bob")
    for i in range(5):
        w.post("bob", f"bob {i}")
    w.pump()
    want = oracle(w.graph, w.posts, w.users["ann"])
    ann = w.as_("ann")
    pages = {limit: ann.get(f"/v1/timeline/{w.users['ann']}", params={"limit": limit}).json() for limit in (2, 20)}
    assert [p["post_id"] for p in pages[20]["posts"]] == want and "stale" not in pages[20]

    faults = FailingReads(app_store(w.client.app))
    faults.down = True
    for limit, before in pages.items():
        r = ann.get(f"/v1/timeline/{w.users['ann']}", params={"limit": limit})
        assert r.status_code == 200, r.text
        assert r.json() == {**before, "stale": True}  # the same posts, said to be stale
    never_read = ann.get(f"/v1/timeline/{w.users['ann']}", params={"limit": 3})
    assert never_read.status_code == 503 and "Retry-After" in never_read.headers
    assert w.as_("bob").post("/v1/posts", json={"user_id": w.users["bob"], "caption": "lost?"}).status_code == 503

    faults.down = False
    newest = w.post("bob", "after")
    w.pump()
    fresh = ann.get(f"/v1/timeline/{w.users['ann']}", params={"limit": 20}).json()
    assert "stale" not in fresh and [p["post_id"] for p in fresh["posts"]] == [newest, *want]
