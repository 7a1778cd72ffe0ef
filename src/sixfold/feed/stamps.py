"""Timeline stamps: one random number per user, replaced whenever their timeline's rows move.

A server keeps answered timeline pages (`timelines.TimelineReader`) and reuses one only while
nothing it was built from has moved. Whom the user follows is stamped in `follow_versions`
(`graph`); everything else a page is built from, the user's `timelines` rows and their own posts,
is stamped here in `timeline_versions`. Every writer stamps after it has written its rows: fanout
(any push, in any order), a follow's recent posts, the offline job's repairs, a deletion, and the
user's own post or deletion. A reader reads the stamp before it builds, so a write it may have
missed changes the stamp it kept and the next read builds afresh.

A stamp is a fresh random number rather than a counter: writers on many servers need no
read-modify-write, and the last writer's number differs from the one a reader saw (a 62-bit draw
repeats with negligible odds). One number serves a whole batch of users: what matters is only
that each of them gets a value their readers have not seen.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable

from schemas.records import SERVING_TABLES
from sixfold.platform.store import ServingStore

TIMELINE_VERSIONS = SERVING_TABLES["timeline_versions"]
WRITE_BATCH = 5000


def timeline_version(store: ServingStore, user_id: int) -> int | None:
    """The user's timeline stamp (None: never stamped, e.g. since a bulk load)."""
    row = store.get(TIMELINE_VERSIONS, {"user_id": user_id})
    return row["version"] if row else None


def stamp_timelines(store: ServingStore, user_ids: Iterable[int]) -> int:
    """Give each user a fresh stamp; call after their rows are written. Returns how many were stamped."""
    version = secrets.randbits(62)
    users = sorted(set(user_ids))
    for start in range(0, len(users), WRITE_BATCH):
        store.upsert_many(TIMELINE_VERSIONS, [{"user_id": u, "version": version}
                                              for u in users[start:start + WRITE_BATCH]])
    return len(users)
