"""One identity for every system: accounts, and the bearer secrets that act for them.

A user signs up once (`UserDirectory.create`) and gets a token; a shortener API key and a chat
device token are further secrets of the same user. Every secret has the shape
`<prefix>_<credential_id>.<secret>`: the id finds its `credentials` row, and the row holds only
`HMAC-SHA256(salt, secret)` with a per-secret random salt, so the store never holds anything that
acts for a user. A secret is 256 random bits: a fast keyed hash is enough (nobody can guess one);
slow password hashes (scrypt, bcrypt) protect low-entropy passwords, which this has none of.
Digests are compared in constant time.

A username is taken once, case-insensitively (`Ada` and `ada` are the same name): the
`usernames` table maps its lower-case form to the user id, and the claim is the store's
`insert_if_absent` (one SQLite write transaction; a lightweight transaction, IF NOT EXISTS, on
Cassandra), so two servers racing for one name cannot both win.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.records import SERVING_TABLES
from sixfold.platform.errors import RequestError
from sixfold.platform.ids import Sequencer, id_time
from sixfold.platform.store import ServingStore

USERS = SERVING_TABLES["users"]
USERNAMES = SERVING_TABLES["usernames"]
CREDENTIALS = SERVING_TABLES["credentials"]
USERNAME_RE = re.compile(r"^[A-Za-z0-9._]{1,64}$")

Kind = Literal["user", "api_key", "device"]
PREFIXES: dict[str, str] = {"user": "sfu", "api_key": "sfk", "device": "sfd"}
_KIND_OF_PREFIX = {prefix: kind for kind, prefix in PREFIXES.items()}
_TOKEN_RE = re.compile(r"^(sf[ukd])_([0-9a-f]{24})\.([A-Za-z0-9_-]{43})$")


class IdentityError(RequestError):
    """A refused sign-up or credential (409 name taken, 422 bad name, 404 unknown user)."""


def check_username(username: Any) -> str:
    """The username as given, or IdentityError(422) saying what a username may contain."""
    if not isinstance(username, str) or not USERNAME_RE.match(username):
        raise IdentityError(422, f"username {username!r} is not valid: use 1 to 64 letters, digits, '.' or '_'")
    return username


def _digest(salt: bytes, secret: str) -> str:
    return hmac.new(salt, secret.encode("ascii"), hashlib.sha256).hexdigest()


class Credentials:
    """Issues secrets (shown once) and tells whose a presented secret is.

    Verified secrets are remembered for `cache_s` seconds (at most `cache_size` of them), so the
    hot read paths pay one dictionary lookup instead of a store read per request; a secret that
    does not verify is never remembered.
    """

    def __init__(self, store: ServingStore, cache_s: float = 60.0, cache_size: int = 100_000,
                 clock: Any = time.monotonic) -> None:
        self.store = store
        self.cache_s = cache_s
        self.cache_size = cache_size
        self.clock = clock
        self._verified: OrderedDict[str, tuple[int, str, str | None, float]] = OrderedDict()
        self._lock = threading.Lock()

    def issue(self, user_id: int, kind: Kind = "user", label: str | None = None) -> str:
        """A new secret for `user_id`; only its salted digest is stored."""
        credential_id = secrets.token_hex(12)
        secret = secrets.token_urlsafe(32)
        salt = secrets.token_bytes(16)
        row = {"credential_id": credential_id, "user_id": user_id, "kind": kind, "salt": salt.hex(),
               "digest": _digest(salt, secret), "label": label, "created_at": datetime.now(UTC)}
        if not self.store.insert_if_absent(CREDENTIALS, row):  # 96 random bits colliding: draw again
            return self.issue(user_id, kind, label)
        return f"{PREFIXES[kind]}_{credential_id}.{secret}"

    def owner(self, token: str | None, kind: Kind = "user") -> int | None:
        """The user a secret of `kind` belongs to, or None (absent, malformed, unknown or wrong)."""
        held = self.holder(token, kind)
        return None if held is None else held[0]

    def holder(self, token: str | None, kind: Kind = "user") -> tuple[int, str | None] | None:
        """(user id, label) of a secret of `kind` (a chat device token's label is its device id), or None."""
        if not token:
            return None
        now = self.clock()
        hit = self._verified.get(token)
        if hit is not None and hit[3] > now:
            return (hit[0], hit[2]) if hit[1] == kind else None
        match = _TOKEN_RE.match(token)
        if match is None or _KIND_OF_PREFIX[match.group(1)] != kind:
            return None
        row = self.store.get(CREDENTIALS, {"credential_id": match.group(2)})
        if row is None or row["kind"] != kind:
            return None
        if not hmac.compare_digest(row["digest"], _digest(bytes.fromhex(row["salt"]), match.group(3))):
            return None
        if self.cache_s > 0:
            with self._lock:
                self._verified[token] = (row["user_id"], kind, row.get("label"), now + self.cache_s)
                self._verified.move_to_end(token)
                while len(self._verified) > self.cache_size:
                    self._verified.popitem(last=False)
        return row["user_id"], row.get("label")

    def revoke(self, token: str) -> bool:
        """Forget a secret everywhere (this server at once; others within `cache_s`)."""
        match = _TOKEN_RE.match(token or "")
        with self._lock:
            self._verified.pop(token, None)
        return match is not None and self.store.delete_if_present(CREDENTIALS, {"credential_id": match.group(2)})


class UserDirectory:
    """Creates users (ids from the sequencer, a token each) and answers whether a user exists."""

    def __init__(self, store: ServingStore, sequencer: Sequencer | None = None,
                 credentials: Credentials | None = None) -> None:
        self.store = store
        self.sequencer = sequencer or Sequencer()
        self.credentials = credentials or Credentials(store)

    def create(self, username: Any) -> dict[str, Any]:
        """`{"user_id", "token"}`: the token is shown here once and never again."""
        name = check_username(username)
        key = name.lower()
        taken = IdentityError(409, f"username {name!r} is taken; choose another")
        if self.store.get(USERNAMES, {"username": key}) is not None:
            raise taken
        user_id = self.sequencer.next_id()
        # the account first: a crash before the claim leaves an unreachable id, never a claim without a user
        self.store.upsert(USERS, {"user_id": user_id, "username": name, "created_at": id_time(user_id)})
        if not self.store.insert_if_absent(USERNAMES, {"username": key, "user_id": user_id}):
            self.store.delete(USERS, {"user_id": user_id})  # lost the race: nobody can reach this id
            raise taken
        return {"user_id": user_id, "token": self.credentials.issue(user_id)}

    def get(self, user_id: int) -> dict[str, Any] | None:
        return self.store.get(USERS, {"user_id": user_id})

    def require(self, user_id: int, role: str = "user") -> dict[str, Any]:
        """The user's row, or IdentityError(404) naming the missing id."""
        row = self.get(user_id)
        if row is None:
            raise IdentityError(404, f"{role} {user_id} does not exist; create it with POST /v1/users first")
        return row
