"""Offline timeline generation: every active user's pushed timeline, rebuilt from the lake.

The course's answer to slow pull timelines is to generate them offline. The job reads the
graph's history (`feed/follow_events`) and every post (`feed/posts`) but the deleted ones
(`feed/post_deletions`), rebuilds the follow graph as it is now (the latest event of each pair
wins), and keeps each follower's newest `per_user` posts by authors they follow who are not
celebrities (celebrities are pulled at read time). One's own posts are not rows here: readers
merge them from `author_posts`.

Writing is idempotent and repairing: for each user, the entries missing from `timelines` are
written and the ones the new graph no longer justifies are deleted (authors unfollowed or turned
celebrity, entries older than a full window, and deleted posts); a rerun on an unchanged lake
writes nothing. Entries fanout pushed after the lake snapshot for followed authors stay; the next
run includes them anyway. Each user whose rows it changed gets a fresh timeline stamp (`stamps`)
afterwards, so pages servers kept show the repair at once. The job also repairs what decides push
or pull: every follower count (a server that
died between an edge and its count leaves one wrong) and the `celebrities` list, listing new
celebrities before the timelines are rewritten and unlisting former ones after, so no author is
neither pushed nor pulled meanwhile.

Pure transformations (DataFrame in, DataFrame out) first; the driver-side write and the
data-quality check (a brute force over a sample of users) after.
"""

from __future__ import annotations

import random
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from sixfold.platform.store import ServingStore

PER_USER = 500
WRITE_BATCH = 5000
TIMELINES = SERVING_TABLES["timelines"]


# ---- Spark: pure transformations --------------------------------------------------------------
def current_follows(follow_events: DataFrame) -> DataFrame:
    """(follower_id, followee_id) pairs that follow now: the latest event of each pair is a follow.

    Two events of a pair at the same instant resolve to the unfollow (never show what may be hidden).
    """
    from pyspark.sql import functions as F

    # The latest event as the greatest (at, rank) of the pair: a hash aggregate, no sort.
    rank = F.when(F.col("action") == "follow", 0).when(F.col("action") == "unfollow", 2).otherwise(1)
    return (
        follow_events.where(F.col("follower_id") != F.col("followee_id"))
        .groupBy("follower_id", "followee_id").agg(F.max(F.struct(F.col("at"), rank.alias("rank"))).alias("latest"))
        .where(F.col("latest.rank") == 0)
        .select("follower_id", "followee_id")
    )


def follower_totals(follows: DataFrame) -> DataFrame:
    """(followee_id, followers): how many followers each followed user has in `follows`."""
    from pyspark.sql import functions as F

    return follows.groupBy("followee_id").agg(F.count("*").alias("followers"))


def celebrity_authors(follows: DataFrame, threshold: int, totals: DataFrame | None = None) -> DataFrame:
    """Authors (columns `author_id`, `followers`) with at least `threshold` followers in `follows`
    (from `totals`, the `follower_totals` of `follows`, when the caller has them already)."""
    from pyspark.sql import functions as F

    totals = follower_totals(follows) if totals is None else totals
    return totals.where(F.col("followers") >= threshold).select(F.col("followee_id").alias("author_id"), "followers")


def pushed_follows(follows: DataFrame, celebrity_authors: DataFrame) -> DataFrame:
    """The follows whose followee is not a celebrity: the edges fanout pushes along."""
    from pyspark.sql import functions as F

    return follows.join(celebrity_authors.select(F.col("author_id").alias("followee_id")), "followee_id", "left_anti")


def timelines(follows: DataFrame, posts: DataFrame, celebrity_authors: DataFrame, per_user: int) -> DataFrame:
    """TIMELINE_ENTRY rows (user_id, post_id, author_id): each follower's newest `per_user` posts by
    the non-celebrity authors they follow."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    if per_user < 1:
        raise ValueError(f"per_user must be at least 1, got {per_user}")
    pushed = pushed_follows(follows, celebrity_authors)
    authored = posts.select("post_id", F.col("author_id").alias("followee_id")).dropDuplicates(["post_id"])
    newest = Window.partitionBy("user_id").orderBy(F.col("post_id").desc())
    return (
        pushed.join(authored, "followee_id")
        .select(F.col("follower_id").alias("user_id"), "post_id", F.col("followee_id").alias("author_id"))
        .withColumn("_rank", F.row_number().over(newest))
        .where(F.col("_rank") <= per_user)
        .select("user_id", "post_id", "author_id")
    )


def user_timeline_rows(active_users: DataFrame, follows: DataFrame, celebrity_authors: DataFrame,
                       entries: DataFrame) -> DataFrame:
    """Flat (user_id, post_id, author_id) rows, everything the writer needs about each active user.

    Three kinds of row, told apart by their nulls: a timeline entry (both set), a pushed followee
    (post_id null), and one marker per active user (both null) so users with neither are visited.
    Flat rows travel to the driver as Arrow columns; nested arrays per user would not.
    """
    from pyspark.sql import functions as F

    pushed = pushed_follows(follows, celebrity_authors).select(
        F.col("follower_id").alias("user_id"), F.lit(None).cast("long").alias("post_id"),
        F.col("followee_id").alias("author_id"))
    markers = active_users.select("user_id", F.lit(None).cast("long").alias("post_id"),
                                  F.lit(None).cast("long").alias("author_id"))
    return markers.unionByName(pushed).unionByName(entries.select("user_id", "post_id", "author_id"))


# ---- driver: generate and write --------------------------------------------------------------
def write_user_timelines(store: ServingStore, user_rows: Iterable[Mapping[str, Any]], per_user: int,
                         progress: Callable[[int], None] | None = None,
                         deleted_posts: frozenset[int] | set[int] = frozenset()) -> dict[str, int]:
    """Write each user's missing entries and delete the ones the graph no longer justifies.

    `user_rows`: {"user_id", "authors": [pushed followees], "entries": [(post_id, author_id)]}.
    Only the difference with the stored partition is written, so a rerun on an unchanged lake
    writes nothing. Entries newer than the lake (pushed by fanout since) stay while their author
    is still pushed to this user and they are inside the window, unless their post is in
    `deleted_posts` (an entry a race between fanout and a deletion left behind).
    """
    from sixfold.feed.stamps import stamp_timelines

    users = entries_total = written = deleted = 0
    pending: list[dict[str, Any]] = []
    changed: set[int] = set()  # users whose rows moved, stamped once their rows are written
    columns = ("post_id", "author_id")
    for row in user_rows:
        user_id, authors = row["user_id"], set(row["authors"] or [])
        entries = row["entries"] or []
        floor = min(p for p, _a in entries) if len(entries) >= per_user else None
        stored: dict[int, int] = {}
        for old in store.query(TIMELINES, {"user_id": user_id}, columns=columns):
            post_id, author_id = old["post_id"], old["author_id"]
            if author_id not in authors or (floor is not None and post_id < floor) or post_id in deleted_posts:
                store.delete(TIMELINES, {"user_id": user_id, "post_id": post_id})
                deleted += 1
                changed.add(user_id)
            else:
                stored[post_id] = author_id
        entries_total += len(entries)
        for post_id, author_id in entries:
            if stored.get(post_id, -1) != author_id:
                pending.append({"user_id": user_id, "post_id": post_id, "author_id": author_id})
                changed.add(user_id)
        if len(pending) >= WRITE_BATCH:
            written += store.upsert_many(TIMELINES, pending)
            pending = []
            stamp_timelines(store, changed)
            changed.clear()
        users += 1
        if progress:
            progress(users)
    if pending:
        written += store.upsert_many(TIMELINES, pending)
    stamp_timelines(store, changed)
    return {"users": users, "entries": entries_total, "written": written, "deleted": deleted}


def staged_user_rows(files: Iterable[Path], batch_rows: int = 65_536) -> Iterator[dict[str, Any]]:
    """Per-user rows for `write_user_timelines` from Parquet files of `user_timeline_rows`.

    Each file must hold whole users with each user's rows together (partitioned and sorted by
    user_id); files are read in record batches, so memory stays at one batch plus one user.
    """
    import numpy as np
    import pyarrow.parquet as pq

    def user(user_id: int, posts: list[Any], authors: list[Any]) -> dict[str, Any]:
        return {"user_id": user_id,
                "authors": [a for p, a in zip(posts, authors) if p is None and a is not None],
                "entries": [(p, a) for p, a in zip(posts, authors) if p is not None]}

    for path in files:
        current: int | None = None
        posts: list[Any] = []
        authors: list[Any] = []
        for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_rows,
                                                       columns=["user_id", "post_id", "author_id"]):
            users = batch.column(0).to_numpy()
            batch_posts, batch_authors = batch.column(1).to_pylist(), batch.column(2).to_pylist()
            cuts = (np.flatnonzero(users[1:] != users[:-1]) + 1).tolist()
            for start, end in zip([0, *cuts], [*cuts, len(users)]):
                user_id = int(users[start])
                if user_id != current:
                    if current is not None:
                        yield user(current, posts, authors)
                    current, posts, authors = user_id, [], []
                posts += batch_posts[start:end]
                authors += batch_authors[start:end]
        if current is not None:
            yield user(current, posts, authors)


def fold_closed_hours(settings: Settings, grace: timedelta = timedelta(minutes=5)) -> dict[str, int]:
    """Compact the landed hours of follows, posts and deletions that closed (with `grace` for late
    batches) into one file each, so the job reads few files; returns the files folded per table."""
    from sixfold.platform.lake import ArrowLake
    from sixfold.platform.landing import compact_closed

    lake, before = ArrowLake(settings), datetime.now(timezone.utc) - grace
    return {name: sum(f["files"] for f in compact_closed(lake, LAKE_TABLES[name], before).values())
            for name in ("follow_events", "posts", "post_deletions")}


def generate_timelines(spark: SparkSession, settings: Settings, store: ServingStore, per_user: int = PER_USER,
                       say: Callable[[str], None] | None = None,
                       progress: Callable[[int], None] | None = None) -> dict[str, int]:
    """Recompute every active user's pushed timeline from the lake into the `timelines` table.

    Active users: everyone the follow history mentions as a follower (someone who unfollowed
    everybody is still visited, so their stale entries go). Spark writes the flat per-user rows,
    partitioned and sorted by user, to a scratch directory; the driver streams them back with
    pyarrow and writes the difference with the store.
    """
    from pyspark.sql import functions as F

    from sixfold.feed.fanout import is_celebrity
    from sixfold.feed.graph import recount_followers, relist_celebrities
    from sixfold.feed.search import live_posts
    from sixfold.platform.lake import SparkLake

    fold_closed_hours(settings)
    lake = SparkLake(spark, settings)
    events = lake.read(LAKE_TABLES["follow_events"]).cache()  # scanned twice: the graph, the active users
    deletions = lake.read(LAKE_TABLES["post_deletions"])
    posts = live_posts(lake.read(LAKE_TABLES["posts"]), deletions)
    deleted = {r["post_id"] for r in deletions.select("post_id").collect()}  # few: posts are rarely deleted
    follows = current_follows(events).cache()
    counted = follower_totals(follows).cache()  # the recount below and the celebrities both read it
    celebrities = celebrity_authors(follows, settings.feed_celebrity_threshold, counted).cache()
    entries = timelines(follows, posts, celebrities, per_user)
    active = events.select(F.col("follower_id").alias("user_id")).distinct()
    rows = user_timeline_rows(active, follows, celebrities, entries)
    totals = {r["followee_id"]: r["followers"] for r in counted.collect()}
    recounted = recount_followers(store, totals)
    celebrity_counts = {a: n for a, n in totals.items() if is_celebrity(n, settings.feed_celebrity_threshold)}
    relist_celebrities(store, celebrity_counts, unlist=False)
    if say:
        say(f"graph: {follows.count():,} follows, {len(celebrity_counts):,} celebrities "
            f"(>= {settings.feed_celebrity_threshold:,} followers, pulled at read time)")
    scratch = settings.var / "scratch" / f"timelines-{uuid.uuid4().hex}"
    try:
        # Hash partitions keep each user whole in one file (a range partitioning would sample,
        # that is compute the whole plan, once more); the reader needs no order across files.
        rows.repartition("user_id").sortWithinPartitions("user_id").write.parquet(str(scratch))
        for cached in (events, follows, counted, celebrities):
            cached.unpersist()
        files = sorted(scratch.glob("part-*.parquet"))
        counts = write_user_timelines(store, staged_user_rows(files), per_user, progress, deleted)
        counts["celebrities_unlisted"] = relist_celebrities(store, celebrity_counts)["unlisted"]
        counts["followers_recounted"] = recounted
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if say:
        say(f"timelines: {counts['users']:,} users, {counts['entries']:,} entries: {counts['written']:,} written, "
            f"{counts['deleted']:,} stale entries deleted")
    return counts


# ---- data quality: a brute force over a sample of users ---------------------------------------
def brute_force_timeline(events: Iterable[Mapping[str, Any]], posts: Iterable[Mapping[str, Any]], user_id: int,
                         threshold: int, per_user: int, deleted: frozenset[int] | set[int] = frozenset()) -> list[int]:
    """The pushed timeline of one user in plain Python: post ids (none of `deleted`), newest first."""
    latest: dict[tuple[int, int], tuple[Any, int, str]] = {}
    for e in events:
        if e["follower_id"] == e["followee_id"]:
            continue
        pair = (e["follower_id"], e["followee_id"])
        rank = (e["at"], 0 if e["action"] == "follow" else 1, e["action"])  # unfollow wins a tie
        if pair not in latest or rank > latest[pair]:
            latest[pair] = rank
    fans: dict[int, int] = {}
    mine: set[int] = set()
    for (follower, followee), (_at, _tie, action) in latest.items():
        if action == "follow":
            fans[followee] = fans.get(followee, 0) + 1
            if follower == user_id:
                mine.add(followee)
    authors = {a for a in mine if fans.get(a, 0) < threshold}
    ids = sorted({p["post_id"] for p in posts if p["author_id"] in authors and p["post_id"] not in deleted},
                 reverse=True)
    return ids[:per_user]


def check_sample(settings: Settings, store: ServingStore | None = None, sample: int = 50, per_user: int = PER_USER,
                 seed: int | None = None) -> dict[str, Any]:
    """Compare sampled users' stored timelines with the brute force; raise ValueError on a mismatch.

    Only entries inside the snapshot are compared (post ids up to the lake's newest, and not
    below the oldest the brute force keeps when the window is full), so posts pushed by fanout
    after the job read the lake do not count as differences.
    """
    from sixfold.platform.lake import ArrowLake
    from sixfold.platform.store import open_store

    lake = ArrowLake(settings)
    events = lake.read(LAKE_TABLES["follow_events"]).to_pylist()
    posts = lake.read(LAKE_TABLES["posts"]).select(["post_id", "author_id"]).to_pylist()
    deleted = set(lake.read(LAKE_TABLES["post_deletions"]).column("post_id").to_pylist())
    users = sorted({e["follower_id"] for e in events})
    chosen = random.Random(seed).sample(users, min(sample, len(users)))
    newest = max((p["post_id"] for p in posts), default=-1)
    own_store = store is None
    store = store or open_store(settings)
    problems = []
    try:
        for user_id in chosen:
            expected = brute_force_timeline(events, posts, user_id, settings.feed_celebrity_threshold, per_user,
                                            deleted)
            floor = expected[-1] if len(expected) >= per_user else -1
            stored = [r["post_id"] for r in store.query(TIMELINES, {"user_id": user_id})
                      if floor <= r["post_id"] <= newest]
            if stored != expected:
                missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
                problems.append(f"user {user_id}: {len(missing)} missing (e.g. {missing[:3]}), "
                                f"{len(extra)} unexpected (e.g. {extra[:3]})")
    finally:
        if own_store:
            store.close()
    from sixfold.platform.quality import record_result

    record_result(settings.var, "feed.timelines_sample", not problems, "; ".join(problems[:5]))
    if problems:
        raise ValueError(f"timelines differ from the brute force for {len(problems)} of {len(chosen)} sampled "
                         f"users: " + "; ".join(problems[:5]) + "; rerun `sixfold feed timelines` and check again")
    return {"sampled": len(chosen), "users": len(users), "posts": len(posts)}
