"""Signing users up through POST /v1/users and acting as them: every test that writes uses a token."""

from __future__ import annotations

from typing import Any


def signup(client: Any, username: str) -> tuple[int, str]:
    """(user_id, token) of a new user, through the public sign-up route."""
    answer = client.post("/v1/users", json={"username": username})
    assert answer.status_code == 201, answer.text
    body = answer.json()
    return body["user_id"], body["token"]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Authed:
    """A client (TestClient or httpx.Client) that sends one user's token with every request."""

    def __init__(self, client: Any, token: str) -> None:
        self.client, self.token = client, token

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        kwargs["headers"] = {**(kwargs.get("headers") or {}), **bearer(self.token)}
        return self.client.request(method, url, **kwargs)

    def get(self, url: str, **kwargs: Any) -> Any:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> Any:
        return self.request("DELETE", url, **kwargs)
