"""Reading a home timeline (pushed entries, celebrities' posts and one's own, merged) and a profile.

A page is the newest `limit` posts (post_id descending, which the sequencer makes time order)
older than the cursor, drawn from three sources:

- pushed: the user's `timelines` partition (fanout, a follow's recent posts and the offline job
  write it), keeping only entries whose author the user follows now, so an unfollow hides that
  author at once;
- pulled: for each followee who is a celebrity (listed in `celebrities` with at least
  `feed_celebrity_threshold` followers), their `author_posts` newest first;
- own: the user's own `author_posts`, as Instagram and Mastodon show one's posts in one's feed.

Own posts are merged here, at read time, rather than pushed to their author by fanout: the
partition is the one the profile reads anyway (one more read of at most `limit + 1` keys when a
page is built, none when a kept page is reused), a post shows in its author's feed the moment
POST /v1/posts answers instead of after the consumer's lag, and the offline job's rows and its
brute force stay what they were (followees' posts only), so nothing about them has to change.

Each source is read from the cursor on, at most `limit + 1` hits each, then merged and cut; the
extra row says whether there is a next page. The cursor is opaque: the last post id shown,
base64url encoded. A post whose tombstone is in `deleted_posts` (or whose row is gone) is skipped,
checked on every build (`PostRows`), so no page built after a deletion shows it, on any server.

A profile (`profile`) is the author's `author_posts` alone, newest first, with the same cursor.

Every reader needs to know which followees are celebrities, and every follower of a celebrity reads
that celebrity's newest post ids, so a server keeps the celebrity list and those ids for
`feed_read_cache_s` (`AuthorCache`); a post made or deleted through the same server, or a follow that
makes or unmakes a celebrity, drops what was kept at once, and other servers' writes show within that
time, which is the same order as fanout's own lag.

While the store fails (slower than its timeout, down, or its circuit breaker open: a
ServiceUnavailable), a reader answers a request it has answered before with that last page, marked
`"stale": true`, instead of a 503: the user sees the feed as it was a moment ago, and a new post
shows once the store is back. A request it never answered still gets the 503 with Retry-After.
"""

from __future__ import annotations

import base64
import bisect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from schemas.records import SERVING_TABLES
from sixfold.feed.fanout import is_celebrity
from sixfold.feed.graph import celebrities, follow_version, followees
from sixfold.feed.stamps import timeline_version
from sixfold.feed.users import FeedError, UserDirectory
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.schema import to_json_value
from sixfold.platform.store import ServingStore

TIMELINES = SERVING_TABLES["timelines"]
AUTHOR_POSTS = SERVING_TABLES["author_posts"]
POSTS = SERVING_TABLES["posts"]
DELETED_POSTS = SERVING_TABLES["deleted_posts"]
DEFAULT_LIMIT, MAX_LIMIT = 20, 100


def encode_cursor(post_id: int) -> str:
    return base64.urlsafe_b64encode(f"t:{post_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    if cursor is None or cursor == "":
        return None
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not text.startswith("t:"):
            raise ValueError(text)
        post_id = int(text[2:])
        if post_id < 0:
            raise ValueError(text)
        return post_id
    except (ValueError, UnicodeDecodeError):
        raise FeedError(422, f"before={cursor!r} is not a cursor from this endpoint; "
                             "pass next_cursor from the previous page, or omit it") from None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise FeedError(422, f"limit must be 1..{MAX_LIMIT}, got {limit}")
    return limit


def post_json(row: dict[str, Any]) -> dict[str, Any]:
    """A post as the timeline answers it; `media` holds media ids, each served at /v1/media/{id}."""
    return {
        "post_id": row["post_id"],
        "author_id": row["author_id"],
        "created_at": to_json_value(POSTS.record.field("created_at"), row["created_at"]),
        "caption": row.get("caption"),
        "media": list(row.get("media_ids") or []),
        "hashtags": list(row.get("hashtags") or []),
    }


def _newest(store: ServingStore, table: Any, partition: dict[str, Any], before: int | None, wanted: int,
            authors: set[int] | frozenset[int] | None = None) -> list[int]:
    """Up to `wanted` post ids of one partition below `before`, newest first, read page by page from
    the cursor on; with `authors`, only the rows whose `author_id` is one of them."""
    fetch = max(wanted + 1, 32)
    columns = ("post_id",) if authors is None else ("post_id", "author_id")
    hits: list[int] = []
    after = before
    while len(hits) < wanted:
        rows = store.query(table, partition, limit=fetch, after=after, columns=columns)
        if authors is None:
            hits += [r["post_id"] for r in rows]
        else:
            hits += [r["post_id"] for r in rows if r["author_id"] in authors]
        if len(rows) < fetch:
            break
        after = rows[-1]["post_id"]
    return hits[:wanted]


class AuthorCache:
    """Who the celebrities are, and celebrities' newest post ids, reused for `ttl_s` by the readers of one server."""

    NEWEST = 128  # post ids kept per author: a few pages of the deepest timeline page size
    MAX_AUTHORS = 200_000

    def __init__(self, store: ServingStore, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._celebrities: tuple[float, int, frozenset[int]] | None = None  # (good until, threshold, ids)
        self._newest: dict[int, tuple[float, list[int]]] = {}
        self._lock = threading.Lock()

    def posted(self, author_id: int) -> None:
        """A post by `author_id` was made or deleted through this server: forget their newest post ids."""
        with self._lock:
            self._newest.pop(author_id, None)

    def celebrity_changed(self, author_id: int) -> None:
        """A follow or unfollow through this server made `author_id` a celebrity or an ordinary author."""
        with self._lock:
            kept = self._celebrities
            if kept is not None:  # due now; a re-read that finds the same authors keeps the same set
                self._celebrities = (float("-inf"), kept[1], kept[2])
            self._newest.pop(author_id, None)

    def celebrities(self, threshold: int) -> frozenset[int]:
        """The authors listed in `celebrities` with at least `threshold` followers (one partition read
        per `ttl_s`; a raised threshold applies at once, a lowered one once the offline job relists).
        A re-read that finds the same authors keeps the same set object, as `newest_ids` does."""
        now = self.clock()
        kept = self._celebrities
        if kept is None or kept[0] <= now or kept[1] != threshold:
            ids = frozenset(a for a, n in celebrities(self.store).items() if is_celebrity(n, threshold))
            if kept is not None and kept[1] == threshold and kept[2] == ids:
                ids = kept[2]
            kept = (now + self.ttl_s, threshold, ids)
            if self.ttl_s > 0:
                self._celebrities = kept
        return kept[2]

    def newest_ids(self, author_id: int) -> list[int]:
        """The author's newest post ids (at most NEWEST), newest first, as kept. A re-read that finds
        the same ids keeps the same list object, so a caller may compare kept lists by identity."""
        now = self.clock()
        kept = self._newest.get(author_id)
        if kept is None or kept[0] <= now:
            ids = _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, None, self.NEWEST)
            if kept is not None and kept[1] == ids:
                ids = kept[1]
            kept = (now + self.ttl_s, ids)
            if self.ttl_s > 0:
                with self._lock:
                    if len(self._newest) > self.MAX_AUTHORS:
                        self._newest.clear()
                    self._newest[author_id] = kept
        return kept[1]

    def newest_posts(self, author_id: int, before: int | None, wanted: int) -> list[int]:
        """Up to `wanted` of the author's post ids below `before`, newest first."""
        if self.ttl_s <= 0:
            return _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, before, wanted)
        ids = self.newest_ids(author_id)
        if before is None:
            hits = ids[:wanted]
        else:  # ids are descending: skip to the first one below the cursor
            start = len(ids) - bisect.bisect_left(ids[::-1], before)
            hits = ids[start:start + wanted]
        if len(hits) < wanted and len(ids) == self.NEWEST:  # the page reaches past what is kept
            return _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, before, wanted)
        return hits


class PostRows:
    """Post rows by id, as the timeline answers them; None for a post that is gone (deleted).

    A post never changes once written, so a row read once is kept (bounded); but it may be deleted
    through any server, so every call first reads the ids' tombstones in `deleted_posts`, one round
    trip that finds nothing almost always (reading the rows themselves each time would cost three
    times a whole page build: decoding them is most of it)."""

    MAX_ROWS = 200_000

    def __init__(self, store: ServingStore) -> None:
        self.store = store
        self._rows: dict[int, dict[str, Any]] = {}

    def get_many(self, post_ids: list[int]) -> list[dict[str, Any] | None]:
        if not post_ids:
            return []
        keys = [{"post_id": p} for p in post_ids]
        gone = {r["post_id"] for r in self.store.get_many(DELETED_POSTS, keys) if r is not None}
        missing = [p for p in post_ids if p not in self._rows and p not in gone]
        if missing:
            if len(self._rows) > self.MAX_ROWS:
                self._rows.clear()
            for p, row in zip(missing, self.store.get_many(POSTS, [{"post_id": p} for p in missing])):
                if row is not None:
                    self._rows[p] = post_json(row)
        return [None if p in gone else self._rows.get(p) for p in post_ids]


@dataclass
class _KeptPage:
    """A page a reader answered, with the stamps it was built under (read before it was built)."""

    until: float  # after this (the reader's clock) it is not reused, whatever the stamps say
    follow_version: int | None  # the follower's stamp in `follow_versions`
    timeline_version: int | None  # their stamp in `timeline_versions` (pushed entries, own posts)
    celebrities: frozenset[int]  # the AuthorCache's celebrity set the page was built with
    pulled: tuple[int, ...]  # the celebrities followed
    heads: tuple[list[int], ...]  # their newest-ids lists (AuthorCache.newest_ids)
    page: dict[str, Any]
    deep: bool = False  # it reaches past the newest ids kept of a pulled author: `heads` do not cover it
    body: bytes | None = None  # the page as JSON, once asked for
    stale_twin: _KeptPage | None = None  # the same page marked stale, once the store failed and it was answered


class TimelineReader:
    """Serves `GET /v1/timeline/{user_id}` from the serving store.

    With `page_cache_s` > 0 (and an `AuthorCache` that keeps), a page answered once is answered again
    from memory while nothing it was built from has moved: the check costs two key reads (the
    follower's two stamps, `follow_versions` and `timeline_versions`) instead of three partition
    reads, a merge and the post rows. Every writer of what a page is built from stamps it after
    writing (follows, fanout pushes in any order, a follow's recent posts, the offline job, one's
    own posts, and a deletion, which stamps the author and their followers), so all of them show at
    once through any server; a celebrity's new or deleted post shows as soon as this server's
    `AuthorCache` sees it (at once through this server, within its `ttl_s` through another), and a
    page reaching past the ids it keeps checks its posts' tombstones on reuse (one more read, for
    deep pages only). Only a write that bypasses all of these (a row written by hand) waits for
    `page_cache_s`.
    """

    MAX_PAGES = 20_000  # a few KB each
    LAST_GOOD_PAGES = 20_000  # the last page answered per request, for answering while the store fails

    def __init__(self, store: ServingStore, celebrity_threshold: int, users: UserDirectory | None = None,
                 authors: AuthorCache | None = None, page_cache_s: float = 0.0) -> None:
        self.store = store
        self.threshold = celebrity_threshold
        self.users = users or UserDirectory(store)
        self.authors = authors or AuthorCache(store, 0.0)
        self.posts = PostRows(store)
        self.page_cache_s = page_cache_s if self.authors.ttl_s > 0 else 0.0
        self._pages: dict[tuple[int, int, int | None], _KeptPage] = {}
        self._last_good: dict[tuple[int, int, int | None], _KeptPage] = {}  # insertion order: oldest first
        self.hits = self.misses = self.stale_answers = 0

    def candidate_ids(self, user_id: int, before: int | None, wanted: int,
                      follows: set[int] | frozenset[int] | None = None) -> list[int]:
        """The newest `wanted` post ids of the merged timeline below `before`, newest first."""
        follows = followees(self.store, user_id) if follows is None else follows
        own = _newest(self.store, AUTHOR_POSTS, {"author_id": user_id}, before, wanted)
        if not follows:
            return own
        pushed = _newest(self.store, TIMELINES, {"user_id": user_id}, before, wanted, follows)
        pulled = self.authors.celebrities(self.threshold) & follows
        # each source holds at most `wanted` ids: a set drops a post pushed before its author became a
        # celebrity (it is in both), and one sort of a few hundred ints beats a k-way merge in Python
        merged = set(pushed).union(own, *(self.authors.newest_posts(a, before, wanted) for a in pulled))
        return sorted(merged, reverse=True)[:wanted]

    def _build(self, user_id: int, limit: int, cursor: int | None, follows: frozenset[int]) -> dict[str, Any]:
        if not follows:  # a follow needs both users, so only a user following nobody may not exist
            self.users.require(user_id)
        ids = self.candidate_ids(user_id, cursor, limit + 1, follows)
        return {"user_id": user_id, **self._page(ids, limit)}

    def _page(self, ids: list[int], limit: int) -> dict[str, Any]:
        """posts and next_cursor of a page from its candidate ids (one more than `limit` when a next page exists)."""
        posts = [p for p in self.posts.get_many(ids[:limit]) if p is not None]  # deleted: skip it
        next_cursor = encode_cursor(ids[limit - 1]) if len(ids) > limit else None
        return {"posts": posts, "next_cursor": next_cursor}

    def profile(self, user_id: int, limit: int = DEFAULT_LIMIT, before: str | None = None) -> dict[str, Any]:
        """`GET /v1/users/{user_id}/posts`: the user's own posts, newest first; 404 for an unknown user."""
        check_limit(limit)
        cursor = decode_cursor(before)
        self.users.require(user_id)
        ids = _newest(self.store, AUTHOR_POSTS, {"author_id": user_id}, cursor, limit + 1)
        return {"user_id": user_id, **self._page(ids, limit)}

    def _heads(self, pulled: tuple[int, ...]) -> tuple[list[int], ...]:
        return tuple(self.authors.newest_ids(a) for a in pulled)

    @staticmethod
    def _deep(page: dict[str, Any], cursor: int | None, heads: tuple[list[int], ...]) -> bool:
        """Whether the page holds (or, empty, starts at) posts older than a full kept list of a pulled
        author: a deletion of those would not move the list, so reuse checks their tombstones instead."""
        oldest = page["posts"][-1]["post_id"] if page["posts"] else cursor
        return oldest is not None and any(len(ids) >= AuthorCache.NEWEST and oldest < ids[-1] for ids in heads)

    def _deleted_since(self, kept: _KeptPage) -> bool:
        keys = [{"post_id": p["post_id"]} for p in kept.page["posts"]]
        return any(row is not None for row in self.store.get_many(DELETED_POSTS, keys)) if keys else False

    def timeline(self, user_id: int, limit: int = DEFAULT_LIMIT, before: str | None = None) -> dict[str, Any]:
        return self._answer(user_id, limit, before).page

    def timeline_json(self, user_id: int, limit: int = DEFAULT_LIMIT, before: str | None = None) -> bytes:
        """`timeline` as JSON bytes; a kept page is encoded once."""
        kept = self._answer(user_id, limit, before)
        if kept.body is None:
            kept.body = orjson.dumps(kept.page)
        return kept.body

    def _answer(self, user_id: int, limit: int, before: str | None) -> _KeptPage:
        """The page now, or, while the store fails (slow past its timeout, down, its breaker open), the last
        page this reader answered for the same request, marked `"stale": true`; with none, the 503."""
        check_limit(limit)
        cursor = decode_cursor(before)
        key = (user_id, limit, cursor)
        try:
            kept = self._current(user_id, limit, cursor, key)
        except ServiceUnavailable:
            last = self._last_good.get(key)
            if last is None:
                raise
            self.stale_answers += 1
            if last.stale_twin is None:
                last.stale_twin = _KeptPage(0.0, None, None, frozenset(), (), (), {**last.page, "stale": True})
            return last.stale_twin
        if self._last_good.get(key) is not kept:
            if len(self._last_good) >= self.LAST_GOOD_PAGES:
                self._last_good.pop(next(iter(self._last_good)))  # the oldest remembered
            self._last_good.pop(key, None)
            self._last_good[key] = kept
        return kept

    def _current(self, user_id: int, limit: int, cursor: int | None, key: tuple[int, int, int | None]) -> _KeptPage:
        if self.page_cache_s <= 0:
            follows = frozenset(followees(self.store, user_id))
            return _KeptPage(0.0, None, None, frozenset(), (), (), self._build(user_id, limit, cursor, follows))
        # the stamps first: whatever changes after them makes the next check fail, never a stale keep
        version = follow_version(self.store, user_id)
        stamp = timeline_version(self.store, user_id)
        kept = self._pages.get(key)
        now = self.authors.clock()
        celebrities = self.authors.celebrities(self.threshold)
        if (kept is not None and kept.until > now and kept.follow_version == version
                and kept.timeline_version == stamp and kept.celebrities is celebrities
                and kept.heads == self._heads(kept.pulled)):
            if not (kept.deep and self._deleted_since(kept)):
                self.hits += 1  # (the tuples compare their lists by identity first: no list is walked)
                return kept
        self.misses += 1
        follows = frozenset(followees(self.store, user_id))
        pulled = tuple(sorted(celebrities & follows))
        heads = self._heads(pulled)
        page = self._build(user_id, limit, cursor, follows)
        if len(self._pages) >= self.MAX_PAGES:
            self._pages.clear()
        kept = self._pages[key] = _KeptPage(now + self.page_cache_s, version, stamp, celebrities, pulled,
                                            heads, page, self._deep(page, cursor, heads))
        return kept
