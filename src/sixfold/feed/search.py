"""Hashtag and geo search: the Spark index job over the lake's posts, and the reads that serve it.

The index job turns `feed/posts` into two serving tables. `hashtag_posts` holds one row per
(tag, post): tags lower case, without '#'. `geo_posts` holds one row per (cell, post) for every
prefix of the post's geohash up to INDEX_PRECISION, so a query reads whole partitions of the
precision `cells_covering` chose for its radius (a few cells), never a scan of all posts.
Rows are upserted by key, so rerunning the job over the same hours changes nothing.

The job is the repair path. Live, the fanout consumer writes the same rows for each post it fans
out (`index_posts`, the same normalisation and geohash in plain Python), so a post is found within
a second or two; a deleted post's rows are removed at once (`unindex_post`), and the job skips
the posts listed in `feed/post_deletions`, so a rerun never brings them back.

Reads are newest first (post_id descending, what the sequencer guarantees is time order) with
an opaque cursor: the last post id shown, base64url encoded.
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.feed import geo
from sixfold.feed.users import FeedError
from sixfold.platform.schema import to_json_value
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

    from sixfold.platform.store import ServingStore

INDEX_PRECISION = 6  # cells of ~1.2 km x 0.6 km; a post is also indexed under each shorter prefix
MAX_RADIUS_KM = 1000.0
MAX_TAG_LENGTH = SERVING_TABLES["hashtag_posts"].record.field("tag").max_length or 100
WRITE_BATCH = 5000
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


class SearchError(FeedError):
    """Bad search input; `status` is the HTTP status a door answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(status, message)


def normalize_tag(tag: str) -> str:
    """'#Sunset ' -> 'sunset': how tags are indexed and looked up."""
    return tag.strip().lstrip("#").strip().lower()


# ---- Spark: pure transformations --------------------------------------------------------------
def hashtag_index(posts: DataFrame) -> DataFrame:
    """posts -> HASHTAG_POST rows (tag, post_id, author_id), one per distinct normalised tag."""
    from pyspark.sql import functions as F

    tag = F.lower(F.trim(F.regexp_replace(F.trim(F.col("tag")), r"^#+", "")))
    return (
        posts.where(F.col("hashtags").isNotNull())
        .select(F.explode("hashtags").alias("tag"), "post_id", "author_id")
        .select(tag.alias("tag"), "post_id", "author_id")
        .where((F.length("tag") > 0) & (F.length("tag") <= MAX_TAG_LENGTH))
        .dropDuplicates(["tag", "post_id"])
    )


def geohash_column(lat: Column, lon: Column, precision: int) -> Column:
    """`geo.encode` as a Spark expression (same floor arithmetic, so both agree on every point)."""
    from pyspark.sql import functions as F

    lat_bits, lon_bits = geo.axis_bits(precision)
    rows, cols = 1 << lat_bits, 1 << lon_bits
    row = F.least(F.floor((lat + F.lit(90.0)) / F.lit(180.0) * F.lit(float(rows))), F.lit(rows - 1)).cast("long")
    col = F.least(F.floor((lon + F.lit(180.0)) / F.lit(360.0) * F.lit(float(cols))), F.lit(cols - 1)).cast("long")
    alphabet = F.array(*[F.lit(c) for c in geo.BASE32])
    chars = []
    for char in range(precision):
        value: Any = F.lit(0).cast("long")
        for k in range(5 * char, 5 * char + 5):
            source, width = (col, lon_bits) if k % 2 == 0 else (row, lat_bits)
            bit = F.shiftright(source, width - 1 - k // 2).bitwiseAND(F.lit(1))
            value = value * 2 + bit
        chars.append(F.element_at(alphabet, (value + 1).cast("int")))
    return F.concat(*chars)


def geo_index(posts: DataFrame, precision: int = INDEX_PRECISION) -> DataFrame:
    """posts with a valid lat/lon -> GEO_POST rows (cell, post_id, lat, lon), one per geohash
    prefix of length 1..precision."""
    from pyspark.sql import functions as F

    located = posts.where(
        F.col("lat").isNotNull() & F.col("lon").isNotNull()
        & F.col("lat").between(-90.0, 90.0) & F.col("lon").between(-180.0, 180.0)
    )
    full = geohash_column(F.col("lat"), F.col("lon"), precision)
    prefixes = F.array(*[F.substring(F.col("full"), 1, n) for n in range(1, precision + 1)])
    return (
        located.select("post_id", "lat", "lon", full.alias("full"))
        .select(F.explode(prefixes).alias("cell"), "post_id", "lat", "lon")
    )


def live_posts(posts: DataFrame, deletions: DataFrame) -> DataFrame:
    """posts without the ones `deletions` (POST_DELETION rows) lists: what may be indexed or pushed."""
    return posts.join(deletions.select("post_id"), "post_id", "left_anti")


def _write(store: ServingStore, table_name: str, rows: Iterator[Any], batch: int = WRITE_BATCH) -> int:
    table = SERVING_TABLES[table_name]
    written, chunk = 0, []
    for row in rows:
        chunk.append(row.asDict())
        if len(chunk) >= batch:
            written += store.upsert_many(table, chunk)
            chunk = []
    if chunk:
        written += store.upsert_many(table, chunk)
    return written


def build_search_index(spark: SparkSession, settings: Settings, store: ServingStore,
                       start: datetime | str | None = None, end: datetime | str | None = None,
                       precision: int = INDEX_PRECISION) -> dict[str, int]:
    """Index the lake's posts in [start, end) (open bounds: all) into hashtag_posts and geo_posts."""
    from sixfold.platform.lake import SparkLake

    lake = SparkLake(spark, settings)
    # a deletion may come any time after the post: all of them, not the interval's
    posts = live_posts(lake.read(LAKE_TABLES["posts"], start, end), lake.read(LAKE_TABLES["post_deletions"]))
    tags = _write(store, "hashtag_posts", hashtag_index(posts).toLocalIterator())
    cells = _write(store, "geo_posts", geo_index(posts, precision).toLocalIterator())
    return {"hashtag_rows": tags, "geo_rows": cells}


# ---- live: one post's rows, in plain Python (the fanout consumer and deletions) ---------------------
def hashtag_rows(post: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HASHTAG_POST rows of one post, as `hashtag_index` makes them: one per distinct normalised tag."""
    tags = {normalize_tag(t) for t in post.get("hashtags") or ()}
    return [{"tag": t, "post_id": post["post_id"], "author_id": post["author_id"]}
            for t in sorted(tags) if 0 < len(t) <= MAX_TAG_LENGTH]


def geo_rows(post: Mapping[str, Any], precision: int = INDEX_PRECISION) -> list[dict[str, Any]]:
    """GEO_POST rows of one post, as `geo_index` makes them: one per geohash prefix, none without a valid point."""
    lat, lon = post.get("lat"), post.get("lon")
    if lat is None or lon is None or not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return []
    full = geo.encode(lat, lon, precision)
    return [{"cell": full[:n], "post_id": post["post_id"], "lat": lat, "lon": lon} for n in range(1, precision + 1)]


def index_posts(store: ServingStore, posts: Iterable[Mapping[str, Any]]) -> int:
    """Write the posts' hashtag and geo rows (upserts by key: a replay writes the same rows); returns how many."""
    posts = list(posts)
    tags = [r for p in posts for r in hashtag_rows(p)]
    cells = [r for p in posts for r in geo_rows(p)]
    written = 0
    for table, rows in ((SERVING_TABLES["hashtag_posts"], tags), (SERVING_TABLES["geo_posts"], cells)):
        for start in range(0, len(rows), WRITE_BATCH):
            written += store.upsert_many(table, rows[start:start + WRITE_BATCH])
    return written


def unindex_post(store: ServingStore, post: Mapping[str, Any]) -> None:
    """Delete one post's hashtag and geo rows (`post`: its row or its POST_DELETION, which carries the
    same hashtags and point); deleting what is gone already changes nothing."""
    for row in hashtag_rows(post):
        store.delete(SERVING_TABLES["hashtag_posts"], {"tag": row["tag"], "post_id": row["post_id"]})
    for row in geo_rows(post):
        store.delete(SERVING_TABLES["geo_posts"], {"cell": row["cell"], "post_id": row["post_id"]})


# ---- serving: reads ----------------------------------------------------------------------------
def encode_cursor(post_id: int) -> str:
    return base64.urlsafe_b64encode(f"p:{post_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("p:"):
            raise ValueError
        return int(text[2:])
    except ValueError:
        raise SearchError(f"before={cursor!r} is not a cursor from this endpoint; pass next_cursor as given") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise SearchError(f"limit must be 1..{MAX_LIMIT}, got {limit}")
    return limit


def _newest_before(store: ServingStore, table_name: str, partition: dict[str, Any], before: int | None,
                   wanted: int, keep: Callable[[dict[str, Any]], bool] = lambda _row: True) -> list[dict[str, Any]]:
    """Up to `wanted` rows of one partition with post_id < before that `keep` accepts, newest first:
    pages of the partition read from the cursor on (the store's `after`), never from the top again."""
    table = SERVING_TABLES[table_name]
    fetch = max(wanted + 1, 32)
    hits: list[dict[str, Any]] = []
    after = before
    while len(hits) < wanted:
        rows = store.query(table, partition, limit=fetch, after=after)
        hits.extend(r for r in rows if keep(r))
        if len(rows) < fetch:
            break
        after = rows[-1]["post_id"]
    return hits[:wanted]


def post_json(row: dict[str, Any]) -> dict[str, Any]:
    """A post as every feed endpoint answers it (media: the media ids, strings)."""
    created = row["created_at"]
    return {
        "post_id": row["post_id"],
        "author_id": row["author_id"],
        "created_at": to_json_value(SERVING_TABLES["posts"].record.field("created_at"), created),
        "caption": row.get("caption"),
        "media": list(row.get("media_ids") or []),
        "hashtags": list(row.get("hashtags") or []),
    }


def _page(store: ServingStore, post_ids: Iterable[int], limit: int,
          extra: Callable[[int], dict[str, Any]] = lambda _pid: {}) -> dict[str, Any]:
    """Shape a page from candidate ids (newest first, one more than `limit` if there is a next page)."""
    ids = list(post_ids)
    posts_table = SERVING_TABLES["posts"]
    posts = []
    for post_id in ids[:limit]:
        row = store.get(posts_table, {"post_id": post_id})
        if row is not None:  # indexed but gone from serving (deleted): skip it, keep paging
            posts.append({**post_json(row), **extra(post_id)})
    next_cursor = encode_cursor(ids[limit - 1]) if len(ids) > limit else None
    return {"posts": posts, "next_cursor": next_cursor}


def search_hashtag(store: ServingStore, tag: str, limit: int = DEFAULT_LIMIT, before: str | None = None
                   ) -> dict[str, Any]:
    """Posts carrying `tag`, newest first: {"tag", "posts", "next_cursor"}."""
    check_limit(limit)
    clean = normalize_tag(tag)
    if not clean or len(clean) > MAX_TAG_LENGTH:
        raise SearchError(f"tag must be 1..{MAX_TAG_LENGTH} characters after removing '#', got {tag!r}")
    rows = _newest_before(store, "hashtag_posts", {"tag": clean}, decode_cursor(before), limit + 1)
    return {"tag": clean, **_page(store, (r["post_id"] for r in rows), limit)}


def check_circle(lat: float, lon: float, radius_km: float) -> None:
    import math

    if math.isnan(lat) or not -90.0 <= lat <= 90.0:
        raise SearchError(f"lat must be a latitude within -90..90, got {lat}")
    if math.isnan(lon) or not -180.0 <= lon <= 180.0:
        raise SearchError(f"lon must be a longitude within -180..180, got {lon}")
    if math.isnan(radius_km) or not 0.0 < radius_km <= MAX_RADIUS_KM:
        raise SearchError(f"radius_km must be more than 0 and at most {MAX_RADIUS_KM:g}, got {radius_km}")


def search_geo(store: ServingStore, lat: float, lon: float, radius_km: float, limit: int = DEFAULT_LIMIT,
               before: str | None = None) -> dict[str, Any]:
    """Posts within radius_km of (lat, lon), newest first: reads only the covering cells' partitions."""
    check_limit(limit)
    check_circle(lat, lon, radius_km)
    cursor = decode_cursor(before)
    cells = geo.cells_covering(lat, lon, radius_km, max_precision=INDEX_PRECISION)

    def inside(row: dict[str, Any]) -> bool:
        return geo.haversine_km(lat, lon, row["lat"], row["lon"]) <= radius_km

    found: dict[int, dict[str, Any]] = {}
    for cell in cells:  # the newest limit+1 hits overall are among each cell's newest limit+1
        for row in _newest_before(store, "geo_posts", {"cell": cell}, cursor, limit + 1, inside):
            found[row["post_id"]] = row
    newest = heapq.nlargest(limit + 1, found)
    page = _page(store, newest, limit, lambda pid: {"lat": found[pid]["lat"], "lon": found[pid]["lon"]})
    return {"lat": lat, "lon": lon, "radius_km": radius_km, **page}
