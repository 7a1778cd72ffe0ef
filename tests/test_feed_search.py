"""Feed search: geohash properties, the Spark index job against brute-force searches, the generator.

Every expected answer is computed here in plain Python over the hand-made posts (tags contained,
haversine distance, newest first), never read back from the code under test.
"""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.feed import geo
from sixfold.feed.generate import generate, write
from sixfold.feed.search import (
    INDEX_PRECISION,
    build_search_index,
    geohash_column,
    search_geo,
    search_hashtag,
)
from sixfold.platform.ids import EPOCH_MS, SEQUENCE_BITS, WORKER_BITS
from sixfold.platform.lake import ArrowLake
from sixfold.platform.store import SQLiteStore

lat_st = st.floats(-90, 90, allow_nan=False)
lon_st = st.floats(-180, 180, allow_nan=False)


# ---- geohash (unit) -----------------------------------------------------------------------------
@pytest.mark.unit
def test_known_geohashes() -> None:
    assert geo.encode(57.64911, 10.40744, 11) == "u4pruydqqvj"  # the Wikipedia example
    assert geo.encode(48.8584, 2.2945, 6) == "u09tun"
    assert geo.encode(-90, -180, 4) == "0000" and geo.encode(90, 180, 4) == "zzzz"
    lat, lon, dlat, dlon = geo.decode("u4pruydqqvj")
    assert abs(lat - 57.64911) <= dlat and abs(lon - 10.40744) <= dlon
    assert geo.haversine_km(48.8566, 2.3522, 51.5074, -0.1278) == pytest.approx(343.5, abs=1.0)


@pytest.mark.unit
@hsettings(max_examples=300, deadline=None)
@given(lat=lat_st, lon=lon_st, precision=st.integers(1, 12))
def test_encode_decode_round_trip_within_the_cells_error(lat: float, lon: float, precision: int) -> None:
    cell = geo.encode(lat, lon, precision)
    assert len(cell) == precision and set(cell) <= set(geo.BASE32)
    c_lat, c_lon, e_lat, e_lon = geo.decode(cell)
    assert abs(c_lat - lat) <= e_lat + 1e-12 and abs(c_lon - lon) <= e_lon + 1e-12
    assert geo.encode(c_lat, c_lon, precision) == cell
    assert geo.encode(lat, lon, precision + 1 if precision < 12 else 12).startswith(cell[:precision])


def destination(lat: float, lon: float, bearing_deg: float, km: float) -> tuple[float, float]:
    """The point `km` from (lat, lon) along an initial bearing, on the sphere."""
    d = km / geo.EARTH_RADIUS_KM
    p1, l1, b = math.radians(lat), math.radians(lon), math.radians(bearing_deg)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(b))))
    l2 = l1 + math.atan2(math.sin(b) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    lon2 = (math.degrees(l2) + 540.0) % 360.0 - 180.0
    return max(-90.0, min(90.0, math.degrees(p2))), max(-180.0, min(180.0, lon2))


@pytest.mark.unit
@hsettings(max_examples=150, deadline=None)
@given(lat=st.floats(-85, 85), lon=lon_st, radius=st.floats(0.01, 1000), seed=st.integers(0, 2**32 - 1),
       max_precision=st.sampled_from([6, 12]))
def test_every_point_within_the_radius_is_in_a_covering_cell(lat: float, lon: float, radius: float, seed: int,
                                                              max_precision: int) -> None:
    cells = geo.cells_covering(lat, lon, radius, max_precision)
    precision = len(cells[0])
    assert all(len(c) == precision for c in cells) and precision <= max_precision
    assert geo.encode(lat, lon, precision) in cells
    assert len(cells) <= 16  # a handful of partitions, not a scan
    rng = random.Random(seed)
    for _ in range(200):
        # half on the circle's rim (the hard case), half anywhere inside
        km = radius * (1.0 if rng.random() < 0.5 else math.sqrt(rng.random())) * (1 - 1e-9)
        p_lat, p_lon = destination(lat, lon, rng.uniform(0, 360), km)
        if geo.haversine_km(lat, lon, p_lat, p_lon) <= radius:
            assert geo.encode(p_lat, p_lon, precision) in cells, (p_lat, p_lon, cells)


@pytest.mark.unit
def test_covering_near_a_pole_and_the_antimeridian() -> None:
    for lat, lon, radius in ((89.95, 10.0, 30.0), (-89.99, -170.0, 5.0), (0.0, 179.999, 20.0), (10.0, -180.0, 50.0)):
        cells = geo.cells_covering(lat, lon, radius, 6)
        rng = random.Random(1)
        for _ in range(2000):
            p_lat, p_lon = destination(lat, lon, rng.uniform(0, 360), radius * math.sqrt(rng.random()) * 0.999999)
            assert geo.encode(p_lat, p_lon, len(cells[0])) in cells


@pytest.mark.unit
@pytest.mark.parametrize("bad", [(91, 0, 1), (0, -181, 1), (0, 0, 0), (0, 0, -3), (0, 0, 5000), (float("nan"), 0, 1)])
def test_bad_circles_are_refused_with_the_reason(settings, bad) -> None:
    from sixfold.api.app import create_app

    lat, lon, radius = bad
    with TestClient(create_app(settings)) as client:
        answer = client.get("/v1/search/geo", params={"lat": lat, "lon": lon, "radius_km": radius})
    assert answer.status_code == 422
    error = answer.json()["error"]
    assert error["code"] == "invalid_request" and ("lat" in error["message"] or "lon" in error["message"]
                                                   or "radius_km" in error["message"])


# ---- the index job against brute force (spark) ---------------------------------------------------
START = datetime(2026, 11, 20, 8, 0, tzinfo=timezone.utc)
TAGS = ["sunset", "food", "travel", "cats", "nyc"]
# centres: Manhattan, an exact precision-5 cell corner near Paris, a point on the antimeridian-free
# edge of the map (lon 179.9)
PARIS_CORNER = geo.bounds(geo.encode(48.8566, 2.3522, 5))
CENTRES = [(40.7128, -74.0060), (PARIS_CORNER[0], PARIS_CORNER[2]), (-16.5, 179.9)]


def post_id_at(ms: int, seq: int) -> int:
    return ((ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (5 << SEQUENCE_BITS) | seq


def hand_made_posts() -> list[dict]:
    rng = random.Random(42)
    posts = []
    for i in range(90):
        at = START + timedelta(minutes=4 * i + rng.randint(0, 3), milliseconds=rng.randint(0, 999))
        ms = int(at.timestamp() * 1000)
        tags = rng.sample(TAGS, rng.randint(0, 3))
        written = [rng.choice([t, "#" + t, t.upper(), " #" + t.title()]) for t in tags]
        lat = lon = None
        if rng.random() < 0.8:
            c_lat, c_lon = CENTRES[i % len(CENTRES)]
            lat, lon = destination(c_lat, c_lon, rng.uniform(0, 360), rng.choice([0.3, 2, 8, 30, 120]) * rng.random())
        posts.append({"post_id": post_id_at(ms, i % 7), "author_id": 100 + i % 9, "created_at": at,
                      "caption": f"post {i}", "media_ids": [str(1000 + i)], "hashtags": written,
                      "lat": lat, "lon": lon})
    return posts


def expected_tag(posts: list[dict], tag: str) -> list[int]:
    hits = [p["post_id"] for p in posts
            if tag in {h.strip().lstrip("#").strip().lower() for h in p["hashtags"]}]
    return sorted(hits, reverse=True)


def expected_geo(posts: list[dict], lat: float, lon: float, radius: float) -> list[int]:
    hits = [p["post_id"] for p in posts if p["lat"] is not None
            and geo.haversine_km(lat, lon, p["lat"], p["lon"]) <= radius]
    return sorted(hits, reverse=True)


def all_pages(fetch, limit: int) -> tuple[list[int], list[dict]]:
    ids, shown, cursor, pages = [], [], None, 0
    while True:
        page = fetch(limit, cursor)
        assert len(page["posts"]) <= limit
        ids += [p["post_id"] for p in page["posts"]]
        shown += page["posts"]
        cursor = page["next_cursor"]
        pages += 1
        assert pages < 200
        if cursor is None:
            return ids, shown
        assert len(page["posts"]) == limit


@pytest.fixture
def indexed(spark, settings):
    posts = hand_made_posts()
    ArrowLake(settings).overwrite_partitions(LAKE_TABLES["posts"], posts)
    store = SQLiteStore(settings.sqlite_path)
    store.upsert_many(SERVING_TABLES["posts"], posts)
    counts = build_search_index(spark, settings, store)
    again = build_search_index(spark, settings, store)  # idempotent: a rerun changes nothing
    assert again == counts
    yield store, posts, counts
    store.close()


@pytest.mark.spark
def test_spark_geohash_agrees_with_python(spark) -> None:
    from pyspark.sql import functions as F

    rng = random.Random(3)
    points = [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(500)]
    points += [(-90.0, -180.0), (90.0, 180.0), (0.0, 0.0), PARIS_CORNER[:1] + PARIS_CORNER[2:3]]
    frame = spark.createDataFrame(points, "lat double, lon double")
    got = frame.select("lat", "lon", geohash_column(F.col("lat"), F.col("lon"), 9).alias("cell")).collect()
    assert {(r.lat, r.lon): r.cell for r in got} == {(la, lo): geo.encode(la, lo, 9) for la, lo in points}


@pytest.mark.spark
def test_hashtag_search_equals_brute_force(indexed) -> None:
    store, posts, counts = indexed
    assert counts["hashtag_rows"] == sum(len(expected_tag(posts, t)) for t in TAGS)
    for tag in TAGS:
        want = expected_tag(posts, tag)
        assert len(want) >= 10
        for limit in (1, 7, 100):
            got, shown = all_pages(lambda n, c, t=tag: search_hashtag(store, "#" + t.upper(), n, c), limit)
            assert got == want
        by_id = {p["post_id"]: p for p in posts}
        assert all(s["caption"] == by_id[s["post_id"]]["caption"] and s["media"] == by_id[s["post_id"]]["media_ids"]
                   and s["author_id"] == by_id[s["post_id"]]["author_id"] for s in shown)
    assert search_hashtag(store, "nosuchtag") == {"tag": "nosuchtag", "posts": [], "next_cursor": None}


@pytest.mark.spark
def test_geo_search_equals_brute_force(indexed) -> None:
    store, posts, counts = indexed
    located = [p for p in posts if p["lat"] is not None]
    assert counts["geo_rows"] == INDEX_PRECISION * len(located)
    checked = 0
    for lat, lon in CENTRES:
        for radius in (0.5, 1.0, 3.0, 10.0, 25.0, 80.0, 150.0, 1000.0):
            want = expected_geo(posts, lat, lon, radius)
            got, shown = all_pages(lambda n, c, at=(lat, lon, radius): search_geo(store, *at, n, c), 6)
            assert got == want, (lat, lon, radius)
            assert all(geo.haversine_km(lat, lon, s["lat"], s["lon"]) <= radius for s in shown)
            checked += len(want)
    assert checked > 100


@pytest.mark.spark
def test_search_endpoints(indexed, settings) -> None:
    from sixfold.api.app import create_app

    _, posts, _ = indexed
    with TestClient(create_app(settings)) as client:
        page = client.get("/v1/search/hashtags/sunset", params={"limit": 5}).json()
        assert [p["post_id"] for p in page["posts"]] == expected_tag(posts, "sunset")[:5]
        assert set(page["posts"][0]) == {"post_id", "author_id", "created_at", "caption", "media", "hashtags"}
        follow = client.get("/v1/search/hashtags/sunset", params={"limit": 5, "before": page["next_cursor"]}).json()
        assert [p["post_id"] for p in follow["posts"]] == expected_tag(posts, "sunset")[5:10]
        assert client.get("/v1/search/hashtags/sunset", params={"limit": 101}).status_code == 422
        assert client.get("/v1/search/hashtags/sunset", params={"before": "nonsense!"}).status_code == 422
        lat, lon = CENTRES[0]
        near = client.get("/v1/search/geo", params={"lat": lat, "lon": lon, "radius_km": 10}).json()
        assert [p["post_id"] for p in near["posts"]] == expected_geo(posts, lat, lon, 10)[:20]
        assert {"lat", "lon", "caption", "hashtags"} <= set(near["posts"][0])


@pytest.mark.spark
def test_geo_search_reads_only_the_covering_partitions(indexed) -> None:
    store, _, _ = indexed
    seen: list[dict] = []
    real = store.query

    class Spy:
        def __getattr__(self, name):
            return getattr(store, name)

        def query(self, table, partition, limit=None, after=None):
            seen.append(partition)
            return real(table, partition, limit, after)

    lat, lon = CENTRES[0]
    search_geo(Spy(), lat, lon, 5.0, 20)
    assert {p["cell"] for p in seen} <= set(geo.cells_covering(lat, lon, 5.0, INDEX_PRECISION))


# ---- the generator --------------------------------------------------------------------------------
END = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.mark.unit
def test_generator_is_deterministic_and_power_law() -> None:
    a = generate(3000, 2000, 5, seed=11, end=END)
    b = generate(3000, 2000, 5, seed=11, end=END)
    c = generate(3000, 2000, 5, seed=12, end=END)
    assert a == b and a != c
    counts = sorted(a.follower_counts().values())
    median = counts[len(counts) // 2]
    assert counts[-1] >= 50 * max(1, median)  # celebrities
    assert len({p["post_id"] for p in a.posts}) == 2000 and len({u["user_id"] for u in a.users}) == 3000
    assert all(f["follower_id"] != f["followee_id"] for f in a.follows)
    ids = [p["post_id"] for p in a.posts]
    assert ids == sorted(ids) and all(p["created_at"] < END for p in a.posts)
    assert any(p["lat"] is not None for p in a.posts) and any(p["hashtags"] for p in a.posts)


@pytest.mark.unit
def test_generator_writes_consistent_rows(settings) -> None:
    data = generate(400, 300, 0, seed=5, end=END)
    store = SQLiteStore(settings.sqlite_path)
    done: list[int] = []
    result = write(settings, data, store, progress=done.append)
    assert result["posts"] == 300 and result["users"] == 400 and result["followers"] == len(data.follows)
    top = result["top_follower_counts"]
    assert len(top) == 5 and top[0]["followers"] == max(data.follower_counts().values())
    for user in data.users:
        uid = user["user_id"]
        followers = store.query(SERVING_TABLES["followers"], {"followee_id": uid})
        count = store.get(SERVING_TABLES["follower_counts"], {"user_id": uid})
        assert count is not None and count["followers"] == len(followers)
    assert len(ArrowLake(settings).read(LAKE_TABLES["posts"])) == 300
    events = ArrowLake(settings).read(LAKE_TABLES["follow_events"]).to_pylist()
    assert len(events) == len(data.follows) and {e["action"] for e in events} == {"follow"}
    store.close()
