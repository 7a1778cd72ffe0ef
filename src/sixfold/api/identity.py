"""HTTP doors of the shared identity: sign-up (a user and their token) and shortener API keys."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from sixfold.platform.auth import app_credentials, app_users, signup_allowed, writing_user
from sixfold.platform.errors import error_responses

router = APIRouter(tags=["identity"])


class NewUser(BaseModel):
    username: str = Field(..., description="1 to 64 letters, digits, '.' or '_'; unique, case-insensitively",
                          examples=["ada.lovelace"])


class CreatedUser(BaseModel):
    user_id: int
    token: str = Field(..., description="bearer secret for `Authorization: Bearer`; shown once, stored only as a hash")


class CreatedApiKey(BaseModel):
    api_key: str = Field(..., description="send as `X-Api-Key` to the shortener; shown once, stored only as a hash")


@router.post("/v1/users", status_code=201, response_model=CreatedUser,
             summary="Sign up: a user with a free username, and their bearer token (shown once)",
             responses=error_responses(400, 409, 422, 429, 503, why={409: "the username is taken; choose another",
                                                                429: "too many sign-ups from this address"}))
def post_user(request: Request, user: NewUser, _: None = Depends(signup_allowed)) -> Any:
    return app_users(request.app).create(user.username)


@router.post("/v1/api-keys", status_code=201, response_model=CreatedApiKey,
             summary="A new shortener API key for the token's owner (shown once)",
             responses=error_responses(401, 429, 503))
def post_api_key(request: Request, user: int = Depends(writing_user)) -> Any:
    return {"api_key": app_credentials(request.app).issue(user, "api_key")}
