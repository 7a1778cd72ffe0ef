"""Creating and deleting posts: validation at the edge, the two serving rows, and the events.

A post id comes from the sequencer, so a later post has a larger id and `created_at` is the
id's own time (the two never disagree). The post is written to `posts` (by id) and
`author_posts` (the author's posts newest first: the pull side of the hybrid timeline, the
author's profile, and their own posts in their home timeline), then published on `post-created`,
where the fanout consumer pushes it into followers' timelines, indexes it for search and lands it
in the lake.

Deleting is the author's alone. The `post-deleted` event goes out first, so the rest is never
lost: if this server dies mid-way, the consumer finishes it. Then, at once (`forget_post`), a
tombstone in `deleted_posts` and the removal of the post's own rows (`posts`, `author_posts`, its
search rows): readers keep post rows (a post never changes) and check the tombstones of a page's
posts in one read before showing them, so no page built from then on shows it, on any server.
Then the author's and their followers' timeline stamps move, so no server reuses a page it kept
with the post: one stamp write per follower, as the post's fanout cost one entry each (a
celebrity's followers are not stamped: their pages follow the author cache and the tombstones, see
`timelines`). The consumer then removes the followers' pushed entries, releases the media
nothing else uses, and lands the deletion for the offline jobs. The tombstone makes a repeated
DELETE by the author answer 200 again (a retry after a lost answer), and anyone else's 403.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from schemas.records import EVENTS, SERVING_TABLES
from sixfold.feed.graph import follower_count, followers
from sixfold.feed.search import unindex_post
from sixfold.feed.stamps import stamp_timelines
from sixfold.feed.users import FeedError, UserDirectory
from sixfold.platform import schema
from sixfold.platform.bus import EventBus
from sixfold.platform.ids import ID_LIMIT, Sequencer, id_time
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

POSTS = SERVING_TABLES["posts"]
DELETED_POSTS = SERVING_TABLES["deleted_posts"]
AUTHOR_POSTS = SERVING_TABLES["author_posts"]
MEDIA = SERVING_TABLES["media"]
POST_CREATED = EVENTS["post-created"]
POST_DELETED = EVENTS["post-deleted"]

MAX_CAPTION = POSTS.record.field("caption").max_length or 2200
MAX_HASHTAGS = 30
MAX_MEDIA = 10
MAX_TAG_LENGTH = SERVING_TABLES["hashtag_posts"].record.field("tag").max_length or 100
TAG_RE = re.compile(r"^\w+$")  # letters (any script), digits and '_', after the '#' is dropped


def normalise_hashtags(hashtags: Any) -> list[str]:
    """['#Sunset', 'sunset', 'Beach'] -> ['sunset', 'beach']: lower case, no '#', first occurrence kept."""
    if hashtags is None:
        return []
    if not isinstance(hashtags, list) or not all(isinstance(t, str) for t in hashtags):
        raise FeedError(422, "hashtags must be a list of strings, e.g. [\"sunset\", \"#beach\"]")
    if len(hashtags) > MAX_HASHTAGS:
        raise FeedError(422, f"{len(hashtags)} hashtags; a post may carry at most {MAX_HASHTAGS}")
    out: list[str] = []
    for raw in hashtags:
        tag = raw.strip().lstrip("#").strip().lower()
        if not tag or len(tag) > MAX_TAG_LENGTH or not TAG_RE.match(tag):
            raise FeedError(422, f"hashtag {raw!r} is not valid: use 1 to {MAX_TAG_LENGTH} letters, digits or '_' "
                                 "after an optional '#'")
        if tag not in out:
            out.append(tag)
    return out


def check_geo(geo: Any) -> tuple[float | None, float | None]:
    """(lat, lon) from {"lat", "lon"} in range, or (None, None) for no geotag."""
    if geo is None:
        return None, None
    if not isinstance(geo, dict) or set(geo) != {"lat", "lon"}:
        raise FeedError(422, "geo must be {\"lat\": -90..90, \"lon\": -180..180} or omitted")
    lat, lon = geo["lat"], geo["lon"]
    for name, value, bound in (("lat", lat, 90.0), ("lon", lon, 180.0)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise FeedError(422, f"geo.{name} must be a number, got {value!r}")
        if not -bound <= value <= bound:
            raise FeedError(422, f"geo.{name} {value} is outside -{bound:g}..{bound:g}")
    return float(lat), float(lon)


def check_caption(caption: Any) -> str | None:
    if caption is None:
        return None
    if not isinstance(caption, str):
        raise FeedError(422, "caption must be a string")
    if len(caption) > MAX_CAPTION:
        raise FeedError(422, f"caption is {len(caption)} characters; at most {MAX_CAPTION} are allowed")
    return caption


def check_media_ids(media_ids: Any) -> list[int]:
    if media_ids is None:
        return []
    if not isinstance(media_ids, list):
        raise FeedError(422, "media_ids must be a list of ids from POST /v1/media")
    if len(media_ids) > MAX_MEDIA:
        raise FeedError(422, f"{len(media_ids)} media; a post may carry at most {MAX_MEDIA}")
    out: list[int] = []
    for m in media_ids:
        # ASCII digits only: str.isdigit() also passes '²', which int() refuses; at most 19 of them, as an id has
        text = str(m) if isinstance(m, int) and not isinstance(m, bool) else m
        if not isinstance(text, str) or not (text.isascii() and text.isdigit() and len(text) <= 19) \
                or int(text) >= ID_LIMIT:
            raise FeedError(422, f"media id {m!r} is not an id from POST /v1/media")
        if int(text) not in out:
            out.append(int(text))
    return out


def forget_post(store: ServingStore, deletion: Mapping[str, Any]) -> None:
    """Write the post's tombstone (`deletion`: its POST_DELETION), then delete its own rows: `posts`,
    `author_posts` and its search rows. From the tombstone on, every read skips the post. Idempotent."""
    store.upsert(DELETED_POSTS, dict(deletion))
    store.delete(POSTS, {"post_id": deletion["post_id"]})
    store.delete(AUTHOR_POSTS, {"author_id": deletion["author_id"], "post_id": deletion["post_id"]})
    unindex_post(store, deletion)


class PostService:
    """Validates and writes posts, and publishes them for fanout; deletes them for their author."""

    def __init__(self, store: ServingStore, bus: EventBus, users: UserDirectory | None = None,
                 sequencer: Sequencer | None = None, changed: Callable[[int], None] = lambda _author_id: None,
                 celebrity_threshold: int = Settings.feed_celebrity_threshold) -> None:
        self.store = store
        self.threshold = celebrity_threshold  # a deletion stamps the followers of authors below it
        self.changed = changed  # told the author of each new post (readers' caches)
        self.bus = bus
        self.users = users or UserDirectory(store)
        self.sequencer = sequencer or Sequencer()

    def create(self, user_id: int, caption: Any = None, media_ids: Any = None, hashtags: Any = None,
               geo: Any = None) -> dict[str, Any]:
        text = check_caption(caption)
        media = check_media_ids(media_ids)
        tags = normalise_hashtags(hashtags)
        lat, lon = check_geo(geo)
        self.users.require(user_id)
        for media_id in media:
            row = self.store.get(MEDIA, {"media_id": media_id})
            if row is None:
                raise FeedError(404, f"media {media_id} does not exist; upload it with POST /v1/media first")
            if row["owner_id"] != user_id:
                raise FeedError(403, f"media {media_id} belongs to another user; post your own uploads")
        post_id = self.sequencer.next_id()
        post = schema.validate(POSTS.record, {
            "post_id": post_id, "author_id": user_id, "created_at": id_time(post_id), "caption": text,
            "media_ids": [str(m) for m in media], "hashtags": tags, "lat": lat, "lon": lon,
        })
        self.store.upsert(POSTS, post)
        self.store.upsert(AUTHOR_POSTS, {"author_id": user_id, "post_id": post_id})
        stamp_timelines(self.store, [user_id])  # the author's own home timeline merges their posts
        self.changed(user_id)
        self.bus.produce(POST_CREATED.topic, post, key=str(user_id))
        return {"post_id": post_id, "created_at": schema.to_json_value(POSTS.record.field("created_at"),
                                                                       post["created_at"])}

    def delete(self, user_id: int, post_id: int) -> dict[str, Any]:
        """Delete `post_id` as `user_id`, who must be its author: 404 when there is no such post, 403
        when it is someone else's; deleting one's deleted post again answers the same as the first time."""
        post = self.store.get(POSTS, {"post_id": post_id})
        tombstone = self.store.get(DELETED_POSTS, {"post_id": post_id}) if post is None else None
        known = post or tombstone
        if known is None:
            raise FeedError(404, f"post {post_id} does not exist; take ids from a timeline or "
                                 "GET /v1/users/{user_id}/posts")
        if known["author_id"] != user_id:
            raise FeedError(403, f"post {post_id} is user {known['author_id']}'s; only its author may delete it")
        if post is None:  # deleted before: its event went out first, so the consumer finishes what is left
            return {"post_id": post_id, "deleted": True}
        deletion = schema.validate_event(POST_DELETED, {
            "post_id": post_id, "author_id": user_id, "deleted_at": schema.from_micros(time.time_ns() // 1000),
            "media_ids": post.get("media_ids") or [], "hashtags": post.get("hashtags") or [],
            "lat": post.get("lat"), "lon": post.get("lon"),
        })
        self.bus.produce(POST_DELETED.topic, deletion, key=str(user_id))  # first: the consumer finishes a cut-short delete
        forget_post(self.store, deletion)
        fans = [] if follower_count(self.store, user_id) >= self.threshold else followers(self.store, user_id)
        stamp_timelines(self.store, [user_id, *fans])
        self.changed(user_id)
        return {"post_id": post_id, "deleted": True}
