"""Who is asking, for every router: the bearer token's owner, checked against what a request names.

`acting_user` is the FastAPI dependency of a personal read; `writing_user` also counts the
write against the abuse limits (per client address and per user). `require_self` turns "the
body names someone else" into a 403. The fast paths, which bypass FastAPI, use `token_owner`
on the raw ASGI headers and give the same answers.
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sixfold.platform.app_state import app_store, shared
from sixfold.platform.errors import RequestError

bearer = HTTPBearer(auto_error=False, scheme_name="bearer",
                    description="the token from POST /v1/users: `Authorization: Bearer <token>`")
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="sixfold"'}


def app_credentials(app: Any) -> Any:
    """The app's one `Credentials` (its verified-token cache is per process)."""
    from sixfold.platform.identity import Credentials

    return shared(app.state, "credentials",
                  lambda: Credentials(app_store(app), cache_s=app.state.settings.auth_cache_s))


def app_limits(app: Any) -> Any:
    """The app's one `AbuseLimits`."""
    from sixfold.platform.abuse import AbuseLimits

    return shared(app.state, "abuse_limits", lambda: AbuseLimits(app.state.settings))


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def unauthorized(token: str | None) -> RequestError:
    why = ("no bearer token: send `Authorization: Bearer <token>` (POST /v1/users gives one)" if not token
           else "the bearer token is not valid: use the token POST /v1/users returned for this user")
    return RequestError(401, why, headers=CHALLENGE)


def acting_user(request: Request,
                credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> int:
    """The token owner's user id, or 401."""
    token = credentials.credentials if credentials else None
    user = app_credentials(request.app).owner(token)
    if user is None:
        raise unauthorized(token)
    return user


def writing_user(request: Request, user: int = Depends(acting_user)) -> int:
    """`acting_user`, with the write counted against the abuse limits (429 past them)."""
    app_limits(request.app).write(client_address(request), user)
    return user


def signup_allowed(request: Request) -> None:
    """Sign-ups are counted per client address (429 past the limit)."""
    app_limits(request.app).signup(client_address(request))


def optional_user(request: Request,
                  credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> int | None:
    """The token owner when a token is sent (401 when it is not valid), else None."""
    if credentials is None:
        return None
    return acting_user(request, credentials)


def require_self(acting: int, named: Any, field: str = "user_id") -> None:
    """403 unless `named` (a body or path value) is the acting user."""
    if str(named) != str(acting):
        raise RequestError(403, f"{field} {named} is not you: this token acts for user {acting}, and nobody "
                                "acts for someone else; send that user's own token")


def bearer_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token of raw ASGI headers (None when absent or another scheme)."""
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() or None if scheme.lower() == "bearer" else None
    return None


def token_owner(app: Any, headers: list[tuple[bytes, bytes]]) -> tuple[int | None, str | None]:
    """(owner, token) for a fast path: owner None when the token is absent or not valid."""
    token = bearer_from_headers(headers)
    return app_credentials(app).owner(token), token


def app_users(app: Any) -> Any:
    """The app's one `UserDirectory` (sign-ups, and whether a user exists)."""
    from sixfold.platform.app_state import app_sequencer
    from sixfold.platform.identity import UserDirectory

    return shared(app.state, "user_directory",
                  lambda: UserDirectory(app_store(app), app_sequencer(app), app_credentials(app)))
