"""The peer of `sixfold bench feed`: Mastodon's home-feed design on Redis (benchmark tooling, not the product).

Mastodon keeps each account's home feed in Redis as the newest post ids, capped at 400
(`FeedManager::MAX_ITEMS`); a post is pushed to every follower's feed, and its author's own, by a
background job (`FanOutOnWriteService` in a Sidekiq worker, whose queue is itself a Redis list); a
follow merges the followee's newest MAX_ITEMS / 4 posts into the follower's feed (`MergeWorker`);
a page is the newest ids of the feed followed by the posts by id. Here, with Redis lists as the
issue names them (Mastodon uses sorted sets scored by id; for ids pushed newest-first the order is
the same), and Redis standing in for Mastodon's database too (posts by id, an author's newest ids):

- a post (web request): SET post:{id} to its JSON, LPUSH + LTRIM its id on author:{author} (the
  author's newest 100), RPUSH a distribution job on the queue;
- a follow (web request): SADD follower to followers:{followee}, RPUSH a merge job on the queue;
- the worker (`python -m sixfold.feed.bench_mastodon fanout`, one process, jobs in order): a
  distribution job is SMEMBERS followers:{author}, then one pipeline of LPUSH feed:{f} id + LTRIM
  feed:{f} 0 399 for every follower and the author; a merge job reads the followee's newest 100 ids
  and the follower's feed, and rewrites the feed as the newest 400 of both (MULTI: DEL + RPUSH);
- a read: LRANGE feed:{user} 0 limit, MGET post:{id} of the first `limit`, answered in the same JSON
  as sixfold's timeline (first pages only: the benchmark reads no others).

Served the way `sixfold serve` serves: the timeline GET by a raw ASGI handler in front of FastAPI
(the shape of `sixfold.api.fastpath`), the writes by FastAPI routes with pydantic bodies and a
bearer-token dependency, all with blocking Redis calls as sixfold's handlers make blocking store
calls; a token is looked up in Redis (token:{sha256}) and trusted for 60 s in the worker, as
sixfold's `auth_cache_s` does. Run it with `uvicorn sixfold.feed.bench_mastodon:create_app --factory`
and SIXFOLD_BENCH_PEER_REDIS=redis://...
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

import numpy as np
import orjson
from fastapi import Depends, FastAPI, HTTPException, Request
from pydantic import BaseModel

MAX_ITEMS = 400  # Mastodon's FeedManager::MAX_ITEMS
MERGE_ITEMS = MAX_ITEMS // 4  # a follow merges the followee's newest this many posts (Mastodon's merge_into_home)
QUEUE = "queue:feeds"
NEXT_POST_ID = "next_post_id"
TOKEN_TTL_S = 60.0  # sixfold's auth_cache_s default
REDIS_URL_VAR = "SIXFOLD_BENCH_PEER_REDIS"
LOAD_BATCH = 2_000


def token_key(token: str) -> str:
    return "token:" + hashlib.sha256(token.encode()).hexdigest()


def cursor_of(post_id: int) -> str:
    """sixfold's cursor (`encode_cursor`), so both answer the same bytes."""
    return base64.urlsafe_b64encode(f"t:{post_id}".encode()).decode().rstrip("=")


# ---- loading: the end state of replaying every post through LPUSH + LTRIM -----------------------
def newest_feeds(follows: Iterable[tuple[int, int]], posts: Iterable[tuple[int, int]],
                 cap: int = MAX_ITEMS) -> Iterator[tuple[int, list[int]]]:
    """(user, the newest `cap` post ids by the user and the users they follow, newest first) for every
    user with one: what LPUSH + LTRIM of every post, in id order, to its author and their followers
    leaves in each feed."""
    by_author: dict[int, list[int]] = {}
    for post_id, author in posts:
        by_author.setdefault(author, []).append(post_id)
    arrays = {a: np.sort(np.asarray(ids, dtype=np.int64))[::-1][:cap] for a, ids in by_author.items()}
    sources: dict[int, set[int]] = {a: {a} for a in arrays}
    for follower, followee in follows:
        if followee in arrays:
            sources.setdefault(follower, set()).add(followee)
    for user, authors in sources.items():
        merged = np.concatenate([arrays[a] for a in authors])
        if len(merged) > cap:
            merged = np.partition(merged, len(merged) - cap)[len(merged) - cap:]
        yield user, np.sort(merged)[::-1].tolist()


def load(client: Any, follows: list[tuple[int, int]], posts: list[dict[str, Any]],
         post_json: Any, tokens: dict[str, int]) -> dict[str, int]:
    """Posts, authors' newest ids, follower sets, every feed and the tokens into the (empty) Redis of `client`."""
    pipe = client.pipeline(transaction=False)
    by_author: dict[int, list[int]] = {}
    for at in range(0, len(posts), LOAD_BATCH):
        batch = posts[at:at + LOAD_BATCH]
        pipe.mset({f"post:{p['post_id']}": orjson.dumps(post_json(p)) for p in batch})
        pipe.execute()
        for p in batch:
            by_author.setdefault(p["author_id"], []).append(p["post_id"])
    for n, (author, ids) in enumerate(by_author.items(), 1):
        pipe.rpush(f"author:{author}", *sorted(ids, reverse=True)[:MERGE_ITEMS])
        if n % LOAD_BATCH == 0:
            pipe.execute()
    followers: dict[int, list[int]] = {}
    for follower, followee in follows:
        if follower != followee:
            followers.setdefault(followee, []).append(follower)
    for n, (followee, fans) in enumerate(followers.items(), 1):
        pipe.sadd(f"followers:{followee}", *fans)
        if n % LOAD_BATCH == 0:
            pipe.execute()
    pipe.execute()
    entries = feeds = 0
    for user, ids in newest_feeds([(a, b) for a, b in follows if a != b],
                                  ((p["post_id"], p["author_id"]) for p in posts)):
        pipe.rpush(f"feed:{user}", *ids)
        entries += len(ids)
        feeds += 1
        if feeds % 500 == 0:
            pipe.execute()
    pipe.execute()
    for token, user in tokens.items():
        pipe.set(token_key(token), user)
    pipe.set(NEXT_POST_ID, max((p["post_id"] for p in posts), default=0))
    pipe.execute()
    return {"posts": len(posts), "follower_sets": len(followers), "feeds": feeds, "feed_entries": entries,
            "tokens": len(tokens)}


def first_page(client: Any, user_id: int, limit: int = 20) -> dict[str, Any]:
    """A page as the server answers it, read with a plain client (the benchmark's cross-check)."""
    ids = [int(i) for i in client.lrange(f"feed:{user_id}", 0, limit)]
    rows = client.mget([f"post:{i}" for i in ids[:limit]]) if ids else []
    return {"user_id": user_id, "posts": [orjson.loads(r) for r in rows if r is not None],
            "next_cursor": cursor_of(ids[limit - 1]) if len(ids) > limit else None}


# ---- the worker (Sidekiq's part) ---------------------------------------------------------------------
def distribute(client: Any, post_id: bytes, author: bytes) -> None:
    """A post into its author's followers' feeds and the author's own."""
    fans = client.smembers(b"followers:" + author)
    pipe = client.pipeline(transaction=False)
    for user in (*fans, author):
        pipe.lpush(b"feed:" + user, post_id)
        pipe.ltrim(b"feed:" + user, 0, MAX_ITEMS - 1)
    pipe.execute()


def merge(client: Any, follower: bytes, followee: bytes) -> None:
    """The followee's newest MERGE_ITEMS posts into the follower's feed, keeping the newest MAX_ITEMS."""
    pipe = client.pipeline(transaction=False)
    pipe.lrange(b"author:" + followee, 0, MERGE_ITEMS - 1)
    pipe.lrange(b"feed:" + follower, 0, -1)
    theirs, feed = pipe.execute()
    merged = sorted({int(i) for i in theirs} | {int(i) for i in feed}, reverse=True)[:MAX_ITEMS]
    if merged:
        pipe = client.pipeline(transaction=True)
        pipe.delete(b"feed:" + follower)
        pipe.rpush(b"feed:" + follower, *merged)
        pipe.execute()


def work_forever(url: str) -> None:
    """Pop jobs in order (one worker: no two jobs race on a feed) and run them; count each done."""
    import redis

    client = redis.Redis.from_url(url)
    while True:
        job = client.blpop([QUEUE], timeout=1)
        if job is None:
            continue
        kind, a, b = job[1].split(b":")
        (distribute if kind == b"post" else merge)(client, a, b)
        client.incr(b"done:" + kind)


# ---- the web app -----------------------------------------------------------------------------------
class HomeFeeds:
    """What a web worker shares between requests: the Redis client and the tokens it has verified."""

    def __init__(self, url: str) -> None:
        import redis

        # blocking calls, as sixfold's fast path makes its store reads: on two shared cores redis-py's
        # asyncio client costs about twice the CPU a call of the blocking one does (measured here)
        self.redis = redis.Redis.from_url(url)
        self._tokens: dict[str, tuple[int, float]] = {}

    def owner(self, headers: Iterable[tuple[bytes, bytes]]) -> int | None:
        token = next((v.decode("latin-1")[7:] for k, v in headers
                      if k == b"authorization" and v[:7].lower() == b"bearer "), None)
        if not token:
            return None
        now = time.monotonic()
        hit = self._tokens.get(token)
        if hit is not None and hit[1] > now:
            return hit[0]
        found = self.redis.get(token_key(token))
        if found is None:
            return None
        if len(self._tokens) > 100_000:
            self._tokens.clear()
        self._tokens[token] = (int(found), now + TOKEN_TTL_S)
        return int(found)

    def timeline(self, user_id: int, limit: int) -> bytes:
        ids = self.redis.lrange(f"feed:{user_id}", 0, limit)
        rows = self.redis.mget([b"post:" + i for i in ids[:limit]]) if ids else []
        cursor = orjson.dumps(cursor_of(int(ids[limit - 1]))) if len(ids) > limit else b"null"
        return (b'{"user_id":' + str(user_id).encode() + b',"posts":[' + b",".join(r for r in rows if r is not None)
                + b'],"next_cursor":' + cursor + b"}")

    def post(self, author: int, caption: str | None, hashtags: list[str]) -> dict[str, Any]:
        post_id = int(self.redis.incr(NEXT_POST_ID))
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = orjson.dumps({"post_id": post_id, "author_id": author, "created_at": created, "caption": caption,
                             "media": [], "hashtags": hashtags})
        pipe = self.redis.pipeline(transaction=False)
        pipe.set(f"post:{post_id}", body)
        pipe.lpush(f"author:{author}", post_id)
        pipe.ltrim(f"author:{author}", 0, MERGE_ITEMS - 1)
        pipe.rpush(QUEUE, f"post:{post_id}:{author}")
        pipe.execute()
        return {"post_id": post_id, "created_at": created}

    def follow(self, follower: int, followee: int) -> dict[str, Any]:
        pipe = self.redis.pipeline(transaction=False)
        pipe.sadd(f"followers:{followee}", follower)
        pipe.rpush(QUEUE, f"merge:{follower}:{followee}")
        pipe.execute()
        return {"follower_id": follower, "followee_id": followee, "following": True}


class TimelineFastGet:
    """GET /v1/timeline/{user_id}?limit=N as a raw ASGI handler in front of the FastAPI app."""

    PATH = re.compile(r"/v1/timeline/([0-9]{1,18})")

    def __init__(self, app: Any, feeds: HomeFeeds) -> None:
        self.app = app
        self.feeds = feeds

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        matched = self.PATH.fullmatch(scope["path"]) if scope["type"] == "http" and scope["method"] == "GET" else None
        if matched is None:
            await self.app(scope, receive, send)
            return
        params = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        user_id, limit = int(matched.group(1)), params.get("limit", "20")
        acting = self.feeds.owner(scope["headers"])
        if not limit.isdigit() or not 1 <= int(limit) <= 100:
            status, body = 422, b'{"detail":"limit must be 1..100"}'
        elif acting is None:
            status, body = 401, b'{"detail":"a bearer token is needed"}'
        elif acting != user_id:
            status, body = 403, b'{"detail":"a timeline is its owner\'s"}'
        else:
            status, body = 200, self.feeds.timeline(user_id, int(limit))
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class NewPost(BaseModel):
    user_id: int
    caption: str | None = None
    media_ids: list[int | str] = []
    hashtags: list[str] = []


class FollowEdge(BaseModel):
    follower_id: int
    followee_id: int


def create_app() -> Any:
    """The peer's ASGI app (uvicorn --factory), on the Redis named by SIXFOLD_BENCH_PEER_REDIS."""
    feeds = HomeFeeds(os.environ[REDIS_URL_VAR])
    api = FastAPI(title="Mastodon-design home feeds (sixfold bench peer)")

    def acting_user(request: Request) -> int:
        acting = feeds.owner(request.scope["headers"])
        if acting is None:
            raise HTTPException(401, "a bearer token is needed")
        return acting

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.post("/v1/posts", status_code=201)
    def post_post(post: NewPost, acting: int = Depends(acting_user)) -> Any:
        if acting != post.user_id:
            raise HTTPException(403, "post as yourself")
        return feeds.post(post.user_id, post.caption, [t.lstrip("#").lower() for t in post.hashtags])

    @api.post("/v1/follows", status_code=201)
    def post_follow(edge: FollowEdge, acting: int = Depends(acting_user)) -> Any:
        if acting != edge.follower_id:
            raise HTTPException(403, "follow as yourself")
        return feeds.follow(edge.follower_id, edge.followee_id)

    return TimelineFastGet(api, feeds)


if __name__ == "__main__":
    if sys.argv[1:] != ["worker"]:
        sys.exit("usage: python -m sixfold.feed.bench_mastodon worker  (with SIXFOLD_BENCH_PEER_REDIS set)")
    work_forever(os.environ[REDIS_URL_VAR])
