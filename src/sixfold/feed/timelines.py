"""Reading a home timeline: the pushed entries merged with celebrities' posts pulled at read time.

A page is the newest `limit` posts (post_id descending, which the sequencer makes time order)
older than the cursor, drawn from two sources:

- pushed: the user's `timelines` partition (fanout and the offline job write it), keeping only
  entries whose author the user follows now, so an unfollow hides that author at once;
- pulled: for each followee who is a celebrity (at least `feed_celebrity_threshold` followers in
  `follower_counts`), their `author_posts` newest first.

Each source is read from the cursor on, at most `limit + 1` hits each, then merged and cut; the
extra row says whether there is a next page. The cursor is opaque: the last post id shown,
base64url encoded.

Every follower of a celebrity reads that celebrity's follower count and newest posts, so a server
keeps them for `feed_read_cache_s` (`AuthorCache`); a follow, unfollow or post made through the same
server drops the author's entry at once, and other servers' writes show within that time, which is
the same order as fanout's own lag. Posts never change once written, so their rows are kept too.
"""

from __future__ import annotations

import base64
import bisect
import heapq
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.feed.fanout import is_celebrity
from sixfold.feed.graph import FOLLOWER_COUNTS, followees
from sixfold.feed.users import FeedError, UserDirectory
from sixfold.platform.schema import to_json_value
from sixfold.platform.store import ServingStore

TIMELINES = SERVING_TABLES["timelines"]
AUTHOR_POSTS = SERVING_TABLES["author_posts"]
POSTS = SERVING_TABLES["posts"]
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
            keep: Callable[[dict[str, Any]], bool] = lambda _row: True,
            columns: tuple[str, ...] = ("post_id",)) -> list[int]:
    """Up to `wanted` post ids of one partition below `before` that `keep` accepts (it sees `columns`),
    newest first, read page by page from the cursor on."""
    fetch = max(wanted + 1, 32)
    hits: list[int] = []
    after = before
    while len(hits) < wanted:
        rows = store.query(table, partition, limit=fetch, after=after, columns=columns)
        hits.extend(r["post_id"] for r in rows if keep(r))
        if len(rows) < fetch:
            break
        after = rows[-1]["post_id"]
    return hits[:wanted]


class AuthorCache:
    """Authors' follower counts and newest post ids, reused for `ttl_s` by the readers of one server."""

    NEWEST = 128  # post ids kept per author: a few pages of the deepest timeline page size
    MAX_AUTHORS = 200_000

    def __init__(self, store: ServingStore, ttl_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.clock = clock
        self._counts: dict[int, tuple[float, int]] = {}
        self._newest: dict[int, tuple[float, list[int]]] = {}
        self._lock = threading.Lock()

    def changed(self, author_id: int) -> None:
        """A follow, unfollow or post of `author_id` went through this server: forget what was kept."""
        with self._lock:
            self._counts.pop(author_id, None)
            self._newest.pop(author_id, None)

    def follower_counts(self, author_ids: Iterable[int]) -> dict[int, int]:
        now = self.clock()
        out: dict[int, int] = {}
        missing: list[int] = []
        for a in author_ids:
            kept = self._counts.get(a)
            if kept is not None and kept[0] > now:
                out[a] = kept[1]
            else:
                missing.append(a)
        if missing:
            rows = self.store.get_many(FOLLOWER_COUNTS, [{"user_id": a} for a in missing])
            fresh = {a: int(r["followers"]) if r else 0 for a, r in zip(missing, rows)}
            out.update(fresh)
            if self.ttl_s > 0:
                with self._lock:
                    if len(self._counts) > self.MAX_AUTHORS:
                        self._counts.clear()
                    self._counts.update((a, (now + self.ttl_s, c)) for a, c in fresh.items())
        return out

    def newest_posts(self, author_id: int, before: int | None, wanted: int) -> list[int]:
        """Up to `wanted` of the author's post ids below `before`, newest first."""
        if self.ttl_s <= 0:
            return _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, before, wanted)
        now = self.clock()
        kept = self._newest.get(author_id)
        if kept is None or kept[0] <= now:
            ids = _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, None, self.NEWEST)
            kept = (now + self.ttl_s, ids)
            with self._lock:
                if len(self._newest) > self.MAX_AUTHORS:
                    self._newest.clear()
                self._newest[author_id] = kept
        ids = kept[1]
        if before is None:
            hits = ids[:wanted]
        else:  # ids are descending: skip to the first one below the cursor
            start = len(ids) - bisect.bisect_left(ids[::-1], before)
            hits = ids[start:start + wanted]
        if len(hits) < wanted and len(ids) == self.NEWEST:  # the page reaches past what is kept
            return _newest(self.store, AUTHOR_POSTS, {"author_id": author_id}, before, wanted)
        return hits


class PostRows:
    """Post rows by id; a post never changes once written, so a row read once is kept (bounded)."""

    MAX_ROWS = 200_000

    def __init__(self, store: ServingStore) -> None:
        self.store = store
        self._rows: dict[int, dict[str, Any]] = {}

    def get_many(self, post_ids: list[int]) -> list[dict[str, Any] | None]:
        missing = [p for p in post_ids if p not in self._rows]
        if missing:
            if len(self._rows) > self.MAX_ROWS:
                self._rows.clear()
            for p, row in zip(missing, self.store.get_many(POSTS, [{"post_id": p} for p in missing])):
                if row is not None:
                    self._rows[p] = post_json(row)
        return [self._rows.get(p) for p in post_ids]


class TimelineReader:
    """Serves `GET /v1/timeline/{user_id}` from the serving store."""

    def __init__(self, store: ServingStore, celebrity_threshold: int, users: UserDirectory | None = None,
                 authors: AuthorCache | None = None) -> None:
        self.store = store
        self.threshold = celebrity_threshold
        self.users = users or UserDirectory(store)
        self.authors = authors or AuthorCache(store, 0.0)
        self.posts = PostRows(store)

    def candidate_ids(self, user_id: int, before: int | None, wanted: int,
                      follows: set[int] | None = None) -> list[int]:
        """The newest `wanted` post ids of the merged timeline below `before`, newest first."""
        follows = followees(self.store, user_id) if follows is None else follows
        if not follows:
            return []
        counts = self.authors.follower_counts(follows)
        celebrities = [a for a in follows if is_celebrity(counts[a], self.threshold)]
        sources = [_newest(self.store, TIMELINES, {"user_id": user_id}, before, wanted,
                           lambda r: r["author_id"] in follows, ("post_id", "author_id"))]
        sources += [self.authors.newest_posts(a, before, wanted) for a in celebrities]
        merged: list[int] = []
        for post_id in heapq.merge(*sources, reverse=True):
            if not merged or merged[-1] != post_id:  # a post pushed before its author became a celebrity
                merged.append(post_id)
            if len(merged) == wanted:
                break
        return merged

    def timeline(self, user_id: int, limit: int = DEFAULT_LIMIT, before: str | None = None) -> dict[str, Any]:
        check_limit(limit)
        cursor = decode_cursor(before)
        follows = followees(self.store, user_id)
        if not follows:  # a follow needs both users, so only a user following nobody may not exist
            self.users.require(user_id)
        ids = self.candidate_ids(user_id, cursor, limit + 1, follows)
        posts = [p for p in self.posts.get_many(ids[:limit]) if p is not None]  # gone from serving: skip it
        next_cursor = encode_cursor(ids[limit - 1]) if len(ids) > limit else None
        return {"user_id": user_id, "posts": posts, "next_cursor": next_cursor}
