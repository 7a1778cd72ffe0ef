"""Synthetic users, follows, posts (and stories) for the photo feed: what `sixfold feed generate` writes.

The follow graph is skewed the way real ones are: each user follows a geometric number of
accounts (mean FOLLOWS_MEAN), picked with Zipf weights (s = ZIPF_S) over a seeded ranking of all
users, so a few celebrities collect a large share of all follows while the median user has a
handful. Posts get captions of common English words (wordfreq), 0-4 hashtags from a Zipf tag
vocabulary, and for GEO_SHARE of them a geotag scattered around one of a few cities.

Ids follow the sequencer's layout (time-ordered, 64-bit) with a worker id of its own, so they
never collide with ids the live API hands out. Everything is drawn with numpy in one pass;
the same arguments and seed give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.feed.fanout import is_celebrity
from sixfold.feed.graph import new_follow_version
from sixfold.platform.ids import EPOCH_MS, SEQUENCE_BITS, WORKER_BITS
from sixfold.platform.schema import from_micros
from sixfold.platform.settings import Settings

GENERATOR_WORKER = 1023  # the sequencer's last worker id is reserved for synthetic data
FOLLOWS_MEAN = 30.0
ZIPF_S = 1.05
GEO_SHARE = 0.4
DAYS = 30  # posts span this many days before `end`
WRITE_BATCH = 5000
CITIES: tuple[tuple[str, float, float], ...] = (
    ("new york", 40.7128, -74.0060), ("london", 51.5074, -0.1278), ("paris", 48.8566, 2.3522),
    ("tokyo", 35.6762, 139.6503), ("sao paulo", -23.5505, -46.6333), ("mumbai", 19.0760, 72.8777),
    ("sydney", -33.8688, 151.2093), ("lagos", 6.5244, 3.3792),
)
Progress = Callable[[int], None]


@dataclass
class Generated:
    users: list[dict[str, Any]]
    follows: list[dict[str, Any]]
    posts: list[dict[str, Any]]
    stories: list[dict[str, Any]]

    def follower_counts(self) -> dict[int, int]:
        counts: dict[int, int] = {u["user_id"]: 0 for u in self.users}
        for f in self.follows:
            counts[f["followee_id"]] += 1
        return counts


def _ids(ms: np.ndarray) -> np.ndarray:
    """Sequencer ids for sorted millisecond timestamps: equal milliseconds get sequence 0, 1, ..."""
    ms = np.asarray(ms, dtype=np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(ms)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, len(ms)]))
    seq = np.arange(len(ms)) - first
    if len(seq) and seq.max() > (1 << SEQUENCE_BITS) - 1:
        raise ValueError("more than 4096 synthetic rows in one millisecond; spread them over a longer span")
    return ((ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (GENERATOR_WORKER << SEQUENCE_BITS) | seq


def _zipf_cdf(size: int, s: float) -> np.ndarray:
    weights = 1.0 / np.arange(1, size + 1, dtype=np.float64) ** s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def _words(limit: int = 8000) -> list[str]:
    from wordfreq import top_n_list

    return [w for w in top_n_list("en", limit) if w.isalpha() and w.isascii()]


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def default_end() -> datetime:
    """Midnight UTC today: a stable default, so one seed gives the same data all day."""
    now = datetime.now(timezone.utc)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def generate(users: int, posts: int, stories: int = 0, seed: int = 7, end: datetime | None = None) -> Generated:
    """Draw the whole data set (rows in canonical form, ready for the lake and the store)."""
    if users < 2:
        raise ValueError(f"need at least 2 users to follow each other, got {users}")
    end = end or default_end()
    rng = np.random.default_rng(seed)
    words = _words()
    content = [w for w in words[300:] if len(w) >= 4] or words
    span_ms = DAYS * 86_400_000
    end_ms = _ms(end)

    # users: joined before the posting window, in id (time) order
    joined = np.sort(rng.integers(end_ms - 3 * span_ms, end_ms - span_ms, users))
    user_ids = _ids(joined)
    names = rng.integers(0, len(content), users)
    user_rows = [{"user_id": int(uid), "username": f"{content[n]}_{i}", "created_at": from_micros(int(ms) * 1000)}
                 for i, (uid, n, ms) in enumerate(zip(user_ids.tolist(), names.tolist(), joined.tolist()))]

    # follows: geometric out-degree, Zipf-weighted followees over a seeded popularity order
    out_degree = np.minimum(rng.geometric(1.0 / FOLLOWS_MEAN, users), users - 1)
    follower = np.repeat(np.arange(users), out_degree)
    popularity = rng.permutation(users)  # rank r -> user index
    ranks = np.minimum(np.searchsorted(_zipf_cdf(users, ZIPF_S), rng.random(len(follower)), side="right"), users - 1)
    followee = popularity[ranks]
    keep = follower != followee
    pairs = np.unique(follower[keep].astype(np.int64) * users + followee[keep])
    follower, followee = pairs // users, pairs % users
    follow_ms = np.maximum(joined[follower], joined[followee]) + rng.integers(1, 86_400_000, len(pairs))
    follow_rows = [{"follower_id": int(user_ids[a]), "followee_id": int(user_ids[b]),
                    "created_at": from_micros(int(ms) * 1000)}
                   for a, b, ms in zip(follower.tolist(), followee.tolist(), follow_ms.tolist())]

    # posts: authors with Zipf activity, captions, hashtags, geotags around cities
    post_ms = np.sort(rng.integers(end_ms - span_ms, end_ms, posts))
    post_ids = _ids(post_ms)
    authors = rng.permutation(users)[np.minimum(
        np.searchsorted(_zipf_cdf(users, 0.8), rng.random(posts), side="right"), users - 1)]
    word_cdf = _zipf_cdf(len(content), 1.0)
    tags = content[:400]
    tag_cdf = _zipf_cdf(len(tags), 1.1)
    caption_len = rng.integers(3, 11, posts)
    caption_words = np.searchsorted(word_cdf, rng.random(int(caption_len.sum())), side="right")
    tag_count = rng.integers(0, 5, posts)
    tag_words = np.searchsorted(tag_cdf, rng.random(int(tag_count.sum())), side="right")
    located = rng.random(posts) < GEO_SHARE
    city = rng.integers(0, len(CITIES), posts)
    city_lat = np.array([c[1] for c in CITIES])[city] + rng.normal(0.0, 0.08, posts)
    city_lon = np.array([c[2] for c in CITIES])[city] + rng.normal(0.0, 0.1, posts)
    c_at = np.r_[0, np.cumsum(caption_len)]
    t_at = np.r_[0, np.cumsum(tag_count)]
    post_rows = []
    for i in range(posts):
        hashtags = list(dict.fromkeys(tags[min(t, len(tags) - 1)] for t in tag_words[t_at[i]:t_at[i + 1]].tolist()))
        caption = " ".join(content[min(w, len(content) - 1)] for w in caption_words[c_at[i]:c_at[i + 1]].tolist())
        if hashtags:
            caption += " " + " ".join("#" + t for t in hashtags)
        post_rows.append({
            "post_id": int(post_ids[i]), "author_id": int(user_ids[authors[i]]),
            "created_at": from_micros(int(post_ms[i]) * 1000), "caption": caption, "media_ids": [],
            "hashtags": hashtags,
            "lat": round(float(city_lat[i]), 6) if located[i] else None,
            "lon": round(float(city_lon[i]), 6) if located[i] else None,
        })

    # stories: within the last day, so they are still visible at `end`
    story_ms = np.sort(rng.integers(end_ms - 86_400_000, end_ms, stories))
    story_ids = _ids(story_ms)
    story_authors = rng.integers(0, users, stories)
    story_rows = [{"author_id": int(user_ids[a]), "story_id": int(sid), "media_id": 0,
                   "created_at": from_micros(int(ms) * 1000), "expires_at": from_micros((int(ms) + 86_400_000) * 1000)}
                  for a, sid, ms in zip(story_authors.tolist(), story_ids.tolist(), story_ms.tolist())]
    return Generated(user_rows, follow_rows, post_rows, story_rows)


def serving_rows(data: Generated, celebrity_threshold: int) -> dict[str, list[dict[str, Any]]]:
    """Rows per serving table (the feed's write path, done in bulk)."""
    counts = data.follower_counts()
    return {
        "users": data.users,
        "usernames": [{"username": u["username"], "user_id": u["user_id"]} for u in data.users],
        "followers": data.follows,
        "following": data.follows,
        "follower_counts": [{"user_id": uid, "followers": n} for uid, n in counts.items()],
        "follow_versions": [{"user_id": uid, "version": new_follow_version()}
                            for uid in sorted({f["follower_id"] for f in data.follows})],
        "celebrities": [{"shard": 0, "user_id": uid, "followers": n} for uid, n in sorted(counts.items())
                        if is_celebrity(n, celebrity_threshold)],
        "posts": data.posts,
        "author_posts": [{"author_id": p["author_id"], "post_id": p["post_id"]} for p in data.posts],
        "stories": data.stories,
    }


def write(settings: Settings, data: Generated, store: Any, progress: Progress | None = None) -> dict[str, Any]:
    """Posts and follow events into the lake (whole hourly partitions), every table into the store."""
    from sixfold.platform.lake import ArrowLake

    lake = ArrowLake(settings)
    lake.overwrite_partitions(LAKE_TABLES["posts"], data.posts)
    if progress:
        progress(len(data.posts))
    events = [{"follower_id": f["follower_id"], "followee_id": f["followee_id"], "action": "follow",
               "at": f["created_at"]} for f in data.follows]
    lake.overwrite_partitions(LAKE_TABLES["follow_events"], events)
    if progress:
        progress(len(events))
    written: dict[str, int] = {}
    for name, rows in serving_rows(data, settings.feed_celebrity_threshold).items():
        table = SERVING_TABLES[name]
        written[name] = 0
        for at in range(0, len(rows), WRITE_BATCH):
            chunk = rows[at:at + WRITE_BATCH]
            written[name] += store.upsert_many(table, chunk)
            if progress:
                progress(len(chunk))
    top = sorted(data.follower_counts().items(), key=lambda kv: (-kv[1], kv[0]))[:5]
    return {"lake_posts": len(data.posts), "lake_follow_events": len(events), **written,
            "top_follower_counts": [{"user_id": uid, "followers": n} for uid, n in top]}


def total_rows(data: Generated, celebrity_threshold: int) -> int:
    """How many rows `write` reports through `progress` (for a progress bar's total)."""
    return len(data.posts) + len(data.follows) + sum(len(r) for r in serving_rows(data, celebrity_threshold).values())

