"""Stories: posts that are visible for exactly 24 hours, and the purge that removes them afterwards.

Reads hide a story the instant `expires_at <= now` (so visibility never depends on when the
purge last ran); `purge_expired` then deletes the expired rows and the media and blobs that
nothing else uses. Rows carry no store TTL on purpose: a row that vanished by TTL could not
tell the purge which blobs to release.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.feed.media import BlobStore, delete_media, open_blob_store
from sixfold.feed.users import FeedError
from sixfold.platform import schema
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

STORY_LIFETIME = timedelta(hours=24)
DEFAULT_LIMIT, MAX_LIMIT = 20, 100

STORIES = SERVING_TABLES["stories"]
MEDIA = SERVING_TABLES["media"]
USERS = SERVING_TABLES["users"]
FOLLOWING = SERVING_TABLES["following"]
POSTS = SERVING_TABLES["posts"]


class StoryError(FeedError):
    """A rejected story request; `status` is the HTTP status that says why."""


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _encode_cursor(latest_story_id: int, author_id: int) -> str:
    return base64.urlsafe_b64encode(f"s:{latest_story_id}:{author_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[int, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        tag, story, author = raw.split(":")
        if tag != "s":
            raise ValueError(tag)
        return int(story), int(author)
    except (ValueError, UnicodeDecodeError):
        raise StoryError(422, f"cursor {cursor!r} is not one this endpoint gave out; "
                              "pass next_cursor from the previous page, or omit it") from None


class StoryService:
    """Posting and reading stories against one serving store, on an injectable clock (seconds)."""

    def __init__(self, store: ServingStore, clock: Callable[[], float] = time.time,
                 sequencer: Sequencer | None = None) -> None:
        self.store = store
        self.clock = clock
        self.sequencer = sequencer or Sequencer(clock_ms=lambda: int(self.clock() * 1000))

    def now(self) -> datetime:
        # millisecond precision, like every stored timestamp, so "exactly 24 h" compares exactly
        return schema.from_micros(int(self.clock() * 1000) * 1000)

    def post(self, user_id: int, media_id: int) -> dict[str, Any]:
        if self.store.get(USERS, {"user_id": user_id}) is None:
            raise StoryError(404, f"user {user_id} does not exist; create it with POST /v1/users first")
        media = self.store.get(MEDIA, {"media_id": media_id})
        if media is None:
            raise StoryError(404, f"media {media_id} does not exist; upload it with POST /v1/media first")
        if media["owner_id"] != user_id:
            raise StoryError(403, f"media {media_id} belongs to another user; post a story with your own upload")
        created = self.now()
        row = {"author_id": user_id, "story_id": self.sequencer.next_id(), "media_id": media_id,
               "created_at": created, "expires_at": created + STORY_LIFETIME}
        self.store.upsert(STORIES, row)
        return {"story_id": row["story_id"], "expires_at": _iso(row["expires_at"])}

    def live_stories(self, author_id: int, now: datetime) -> list[dict[str, Any]]:
        """An author's visible stories, newest first."""
        return [r for r in self.store.query(STORIES, {"author_id": author_id}) if r["expires_at"] > now]

    def feed(self, user_id: int, limit: int = DEFAULT_LIMIT, cursor: str | None = None) -> dict[str, Any]:
        """Live stories of the people `user_id` follows and their own, one group per author.

        Authors are ordered by their newest story (newest first), stories within a group too.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise StoryError(422, f"limit must be 1..{MAX_LIMIT}, got {limit}")
        after = _decode_cursor(cursor) if cursor else None
        if self.store.get(USERS, {"user_id": user_id}) is None:
            raise StoryError(404, f"user {user_id} does not exist")
        now = self.now()
        authors = {user_id} | {r["followee_id"] for r in self.store.query(FOLLOWING, {"follower_id": user_id})}
        groups = []
        for author in authors:
            stories = self.live_stories(author, now)
            if stories:
                groups.append((stories[0]["story_id"], author, stories))
        groups.sort(reverse=True)
        if after is not None:
            groups = [g for g in groups if (g[0], g[1]) < after]
        page = groups[:limit]
        out = []
        for _latest, author, stories in page:
            user = self.store.get(USERS, {"user_id": author})
            out.append({
                "author_id": author, "username": user["username"] if user else None,
                "stories": [{"story_id": s["story_id"], "author_id": author, "media_id": s["media_id"],
                             "created_at": _iso(s["created_at"]), "expires_at": _iso(s["expires_at"])}
                            for s in stories],
            })
        more = len(groups) > limit
        return {"user_id": user_id, "authors": out,
                "next_cursor": _encode_cursor(page[-1][0], page[-1][1]) if more and page else None}


# ---- purge --------------------------------------------------------------------------------------
def purge_expired(settings: Settings, now: datetime, store: ServingStore | None = None,
                  blobs: BlobStore | None = None) -> dict[str, int]:
    """Delete stories expired at `now`, their media rows that nothing else uses, and orphaned blobs.

    A media row stays while a live story or any post refers to it; a blob stays while any remaining
    media row (a post's upload of the same bytes, say) uses it. Blobs go first, then media rows,
    then story rows, so a run cut short is finished by the next one; a rerun finds nothing to
    delete, and an older `now` (a backfill) sees fewer stories expired, never more.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware (UTC)")
    from sixfold.platform.store import open_store

    own_store = store is None
    store = store or open_store(settings)
    blobs = blobs or open_blob_store(settings)
    try:
        stories = list(store.scan(STORIES))
        expired = [s for s in stories if s["expires_at"] <= now]
        if not expired:
            return {"stories": 0, "media": 0, "blobs": 0}
        in_use = {s["media_id"] for s in stories if s["expires_at"] > now}
        for post in store.scan(POSTS):
            for mid in post.get("media_ids") or ():
                if str(mid).isdigit():
                    in_use.add(int(mid))
        candidates = {s["media_id"] for s in expired} - in_use
        media_rows = list(store.scan(MEDIA))
        doomed = [m for m in media_rows if m["media_id"] in candidates]
        blob_count = delete_media(store, blobs, doomed, media_rows)
        for s in expired:
            store.delete(STORIES, {"author_id": s["author_id"], "story_id": s["story_id"]})
        return {"stories": len(expired), "media": len(doomed), "blobs": blob_count}
    finally:
        if own_store:
            store.close()
