"""Accounts as the feed sees them: the platform's one identity, and the feed's own error type.

Users, usernames and tokens belong to `sixfold.platform.identity` (every system shares them);
this module keeps the feed's names for them.
"""

from __future__ import annotations

from sixfold.platform.errors import RequestError
from sixfold.platform.identity import USERNAME_RE, Credentials, UserDirectory, check_username

__all__ = ["USERNAME_RE", "Credentials", "FeedError", "UserDirectory", "check_username"]


class FeedError(RequestError):
    """A rejected feed request; `status` is the HTTP status that says why (404, 409, 422, ...)."""
