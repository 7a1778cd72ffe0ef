"""Accounts: creating a user with a unique username, and looking users up.

A username is taken once, case-insensitively (`Ada` and `ada` are the same name): the
`usernames` table maps its lower-case form to the user id, and the claim is the store's
`insert_if_absent` (one SQLite write transaction; a lightweight transaction, IF NOT EXISTS, on
Cassandra), so two servers racing for one name cannot both win.
"""

from __future__ import annotations

import re
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.platform.ids import Sequencer, id_time
from sixfold.platform.store import ServingStore

USERS = SERVING_TABLES["users"]
USERNAMES = SERVING_TABLES["usernames"]
USERNAME_RE = re.compile(r"^[A-Za-z0-9._]{1,64}$")


class FeedError(ValueError):
    """A rejected feed request; `status` is the HTTP status that says why (404, 409, 422, ...)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_username(username: Any) -> str:
    """The username as given, or FeedError(422) saying what a username may contain."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise FeedError(422, f"username {username!r} is not valid: use 1 to 64 letters, digits, '.' or '_'")
    return username


class UserDirectory:
    """Creates users (ids from the sequencer) and answers whether a user exists."""

    def __init__(self, store: ServingStore, sequencer: Sequencer | None = None) -> None:
        self.store = store
        self.sequencer = sequencer or Sequencer()

    def create(self, username: Any) -> dict[str, Any]:
        name = check_username(username)
        key = name.lower()
        taken = FeedError(409, f"username {name!r} is taken; choose another")
        if self.store.get(USERNAMES, {"username": key}) is not None:
            raise taken
        user_id = self.sequencer.next_id()
        # the account first: a crash before the claim leaves an unreachable id, never a claim without a user
        self.store.upsert(USERS, {"user_id": user_id, "username": name, "created_at": id_time(user_id)})
        if not self.store.insert_if_absent(USERNAMES, {"username": key, "user_id": user_id}):
            self.store.delete(USERS, {"user_id": user_id})  # lost the race: nobody can reach this id
            raise taken
        return {"user_id": user_id}

    def get(self, user_id: int) -> dict[str, Any] | None:
        return self.store.get(USERS, {"user_id": user_id})

    def require(self, user_id: int, role: str = "user") -> dict[str, Any]:
        """The user's row, or FeedError(404) naming the missing id."""
        row = self.get(user_id)
        if row is None:
            raise FeedError(404, f"{role} {user_id} does not exist; create it with POST /v1/users first")
        return row
