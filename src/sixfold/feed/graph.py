"""The follow graph: who follows whom, follower counts, and the history of every change.

A follow is one edge stored twice, by followee (`followers`, for fanout) and by follower
(`following`, for timeline reads), plus a counter in `follower_counts` (what decides push or
pull). Authors at or above the celebrity threshold are also listed in `celebrities`, one small
partition a timeline reader reads whole instead of every followee's count; a follow or unfollow
keeps it in step and the offline timeline job rewrites it from the lake. Each change also gives
the follower a fresh random stamp in `follow_versions`, so a reader may keep an answer built from
the follower's list for as long as the stamp stands, on any server. Every follow and unfollow
also goes to the `follows` topic as a FOLLOW_EVENT, which lands in the lake so the offline
timeline job can rebuild the graph as of any time.

A new follow shows the followee's recent posts at once, as Mastodon merges a followee's posts into
the follower's home feed: their newest FOLLOW_BACKFILL posts are written into the follower's
`timelines` rows before the follower's stamp moves (so no reader keeps a page without them), unless
the followee is a celebrity, whose posts are pulled at read time anyway. The offline job writes the
same rows and more (each follower's newest posts of every followee), so the two agree. An unfollow
hides them at once like any entry of that author (readers keep only followed authors' entries);
the job deletes them.

Both operations are idempotent, also across servers racing on one edge: the `following` row is
claimed with `insert_if_absent` (removed with `delete_if_present`), and only the caller that
changed it moves the count, with the store's atomic `add`. So following twice keeps one edge and
counts it once, and unfollowing an absent edge changes nothing. The event is emitted every time
(at least once, even for a retry whose first attempt died after the store write); replaying it
changes no state. A count left wrong by a crash between the edge and the count (or a Cassandra
compare-and-set that timed out) is repaired by the offline job's recount.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

from schemas.records import EVENTS, SERVING_TABLES
from sixfold.feed.users import FeedError, UserDirectory
from sixfold.platform import schema
from sixfold.platform.bus import EventBus
from sixfold.platform.store import ServingStore

FOLLOWERS = SERVING_TABLES["followers"]
FOLLOWING = SERVING_TABLES["following"]
FOLLOWER_COUNTS = SERVING_TABLES["follower_counts"]
CELEBRITIES = SERVING_TABLES["celebrities"]
FOLLOW_VERSIONS = SERVING_TABLES["follow_versions"]
TIMELINES = SERVING_TABLES["timelines"]
AUTHOR_POSTS = SERVING_TABLES["author_posts"]
CELEBRITY_SHARD = {"shard": 0}
FOLLOWS_EVENT = EVENTS["follows"]
# Two default timeline pages: the first screens after a follow show the followee's recent posts among
# the others; older ones arrive with the hourly offline job (its window is 500 per follower), and one
# follow costs one partition read and at most this many row writes.
FOLLOW_BACKFILL = 40


def follower_count(store: ServingStore, user_id: int) -> int:
    row = store.get(FOLLOWER_COUNTS, {"user_id": user_id})
    return int(row["followers"]) if row else 0


def celebrities(store: ServingStore) -> dict[int, int]:
    """The authors listed as celebrities: user id -> follower count when listed."""
    return {r["user_id"]: r["followers"]
            for r in store.query(CELEBRITIES, CELEBRITY_SHARD, columns=("user_id", "followers"))}


def list_celebrity(store: ServingStore, user_id: int, before: int, after: int, threshold: int) -> bool:
    """Keep `celebrities` in step with `user_id`'s follower count moving from `before` to `after`;
    True when the user crossed the threshold (up or down), all a timeline reader needs to hear about."""
    if after >= threshold:
        store.upsert(CELEBRITIES, {**CELEBRITY_SHARD, "user_id": user_id, "followers": after})
    elif before >= threshold:
        store.delete(CELEBRITIES, {**CELEBRITY_SHARD, "user_id": user_id})
    return (before >= threshold) != (after >= threshold)


def relist_celebrities(store: ServingStore, listed: dict[int, int], *, unlist: bool = True) -> dict[str, int]:
    """Make `celebrities` hold `listed` (user id -> followers), writing only the difference: the offline
    job's repair of a crossing a server missed, or of a changed threshold. With `unlist=False` the
    authors not in `listed` stay (the job lists new celebrities before rewriting timelines and unlists
    the others after, so no author is neither pushed nor pulled meanwhile)."""
    now = celebrities(store)
    gone = sorted(set(now) - set(listed)) if unlist else []
    for user_id in gone:
        store.delete(CELEBRITIES, {**CELEBRITY_SHARD, "user_id": user_id})
    fresh = [{**CELEBRITY_SHARD, "user_id": u, "followers": n} for u, n in sorted(listed.items()) if now.get(u) != n]
    store.upsert_many(CELEBRITIES, fresh)
    return {"celebrities": len(listed), "listed": len(fresh), "unlisted": len(gone)}


def new_follow_version() -> int:
    return secrets.randbits(62)


def follow_version(store: ServingStore, user_id: int) -> int | None:
    """The stamp of whom `user_id` follows (None: never changed since a bulk load wrote no stamp)."""
    row = store.get(FOLLOW_VERSIONS, {"user_id": user_id})
    return row["version"] if row else None


def recount_followers(store: ServingStore, totals: dict[int, int]) -> int:
    """Make `follower_counts` agree with `totals` (user id -> followers in the lake's graph; absent
    means none), writing only what differs; returns how many counts changed. The offline job's repair
    of a count a server left wrong (it died between writing the edge and counting it)."""
    stored = {r["user_id"]: r["followers"] for r in store.scan(FOLLOWER_COUNTS)}
    fixes = [{"user_id": u, "followers": n} for u, n in sorted(totals.items()) if stored.get(u, 0) != n]
    fixes += [{"user_id": u, "followers": 0} for u, n in sorted(stored.items()) if n and u not in totals]
    store.upsert_many(FOLLOWER_COUNTS, fixes)
    return len(fixes)


def followees(store: ServingStore, user_id: int) -> set[int]:
    """Everyone `user_id` follows now."""
    return {r["followee_id"] for r in store.query(FOLLOWING, {"follower_id": user_id}, columns=("followee_id",))}


def followers(store: ServingStore, user_id: int) -> list[int]:
    """Everyone who follows `user_id` now, in id order."""
    return [r["follower_id"] for r in store.query(FOLLOWERS, {"followee_id": user_id})]


class FollowGraph:
    """Follow and unfollow against the serving store, publishing each change on the bus."""

    def __init__(self, store: ServingStore, bus: EventBus, celebrity_threshold: int,
                 users: UserDirectory | None = None,
                 clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000,
                 changed: Callable[[int], None] = lambda _author_id: None) -> None:
        self.store = store
        self.threshold = celebrity_threshold
        self.changed = changed  # told a followee who became, or stopped being, a celebrity (readers' caches)
        self.bus = bus
        self.users = users or UserDirectory(store)
        self.clock_ms = clock_ms
        self._lock = threading.Lock()  # for _now
        self._last_ms = 0

    def _now(self) -> datetime:
        # strictly increasing: the lake orders a pair's events by time, so two changes never tie
        with self._lock:
            self._last_ms = max(self.clock_ms(), self._last_ms + 1)
            return schema.from_micros(self._last_ms * 1000)

    def _check(self, follower_id: int, followee_id: int) -> None:
        if follower_id == followee_id:
            raise FeedError(422, f"user {follower_id} cannot follow themselves; give two different user ids")
        self.users.require(follower_id, "follower")
        self.users.require(followee_id, "followee")

    def _counted(self, followee_id: int, delta: int) -> int:
        """Move the followee's count by `delta`; returns the new count."""
        after = self.store.add(FOLLOWER_COUNTS, {"user_id": followee_id}, "followers", delta)
        if list_celebrity(self.store, followee_id, after - delta, after, self.threshold):
            self.changed(followee_id)
        return after

    def _backfill(self, follower_id: int, followee_id: int) -> None:
        """The followee's newest FOLLOW_BACKFILL posts into the follower's timeline rows (upserts: a
        refollow writes the same rows)."""
        newest = self.store.query(AUTHOR_POSTS, {"author_id": followee_id}, limit=FOLLOW_BACKFILL, columns=("post_id",))
        self.store.upsert_many(TIMELINES, [{"user_id": follower_id, "post_id": r["post_id"], "author_id": followee_id}
                                           for r in newest])

    def _emit(self, follower_id: int, followee_id: int, action: str, at: datetime) -> None:
        event = {"follower_id": follower_id, "followee_id": followee_id, "action": action, "at": at}
        self.bus.produce(FOLLOWS_EVENT.topic, schema.validate_event(FOLLOWS_EVENT, event), key=str(follower_id))

    def follow(self, follower_id: int, followee_id: int) -> dict[str, Any]:
        self._check(follower_id, followee_id)
        at = self._now()
        row = {"follower_id": follower_id, "followee_id": followee_id, "created_at": at}
        if self.store.insert_if_absent(FOLLOWING, row):  # of racing follows of one edge, one counts it
            self.store.upsert(FOLLOWERS, row)  # before the backfill reads: a later post is fanned out to us
            if self._counted(followee_id, +1) < self.threshold:
                self._backfill(follower_id, followee_id)
            self.store.upsert(FOLLOW_VERSIONS, {"user_id": follower_id, "version": new_follow_version()})
        self._emit(follower_id, followee_id, "follow", at)
        return {"follower_id": follower_id, "followee_id": followee_id, "following": True}

    def unfollow(self, follower_id: int, followee_id: int) -> dict[str, Any]:
        self._check(follower_id, followee_id)
        at = self._now()
        edge = {"follower_id": follower_id, "followee_id": followee_id}
        if self.store.delete_if_present(FOLLOWING, edge):  # of racing unfollows, one uncounts it
            self.store.delete(FOLLOWERS, edge)
            self.store.upsert(FOLLOW_VERSIONS, {"user_id": follower_id, "version": new_follow_version()})
            self._counted(followee_id, -1)
        self._emit(follower_id, followee_id, "unfollow", at)
        return {"follower_id": follower_id, "followee_id": followee_id, "following": False}
