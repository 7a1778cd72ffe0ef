"""Hybrid fanout, as the course designs it: push for ordinary authors, pull for celebrities.

For each `post-created` event the consumer looks up the author's follower count. Below
`settings.feed_celebrity_threshold` the post is pushed into every follower's precomputed
timeline (one TIMELINE_ENTRY each); at or above it nothing is pushed, and timeline reads pull
the celebrity's newest posts from `author_posts` instead. Each follower pushed to gets a fresh
timeline stamp (`stamps`), so a page a server kept shows the push at once, in whatever order posts
arrive. The batch's posts are also indexed for hashtag and geo search (`search.index_posts`; the
index job is the repair path), and the batch is landed in the lake (`feed/posts`) for the offline
jobs. A post deleted before its fanout ran is landed but neither pushed nor indexed.

`post-deleted` is this consumer's too (`run_post_deletions`): it finishes what the DELETE request
started (the post's own rows, idempotently), removes the entries fanout pushed to the author's
followers (a celebrity's posts were never pushed: nothing to remove; entries a follower kept after
unfollowing stay hidden and the offline job drops them), stamps those followers, releases the media
nothing else uses, and lands the deletion in `feed/post_deletions` for the offline jobs.

Per batch: validate (bad messages go to `<topic>.dlq` with the reason), land, apply, and only then
commit the offsets. A crash before the commit replays the batch, which is harmless: landing merges
duplicates, timeline and index rows are upserts by key, and deleting what is gone changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.feed.graph import follower_count, followers
from sixfold.feed.media import BlobStore, open_blob_store, release_post_media
from sixfold.feed.posts import forget_post
from sixfold.feed.search import index_posts
from sixfold.feed.stamps import stamp_timelines
from sixfold.platform.bus import EventBus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import LandingReport, land
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

TIMELINES = SERVING_TABLES["timelines"]
POSTS = SERVING_TABLES["posts"]
POST_CREATED = EVENTS["post-created"]
POST_DELETED = EVENTS["post-deleted"]
FOLLOWS = EVENTS["follows"]
FANOUT_GROUP = "feed-fanout"
POST_DELETIONS_GROUP = "feed-post-deletions"
FOLLOWS_LANDING_GROUP = "feed-follows-landing"
WRITE_BATCH = 5000


def is_celebrity(follower_total: int, threshold: int) -> bool:
    """Celebrities (at least `threshold` followers) are pulled at read time, never pushed."""
    return follower_total >= threshold


def fanout_targets(author_id: int, author_followers: Iterable[int], follower_total: int, threshold: int) -> list[int]:
    """Whose timelines a post by `author_id` is pushed into: every follower, or nobody for a celebrity."""
    if is_celebrity(follower_total, threshold):
        return []
    return sorted({f for f in author_followers if f != author_id})


def fanout_writes(graph: Mapping[int, Iterable[int]] | Iterable[tuple[int, int]],
                  posts: Iterable[Mapping[str, Any] | tuple[int, int]], threshold: int) -> dict[str, int]:
    """Timeline writes the posts cost under hybrid fanout and under pure push (for benchmarks).

    `graph`: {follower: followees} or (follower, followee) pairs; `posts`: dicts with `author_id`
    or (post_id, author_id) pairs. Returns {"hybrid", "push", "saved", "celebrities"}.
    """
    edges = ([(u, v) for u, vs in graph.items() for v in vs] if isinstance(graph, Mapping) else list(graph))
    fans: dict[int, set[int]] = {}
    for follower, followee in edges:
        if follower != followee:
            fans.setdefault(followee, set()).add(follower)
    hybrid = push = 0
    for post in posts:
        author = post["author_id"] if isinstance(post, Mapping) else post[1]
        audience = fans.get(author, set())
        push += len(audience)
        hybrid += len(fanout_targets(author, audience, len(audience), threshold))
    celebrities = sum(1 for audience in fans.values() if is_celebrity(len(audience), threshold))
    return {"hybrid": hybrid, "push": push, "saved": push - hybrid, "celebrities": celebrities}


def _push(store: ServingStore, post: Mapping[str, Any], threshold: int) -> list[int] | None:
    """Write one post's timeline entries, unstamped; the followers written to, or None for a celebrity."""
    author = post["author_id"]
    total = follower_count(store, author)
    if is_celebrity(total, threshold):
        return None
    targets = fanout_targets(author, followers(store, author), total, threshold)
    write_entries(store, post, targets)
    return targets


def write_entries(store: ServingStore, post: Mapping[str, Any], targets: list[int]) -> int:
    """The post's timeline entries for `targets`, in batches of WRITE_BATCH; returns how many were written."""
    written = 0
    for start in range(0, len(targets), WRITE_BATCH):
        written += store.upsert_many(TIMELINES, [{"user_id": u, "post_id": post["post_id"],
                                                  "author_id": post["author_id"]}
                                                 for u in targets[start:start + WRITE_BATCH]])
    return written


def fanout_post(store: ServingStore, post: Mapping[str, Any], threshold: int) -> int:
    """Push one post into its author's followers' timelines and stamp them; returns how many entries
    were written."""
    targets = _push(store, post, threshold) or []
    stamp_timelines(store, targets)
    return len(targets)


@dataclass
class FanoutReport(LandingReport):
    pushed: int = 0  # timeline entries written
    pulled_posts: int = 0  # posts by celebrities: landed, not pushed
    indexed: int = 0  # hashtag and geo search rows written
    gone: int = 0  # posts deleted before their fanout: landed, neither pushed nor indexed


@dataclass
class DeletionReport(LandingReport):
    unpushed: int = 0  # followers whose entry of a deleted post was removed
    media: int = 0  # media rows released
    blobs: int = 0  # blobs deleted


def _collect_into(valid: list[dict[str, Any]]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A landing `prepare` hook that also keeps each validated row (the batch's good posts)."""

    def keep(row: dict[str, Any]) -> dict[str, Any]:
        valid.append(row)
        return row

    return keep


def run_fanout(settings: Settings, store: ServingStore, bus: EventBus, *, group: str = FANOUT_GROUP,
               idle_timeout_s: float = 1.0, max_batches: int | None = None,
               on_batch: Callable[[FanoutReport], None] | None = None) -> FanoutReport:
    """Consume `post-created` until idle: land each batch in the lake, push it, then commit
    (the push is the landing's `before_commit` effect: replayed after a crash, never lost)."""
    threshold = settings.feed_celebrity_threshold
    valid: list[dict[str, Any]] = []
    total = FanoutReport()

    def push(landed: LandingReport) -> None:
        report = FanoutReport(received=landed.received, landed=landed.landed, rejected=landed.rejected,
                              partitions=landed.partitions)
        rows = store.get_many(POSTS, [{"post_id": p["post_id"]} for p in valid])
        live = [p for p, row in zip(valid, rows) if row is not None]
        report.gone = len(valid) - len(live)
        stamped: set[int] = set()
        for post in live:
            targets = _push(store, post, threshold)
            if targets is None:
                report.pulled_posts += 1
            else:
                report.pushed += len(targets)
                stamped.update(targets)
        stamp_timelines(store, stamped)  # once per follower per batch, after every entry is written
        report.indexed = index_posts(store, live)
        valid.clear()
        for name in ("pushed", "pulled_posts", "indexed", "gone"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        if on_batch:
            on_batch(report)

    landed = land(bus, ArrowLake(settings), POST_CREATED, LAKE_TABLES["posts"], group, idle_timeout_s=idle_timeout_s,
                  max_batches=max_batches, prepare=_collect_into(valid), before_commit=push)
    total.received, total.landed, total.rejected, total.partitions = (landed.received, landed.landed,
                                                                       landed.rejected, landed.partitions)
    return total


def unpush_post(store: ServingStore, deletion: Mapping[str, Any], threshold: int) -> list[int]:
    """Remove a deleted post's entries from its author's followers' timelines; returns those followers
    (unstamped). A celebrity's posts were not pushed, so nothing is read for them."""
    author = deletion["author_id"]
    if is_celebrity(follower_count(store, author), threshold):
        return []
    fans = followers(store, author)
    for user_id in fans:
        store.delete(TIMELINES, {"user_id": user_id, "post_id": deletion["post_id"]})
    return fans


def run_post_deletions(settings: Settings, store: ServingStore, bus: EventBus, *, group: str = POST_DELETIONS_GROUP,
                       idle_timeout_s: float = 1.0, blobs: BlobStore | None = None,
                       on_batch: Callable[[DeletionReport], None] | None = None) -> DeletionReport:
    """Consume `post-deleted` until idle: land each batch in the lake (`feed/post_deletions`), then, before
    the commit, forget each post's rows, remove its pushed entries, stamp those followers and release
    its media (`blobs`: the blob store, the configured one by default)."""
    threshold = settings.feed_celebrity_threshold
    blob_store = blobs if blobs is not None else open_blob_store(settings)
    valid: list[dict[str, Any]] = []
    total = DeletionReport()

    def apply(landed: LandingReport) -> None:
        report = DeletionReport(received=landed.received, landed=landed.landed, rejected=landed.rejected,
                                partitions=landed.partitions)
        stamped: set[int] = set()
        for deletion in valid:
            forget_post(store, deletion)  # done already unless the request was cut short
            fans = unpush_post(store, deletion, threshold)
            report.unpushed += len(fans)
            stamped.update(fans)
        stamp_timelines(store, stamped | {d["author_id"] for d in valid})
        released = release_post_media(store, blob_store, valid)
        report.media, report.blobs = released["media"], released["blobs"]
        valid.clear()
        for name in ("unpushed", "media", "blobs"):
            setattr(total, name, getattr(total, name) + getattr(report, name))
        if on_batch:
            on_batch(report)

    landed = land(bus, ArrowLake(settings), POST_DELETED, LAKE_TABLES["post_deletions"], group,
                  idle_timeout_s=idle_timeout_s, prepare=_collect_into(valid), before_commit=apply)
    total.received, total.landed, total.rejected, total.partitions = (landed.received, landed.landed,
                                                                       landed.rejected, landed.partitions)
    return total


def land_follow_events(settings: Settings, bus: EventBus, *, group: str = FOLLOWS_LANDING_GROUP,
                       idle_timeout_s: float = 1.0, on_batch: Callable[[LandingReport], None] | None = None
                       ) -> LandingReport:
    """Land pending `follows` events into the lake (`feed/follow_events`), the graph's history."""
    return land(bus, ArrowLake(settings), FOLLOWS, LAKE_TABLES["follow_events"], group,
                idle_timeout_s=idle_timeout_s, on_batch=on_batch)


def fanout_work(settings: Settings, group: str, idle_s: float, resources: Any,
                on_batch: Callable[[FanoutReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): fan out `post-created`, apply `post-deleted`,
    land `follows`. A group other than the default (`--group G`) names all three: G, G-deletions and
    G-follows, so a second deployment on the same Kafka never takes this one's follows or deletions."""
    from contextlib import closing

    from sixfold.platform.bus import open_bus
    from sixfold.platform.store import open_store

    store = resources.enter_context(closing(open_store(settings)))
    bus = resources.enter_context(closing(open_bus(settings)))
    deletions_group, follows_group = ((POST_DELETIONS_GROUP, FOLLOWS_LANDING_GROUP) if group == FANOUT_GROUP
                                      else (f"{group}-deletions", f"{group}-follows"))

    def one_pass() -> dict[str, int]:
        posts = run_fanout(settings, store, bus, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        deleted = run_post_deletions(settings, store, bus, group=deletions_group, idle_timeout_s=min(idle_s, 0.2))
        follows = land_follow_events(settings, bus, group=follows_group, idle_timeout_s=min(idle_s, 0.2))
        return {"received": posts.received + deleted.received + follows.received, "posts": posts.received,
                "pushed": posts.pushed, "indexed": posts.indexed, "deleted posts": deleted.received,
                "follow events": follows.received, "rejected": posts.rejected + deleted.rejected + follows.rejected}

    return one_pass


def consumers() -> list[Any]:
    """The feed's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("post-fanout", FANOUT_GROUP, fanout_work)]
