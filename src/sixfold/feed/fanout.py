"""Hybrid fanout, as the course designs it: push for ordinary authors, pull for celebrities.

For each `post-created` event the consumer looks up the author's follower count. Below
`settings.feed_celebrity_threshold` the post is pushed into every follower's precomputed
timeline (one TIMELINE_ENTRY each); at or above it nothing is pushed, and timeline reads pull
the celebrity's newest posts from `author_posts` instead. The same batch is landed in the lake
(`feed/posts`) for the offline timeline job.

Per batch: validate (bad messages go to `post-created.dlq` with the reason), land, push, and only
then commit the offsets. A crash before the commit replays the batch, which is harmless: landing
merges duplicates and timeline entries are upserts by (user_id, post_id).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.feed.graph import follower_count, followers
from sixfold.platform.bus import EventBus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import LandingReport, land
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

TIMELINES = SERVING_TABLES["timelines"]
POST_CREATED = EVENTS["post-created"]
FOLLOWS = EVENTS["follows"]
FANOUT_GROUP = "feed-fanout"
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


def fanout_post(store: ServingStore, post: Mapping[str, Any], threshold: int) -> int:
    """Push one post into its author's followers' timelines; returns how many entries were written."""
    author = post["author_id"]
    total = follower_count(store, author)
    if is_celebrity(total, threshold):
        return 0
    targets = fanout_targets(author, followers(store, author), total, threshold)
    written = 0
    for start in range(0, len(targets), WRITE_BATCH):
        written += store.upsert_many(TIMELINES, [{"user_id": u, "post_id": post["post_id"], "author_id": author}
                                                  for u in targets[start:start + WRITE_BATCH]])
    return written


@dataclass
class FanoutReport(LandingReport):
    pushed: int = 0  # timeline entries written
    pulled_posts: int = 0  # posts by celebrities: landed, not pushed


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
        for post in valid:
            report.pushed += fanout_post(store, post, threshold)
            if is_celebrity(follower_count(store, post["author_id"]), threshold):
                report.pulled_posts += 1
        valid.clear()
        total.pushed += report.pushed
        total.pulled_posts += report.pulled_posts
        if on_batch:
            on_batch(report)

    landed = land(bus, ArrowLake(settings), POST_CREATED, LAKE_TABLES["posts"], group, idle_timeout_s=idle_timeout_s,
                  max_batches=max_batches, prepare=_collect_into(valid), before_commit=push)
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
    """One consumer's work (`sixfold.platform.consumer`): fan out `post-created`, land `follows`."""
    from contextlib import closing

    from sixfold.platform.bus import open_bus
    from sixfold.platform.store import open_store

    store = resources.enter_context(closing(open_store(settings)))
    bus = resources.enter_context(closing(open_bus(settings)))

    def one_pass() -> dict[str, int]:
        posts = run_fanout(settings, store, bus, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        follows = land_follow_events(settings, bus, idle_timeout_s=min(idle_s, 0.2))
        return {"received": posts.received + follows.received, "posts": posts.received, "pushed": posts.pushed,
                "follow events": follows.received, "rejected": posts.rejected + follows.rejected}

    return one_pass


def consumers() -> list[Any]:
    """The feed's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("post-fanout", FANOUT_GROUP, fanout_work)]
