"""Fuzzing every documented operation with schemathesis: no 500, and every answer as documented.

Schemathesis reads `/openapi.json` and generates requests for each operation, valid ones and
invalid ones; each answer must be a documented status, with a documented content type and
headers, and a body matching the documented schema. The app is the one `sixfold serve` runs
(`create_asgi`: the fast GET paths in front of FastAPI). Requests carry the bearer token of a
signed-up user, and about half of the generated ones name that user (and their followee and
image) instead of a stranger, so the 2xx paths run too, not only the 403 a stranger's id earns.
A hand-written journey then walks every 2xx path with non-empty answers (a post with media,
hashtags and a place, a follow, a story, searches), which random requests rarely reach, and
holds those answers to the same checks. The run is derandomized: a failure in CI replays here.
"""

from __future__ import annotations

import io
import json

import hypothesis
import pytest
import schemathesis
from accounts import bearer, signup
from fastapi.testclient import TestClient
from hypothesis import strategies as st
from PIL import Image
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from schemas.records import SERVING_TABLES
from sixfold.api.app import create_app, create_asgi
from sixfold.feed import geo
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore
from sixfold.typeahead.serving import ArtifactStore
from sixfold.typeahead.trie import build_trie, write_artifact

pytestmark = pytest.mark.e2e

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance,
          response_headers_conformance]
SCORES = {"new york": 50.0, "news": 40.0, "netflix": 30.0, "nasa": 5.0, "café crème": 9.0}
# Per operation; with the coverage phase's own cases, the whole run stays near half a minute. One app
# serves all of an operation's requests (the `served` fixture), as a server would: no reset between them.
FUZZ = hypothesis.settings(max_examples=40, deadline=None, derandomize=True, database=None,
                           suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture,
                                                  hypothesis.HealthCheck.too_slow,
                                                  hypothesis.HealthCheck.filter_too_much,
                                                  hypothesis.HealthCheck.data_too_large])


def png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (48, 32), color).save(out, "PNG")
    return out.getvalue()


@pytest.fixture
def served(settings, monkeypatch) -> dict:
    """The app `sixfold serve` runs, on the test's home: a tiny trie built, the abuse limits off, two users
    (the token's owner and the one they may follow), and an image of each."""
    for name in ("SIGNUP_PER_CLIENT", "WRITES_PER_USER", "WRITES_PER_CLIENT"):
        monkeypatch.setenv(f"SIXFOLD_LIMIT_{name}", "")  # thousands of requests in seconds: not abuse here
    # a followed author's posts are pulled at read time, so a timeline shows them with no fanout consumer running
    monkeypatch.setenv("SIXFOLD_FEED_CELEBRITY_THRESHOLD", "1")
    trie = ArtifactStore(settings)
    version, path = trie.new_version()
    write_artifact({"global": build_trie(SCORES.items())}, path, 3)
    trie.swap(version)
    app = create_asgi()
    client = TestClient(app)
    assert client.get("/openapi.json").json() == schema.raw_schema, "the fuzzed document is the served one"
    user_id, token = signup(client, "fuzzer")
    other_id, other_token = signup(client, "followee")
    media = [client.post("/v1/media", content=png(color), headers={**bearer(tok), "Content-Type": "image/png"})
             for color, tok in (((200, 80, 40), token), ((40, 80, 200), other_token))]
    assert all(m.status_code == 201 for m in media), [m.text for m in media]
    OWNER.update(user_id=user_id, other_id=other_id, media_id=media[0].json()["media_id"])
    return {"app": app, "settings": settings, "token": token, "other_token": other_token,
            "user_id": user_id, "other_id": other_id, "other_media_id": media[1].json()["media_id"]}


# The document is read at collection, from an app that touches no store (serving /openapi.json needs
# none), so pytest gets one test per operation; each request goes to the test's own app (`app=`).
# (`schemathesis.pytest.from_fixture` would read it per test, but schemathesis 4.32 fails on pytest
# 9.2's nodes there: `'Function' object has no attribute '_nodeid'`.)
schema = schemathesis.openapi.from_asgi("/openapi.json", create_app(Settings()), config=schemathesis.Config(seed=6))

OWNER: dict[str, int] = {}  # the `served` fixture's ids: the hooks below draw while its test runs
OWN_FIELDS = {"user_id": "user_id", "follower_id": "user_id", "followee_id": "other_id", "media_id": "media_id"}


def as_owner(value):
    """`value` (a body, path or query) naming the token's owner, their followee and their image; an id
    generated as a string (a search event's user_id) stays a string."""
    if isinstance(value, list):  # a batch of search events
        return [as_owner(item) for item in value]
    if not isinstance(value, dict):
        return value
    return {key: (str(OWNER[OWN_FIELDS[key]]) if isinstance(v, str) else OWNER[OWN_FIELDS[key]])
            if key in OWN_FIELDS and isinstance(v, (int, str)) and not isinstance(v, bool) else v
            for key, v in value.items()}


def owner_or_stranger(_context, value):
    return st.sampled_from([value, as_owner(value)])


for location in ("body", "path_parameters", "query"):
    schema.hook(f"flatmap_{location}")(owner_or_stranger)


@schema.parametrize()
@FUZZ
def test_every_operation_answers_as_documented(case, served):
    case.call_and_validate(headers=bearer(served["token"]), checks=CHECKS, app=served["app"])


def test_every_success_path_answers_as_documented(served):
    """The 2xx answers with something in them, each held to the document like a fuzzed one."""
    me, other = served["user_id"], served["other_id"]

    def call(method: str, path: str, token: str | None = None, expect: int = 200, **parts) -> dict | bytes:
        case = schema[path][method].Case(**parts)
        answer = case.call_and_validate(headers=bearer(token or served["token"]), checks=CHECKS, app=served["app"])
        assert answer.status_code == expect, answer.text
        return answer.json() if "json" in answer.headers.get("content-type", [""])[0] else answer.content

    # the followee posts (their image, hashtags, a place) and a story; search indexes it as its job would
    mid = served["other_media_id"]
    post = call("POST", "/v1/posts", served["other_token"], 201, body={
        "user_id": other, "caption": "sunset", "media_ids": [mid], "hashtags": ["#Sunset", "beach"],
        "geo": {"lat": 51.5, "lon": -0.12}})
    call("POST", "/v1/stories", served["other_token"], 201, body={"user_id": other, "media_id": mid})
    store = SQLiteStore(served["settings"].sqlite_path)
    store.upsert(SERVING_TABLES["hashtag_posts"], {"tag": "sunset", "post_id": post["post_id"], "author_id": other})
    cell = geo.encode(51.5, -0.12, 6)
    for length in range(1, len(cell) + 1):
        store.upsert(SERVING_TABLES["geo_posts"],
                     {"cell": cell[:length], "post_id": post["post_id"], "lat": 51.5, "lon": -0.12})

    # the token's owner follows them, and reads
    assert call("POST", "/v1/follows", expect=201, body={"follower_id": me, "followee_id": other})["following"]
    timeline = call("GET", "/v1/timeline/{user_id}", path_parameters={"user_id": me}, query={"limit": 5})
    assert [p["post_id"] for p in timeline["posts"]] == [post["post_id"]]
    stories = call("GET", "/v1/stories/feed/{user_id}", path_parameters={"user_id": me})
    assert [a["author_id"] for a in stories["authors"]] == [other]
    assert call("GET", "/v1/search/hashtags/{tag}", path_parameters={"tag": "Sunset"})["posts"]
    assert call("GET", "/v1/search/geo", query={"lat": 51.5, "lon": -0.1, "radius_km": 5})["posts"]
    for size in ("original", "feed", "thumb"):
        assert call("GET", "/v1/media/{media_id}", path_parameters={"media_id": mid}, query={"size": size})
    etag = schema["/v1/media/{media_id}"]["GET"].Case(path_parameters={"media_id": mid}).call(
        app=served["app"]).headers["etag"][0]
    call("GET", "/v1/media/{media_id}", expect=304, path_parameters={"media_id": mid},
         headers={"If-None-Match": etag})

    # the owner's own writes, then an unfollow
    call("POST", "/v1/posts", expect=201, body={"user_id": me, "caption": "hello", "media_ids": [OWNER["media_id"]]})
    call("POST", "/v1/search-events", expect=202, body=[
        {"user_id": str(me), "query": "New York", "region": "eu", "ts": "2026-11-26T10:03:00Z"}])
    assert call("GET", "/v1/suggestions", query={"prefix": "ne", "k": 3, "user_id": str(me)})["suggestions"]
    assert call("GET", "/v1/suggestions", query={"prefix": "ne"})["suggestions"]
    assert not call("DELETE", "/v1/follows", body={"follower_id": me, "followee_id": other})["following"]
    call("POST", "/v1/api-keys", expect=201)
    call("POST", "/v1/users", expect=201, body={"username": "newcomer"})
    call("GET", "/v1/health")


ME = object()  # stands for the token owner's id in the table below
FOUND = [  # (method, path, body or raw bytes, content type, status, words of the reason)
    ("GET", f"/v1/media/{2**63}", None, None, 422, "media_id"),
    ("POST", "/v1/follows", {"follower_id": ME, "followee_id": 10**20}, None, 422, "followee_id"),
    ("POST", "/v1/stories", {"user_id": ME, "media_id": 2**63}, None, 422, "media_id"),
    ("POST", "/v1/posts", {"user_id": ME, "media_ids": ["²"]}, None, 422, "not an id from POST /v1/media"),
    ("POST", "/v1/posts", {"user_id": ME, "media_ids": ["9" * 5000]}, None, 422, "not an id from POST /v1/media"),
    ("POST", "/v1/posts", b"\xff{}", "application/json", 400, "not UTF-8"),
    ("POST", "/v1/posts", b"{", "application/json", 422, "not valid JSON"),
    ("POST", "/v1/posts", b"", "application/json", 422, "the body is missing"),
    ("POST", "/v1/search-events", b"new york", "text/plain", 422, "Content-Type: application/json"),
]


@pytest.mark.parametrize("method, path, body, content_type, status, words", FOUND,
                         ids=[f"{m} {p[:24]} {i}" for i, (m, p, *_rest) in enumerate(FOUND)])
def test_what_fuzzing_turned_up_is_refused_with_its_reason(served, method, path, body, content_type, status, words):
    """Each was a 500 (an id past 64 bits reached the store; '²' passes str.isdigit() but not int(); 5000
    digits are past int()'s limit) or a reason that did not say what to fix ("0: JSON decode error")."""
    headers = bearer(served["token"])
    if isinstance(body, dict):
        body = json.dumps({k: served["user_id"] if v is ME else v for k, v in body.items()}).encode()
        content_type = "application/json"
    if content_type:
        headers["Content-Type"] = content_type
    answer = TestClient(served["app"]).request(method, path, content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert words in answer.json()["error"]["message"]
