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
"""

from __future__ import annotations

import base64
import heapq
from collections.abc import Callable
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.feed.fanout import is_celebrity
from sixfold.feed.graph import followees, follower_count
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
            keep: Callable[[dict[str, Any]], bool] = lambda _row: True) -> list[int]:
    """Up to `wanted` post ids of one partition below `before` that `keep` accepts, newest first,
    read page by page from the cursor on."""
    fetch = max(wanted + 1, 32)
    hits: list[int] = []
    after = before
    while len(hits) < wanted:
        rows = store.query(table, partition, limit=fetch, after=after)
        hits.extend(r["post_id"] for r in rows if keep(r))
        if len(rows) < fetch:
            break
        after = rows[-1]["post_id"]
    return hits[:wanted]


class TimelineReader:
    """Serves `GET /v1/timeline/{user_id}` from the serving store."""

    def __init__(self, store: ServingStore, celebrity_threshold: int, users: UserDirectory | None = None) -> None:
        self.store = store
        self.threshold = celebrity_threshold
        self.users = users or UserDirectory(store)

    def candidate_ids(self, user_id: int, before: int | None, wanted: int) -> list[int]:
        """The newest `wanted` post ids of the merged timeline below `before`, newest first."""
        follows = followees(self.store, user_id)
        celebrities = [a for a in follows if is_celebrity(follower_count(self.store, a), self.threshold)]
        sources = [_newest(self.store, TIMELINES, {"user_id": user_id}, before, wanted,
                           lambda r: r["author_id"] in follows)]
        sources += [_newest(self.store, AUTHOR_POSTS, {"author_id": a}, before, wanted) for a in celebrities]
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
        self.users.require(user_id)
        ids = self.candidate_ids(user_id, cursor, limit + 1)
        posts = []
        for post_id in ids[:limit]:
            row = self.store.get(POSTS, {"post_id": post_id})
            if row is not None:  # pushed but gone from serving: skip it, keep paging
                posts.append(post_json(row))
        next_cursor = encode_cursor(ids[limit - 1]) if len(ids) > limit else None
        return {"user_id": user_id, "posts": posts, "next_cursor": next_cursor}
