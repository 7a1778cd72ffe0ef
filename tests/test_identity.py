"""Identity and abuse limits: every write and personal read acts only as its token's owner.

The route table comes from the app's own OpenAPI document, so a route added later without a
token check fails here until it has one (or is listed as public on purpose).
"""

from __future__ import annotations

import hashlib
import hmac
import shutil
import socket
import subprocess
import time

import pytest
from accounts import Authed, bearer, signup
from fastapi.testclient import TestClient

from schemas.records import SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.platform.settings import Settings, SettingsError
from sixfold.platform.store import open_store

pytestmark = pytest.mark.unit

# writes anyone may make without a token: signing up is how one gets a token
PUBLIC_WRITES = {("post", "/v1/users")}
# reads that need a token only for a personal variant, given by these query parameters
PERSONAL_VARIANTS = {("get", "/v1/suggestions"): {"prefix": "a", "user_id": "{other}"}}
# a body (or query) for every route that names a user: the named user is someone else, so a valid
# token of the caller must still be refused with 403
NAMING_ANOTHER = {
    ("post", "/v1/follows"): {"json": {"follower_id": "{other}", "followee_id": "{me}"}},
    ("delete", "/v1/follows"): {"json": {"follower_id": "{other}", "followee_id": "{me}"}},
    ("post", "/v1/posts"): {"json": {"user_id": "{other}", "caption": "not mine"}},
    ("post", "/v1/stories"): {"json": {"user_id": "{other}", "media_id": 1}},
    ("post", "/v1/media"): {"params": {"user_id": "{other}"}, "content": b"\x89PNG", "headers": {"content-type": "image/png"}},
    ("post", "/v1/search-events"): {"json": {"user_id": "{other:str}", "query": "q", "region": "us",
                                             "ts": "2026-11-30T10:00:00Z"}},
    ("get", "/v1/timeline/{user_id}"): {},
    ("get", "/v1/stories/feed/{user_id}"): {},
    ("get", "/v1/suggestions"): {"params": {"prefix": "a", "user_id": "{other:str}"}},
    ("delete", "/v1/posts/{post_id}"): {},  # the post in the path is the other user's
    ("post", "/v1/chat/devices"): {"json": {"user_id": "{other}", "device_id": "stolen"}},
    ("get", "/v1/chat/conversations/{conversation_id}/messages"): {},  # the other user's conversation
    ("get", "/v1/chat/groups/{group_id}"): {},  # the group in the path is the other user's, without me
    ("post", "/v1/chat/groups/{group_id}/members"): {"json": {"user_id": "{me}"}},  # joining it uninvited
    ("delete", "/v1/chat/groups/{group_id}/members/{user_id}"): {},  # removing its owner from it
    # docs: the document in the path is the other user's (private), without me as a member
    ("get", "/v1/docs/{doc_id}"): {},
    ("post", "/v1/docs/{doc_id}/edits"): {"json": [[0, 0, "mine now"]]},
    ("get", "/v1/docs/{doc_id}/updates"): {},
    ("post", "/v1/docs/{doc_id}/members"): {"json": {"user_id": "{me}", "role": "editor"}},  # joining it uninvited
    ("get", "/v1/docs/{doc_id}/members"): {},
    ("get", "/v1/docs/{doc_id}/history"): {},
    ("post", "/v1/docs/{doc_id}/restore"): {"json": {"version": 0}},
    ("post", "/v1/docs/{doc_id}/comments"): {"json": {"start": 0, "end": 1, "text": "x"}},
    ("get", "/v1/docs/{doc_id}/comments"): {},
    ("get", "/v1/docs/{doc_id}/views"): {},
}
# routes that take a token but only read what every user may see (a device's public key is public)
TOKEN_READS_OF_PUBLIC = {("get", "/v1/chat/users/{user_id}/devices"),
                         ("get", "/v1/chat/media/{media_id}")}  # by hash, ciphertext: its key is in a message
# chat writes that name no one else to act for: the group's owner, the upload's sender, is the token's owner
CHAT_CREATES = {("post", "/v1/chat/groups"), ("post", "/v1/chat/media")}
# docs: creating a document names no one else (its owner is the token's owner)
DOCS_CREATES = {("post", "/v1/docs")}
# shortener writes that name no one: they act for the API key's owner
SHORTENER_CREATES = {("post", "/v1/urls"), ("post", "/v1/urls:batch")}
FORGED = [
    "sfu_" + "0" * 24 + "." + "A" * 43,  # well formed, never issued
    "not-a-token",
    "sfk_" + "0" * 24 + "." + "A" * 43,  # the shape of an API key
    "",
]


def fill(value, me: int, other: int):
    if isinstance(value, str):
        return {"{me}": me, "{other}": other, "{other:str}": str(other)}.get(value, value)
    if isinstance(value, dict):
        return {k: fill(v, me, other) for k, v in value.items()}
    return value


@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def operations(client: TestClient) -> list[tuple[str, str, dict]]:
    spec = client.get("/openapi.json").json()
    return [(method, path, op) for path, item in spec["paths"].items() for method, op in item.items()]


def url_for(path: str, user: int, post: int = 1, group: int = 1, doc: str = "1") -> str:
    return (path.replace("{user_id}", str(user)).replace("{doc_id}", doc).replace("{media_id}", "1").replace("{tag}", "x")
            .replace("{post_id}", str(post)).replace("{key}", "some-key")
            .replace("{conversation_id}", f"d:{user}:{user}").replace("{group_id}", str(group)))


def test_every_write_and_personal_read_needs_a_valid_token(client: TestClient) -> None:
    ann, ann_token = signup(client, "ann")
    checked = []
    for method, path, op in operations(client):
        needs = method != "get" or "security" in op
        if (method, path) in PUBLIC_WRITES or not needs:
            assert "security" not in op or (method, path) in PERSONAL_VARIANTS, (method, path)
            continue
        if op.get("security") == [{"apiKey": []}]:  # the shortener: an API key of the user, not a token
            for key in [None, ann_token, *FORGED]:
                headers = {} if key is None else {"X-Api-Key": key}
                answer = client.request(method.upper(), url_for(path, ann), headers=headers,
                                        json={"long_url": "https://example.com/", "urls": [{"long_url": "https://a.b/"}]})
                assert answer.status_code == 401, (method, path, key, answer.text)
                assert answer.headers["www-authenticate"].startswith("ApiKey")
            checked.append((method, path))
            continue
        # a route that acts for someone declares the bearer scheme (so clients and fuzzers see it)
        assert op.get("security") == [{"bearer": []}], f"{method.upper()} {path} declares no bearer token"
        params = fill(PERSONAL_VARIANTS.get((method, path), {}), ann, ann)
        for token in [None, *FORGED]:
            headers = {} if token is None else {"Authorization": f"Bearer {token}"}
            answer = client.request(method.upper(), url_for(path, ann), params=params, headers=headers)
            assert answer.status_code == 401, (method, path, token, answer.text)
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["www-authenticate"].startswith("Bearer")
        checked.append((method, path))
    assert ("post", "/v1/posts") in checked and ("get", "/v1/timeline/{user_id}") in checked
    assert ("post", "/v1/urls") in checked and ("get", "/v1/urls/{key}/stats") in checked
    assert len(checked) >= 13


def test_a_token_never_acts_for_another_user(client: TestClient) -> None:
    (me, my_token), (other, other_token) = signup(client, "me"), signup(client, "other")
    as_me = Authed(client, my_token)
    theirs = Authed(client, other_token).post("/v1/posts", json={"user_id": other, "caption": "theirs"})
    their_post = theirs.json()["post_id"]
    my_key = {"X-Api-Key": as_me.post("/v1/api-keys").json()["api_key"]}
    their_key = {"X-Api-Key": Authed(client, other_token).post("/v1/api-keys").json()["api_key"]}
    their_group = Authed(client, other_token).post("/v1/chat/groups", json={"name": "theirs"}).json()["group_id"]
    their_link = client.post("/v1/urls", json={"long_url": "https://example.com/"}, headers=their_key).json()["key"]
    their_doc = Authed(client, other_token).post("/v1/docs", json={"title": "theirs"}).json()["doc_id"]
    Authed(client, other_token).post(f"/v1/docs/{their_doc}/edits", json=[[0, 0, "private"]])
    covered, covered_links = set(), set()
    for method, path, op in operations(client):
        if op.get("security") == [{"apiKey": []}]:  # the shortener: another user's link, with my own key
            if (method, path) in SHORTENER_CREATES:
                continue  # a creation names nobody: the link is the key owner's
            answer = client.request(method.upper(), path.replace("{key}", their_link), headers=my_key)
            assert answer.status_code == 403, (method, path, answer.text)
            assert "belongs to another user" in answer.json()["error"]["message"]
            covered_links.add((method, path))
            continue
        if "security" not in op:
            continue
        if (method, path) in TOKEN_READS_OF_PUBLIC | CHAT_CREATES | DOCS_CREATES:
            continue
        assert (method, path) in NAMING_ANOTHER or (method, path) == ("post", "/v1/api-keys"), \
            f"{method.upper()} {path} takes a token: add a request naming another user to NAMING_ANOTHER"
        if (method, path) not in NAMING_ANOTHER:
            continue
        answer = as_me.request(method.upper(), url_for(path, other, their_post, their_group, their_doc),
                               **fill(NAMING_ANOTHER[(method, path)], me, other))
        assert answer.status_code == 403, (method, path, answer.text)
        message = answer.json()["error"]["message"]
        assert f"acts for user {me}" in message or "only its author" in message or \
            f"user {me} is not a member" in message, message
        covered.add((method, path))
    assert covered == set(NAMING_ANOTHER)
    assert covered_links == {("delete", "/v1/urls/{key}"), ("get", "/v1/urls/{key}/stats")}


def test_the_store_keeps_only_a_salted_hash_of_each_token(client: TestClient, settings: Settings) -> None:
    user, token = signup(client, "hashed")
    _, twin = signup(client, "twin")
    prefix, rest = token.split("_", 1)
    credential_id, secret = rest.split(".")
    assert prefix == "sfu" and len(secret) >= 43  # 256 random bits
    store = open_store(settings)
    everything = repr([store.scan(table) for table in SERVING_TABLES.values()])
    assert secret not in everything and token not in everything
    row = store.get(SERVING_TABLES["credentials"], {"credential_id": credential_id})
    # the oracle: HMAC-SHA256 keyed with the row's salt, computed here
    assert row["digest"] == hmac.new(bytes.fromhex(row["salt"]), secret.encode(), hashlib.sha256).hexdigest()
    assert row["user_id"] == user and row["kind"] == "user"
    twin_row = store.get(SERVING_TABLES["credentials"], {"credential_id": twin.split("_", 1)[1].split(".")[0]})
    assert twin_row["salt"] != row["salt"]
    # a token with one character changed is refused
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    assert client.get(f"/v1/timeline/{user}", headers=bearer(flipped)).status_code == 401
    assert client.get(f"/v1/timeline/{user}", headers=bearer(token)).status_code == 200


def test_api_keys_belong_to_the_bearer_and_are_not_tokens(client: TestClient, settings: Settings) -> None:
    from sixfold.platform.identity import Credentials

    user, token = signup(client, "shortener.user")
    assert client.post("/v1/api-keys").status_code == 401
    answer = Authed(client, token).post("/v1/api-keys")
    assert answer.status_code == 201
    key = answer.json()["api_key"]
    assert key.startswith("sfk_") and key != token
    credentials = Credentials(open_store(settings), cache_s=0)
    assert credentials.owner(key, "api_key") == user
    assert credentials.owner(key, "user") is None and credentials.owner(token, "api_key") is None
    assert client.get(f"/v1/timeline/{user}", headers=bearer(key)).status_code == 401


def test_sign_ups_past_the_limit_get_429_with_retry_after(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("SIXFOLD_LIMIT_SIGNUP_PER_CLIENT", "3/minute")
    with TestClient(create_app(Settings.from_env())) as client:
        for i in range(3):
            signup(client, f"early{i}")
        refused = client.post("/v1/users", json={"username": "late"})
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_requests"
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "SIXFOLD_LIMIT_SIGNUP_PER_CLIENT" in refused.json()["error"]["message"]
        assert open_store(settings).get(SERVING_TABLES["usernames"], {"username": "late"}) is None


def test_writes_past_the_per_user_limit_get_429_and_other_users_go_on(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("SIXFOLD_LIMIT_WRITES_PER_USER", "4/minute")
    with TestClient(create_app(Settings.from_env())) as client:
        (ann, ann_token), (bob, bob_token) = signup(client, "ann"), signup(client, "bob")
        as_ann, as_bob = Authed(client, ann_token), Authed(client, bob_token)
        codes = [as_ann.post("/v1/posts", json={"user_id": ann, "caption": str(i)}).status_code for i in range(6)]
        assert codes == [201] * 4 + [429] * 2
        late = as_ann.post("/v1/posts", json={"user_id": ann, "caption": "late"})
        assert 1 <= int(late.headers["retry-after"]) <= 60
        assert as_bob.post("/v1/posts", json={"user_id": bob, "caption": "mine"}).status_code == 201
        posts = open_store(settings).query(SERVING_TABLES["author_posts"], {"author_id": ann})
        assert len(posts) == 4  # the refused writes wrote nothing


def test_writes_past_the_per_client_limit_get_429_whoever_writes(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("SIXFOLD_LIMIT_WRITES_PER_CLIENT", "5/minute")
    with TestClient(create_app(Settings.from_env())) as client:
        users = [signup(client, f"u{i}") for i in range(3)]
        codes = [Authed(client, token).post("/v1/posts", json={"user_id": uid}).status_code
                 for uid, token in users for _ in range(2)]
        assert codes == [201] * 5 + [429]


@pytest.mark.parametrize("var, value", [
    ("SIXFOLD_LIMIT_WRITES_PER_USER", "lots"),
    ("SIXFOLD_LIMIT_SIGNUP_PER_CLIENT", "5 per fortnight"),
    ("SIXFOLD_RATE_LIMIT_STORAGE", "mongodb://x"),
    ("SIXFOLD_AUTH_CACHE_S", "-1"),
])
def test_bad_limit_settings_fail_at_start_naming_the_variable(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_an_empty_limit_turns_it_off(monkeypatch, settings: Settings) -> None:
    monkeypatch.setenv("SIXFOLD_LIMIT_SIGNUP_PER_CLIENT", "")
    with TestClient(create_app(Settings.from_env())) as client:
        for i in range(25):  # past the default 20/minute
            signup(client, f"many{i}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.integration
def test_two_servers_share_one_count_in_redis(settings: Settings, monkeypatch, tmp_path) -> None:
    """Several API processes behind one address: with Redis storage the limit holds across them."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed (scripts/system-deps.sh installs it)")
    port = _free_port()
    proc = subprocess.Popen([redis_server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL)
    try:
        import redis

        for _ in range(100):
            try:
                redis.Redis(port=port).ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        monkeypatch.setenv("SIXFOLD_RATE_LIMIT_STORAGE", f"redis://127.0.0.1:{port}")
        monkeypatch.setenv("SIXFOLD_LIMIT_SIGNUP_PER_CLIENT", "4/minute")
        one, two = TestClient(create_app(Settings.from_env())), TestClient(create_app(Settings.from_env()))
        codes = [(one if i % 2 else two).post("/v1/users", json={"username": f"r{i}"}).status_code for i in range(6)]
        assert codes == [201] * 4 + [429] * 2
    finally:
        proc.terminate()
        proc.wait(10)
    # the storage gone: a clear 503 naming it, never a 500 or a write let through unchecked
    down = TestClient(create_app(Settings.from_env())).post("/v1/users", json={"username": "after"})
    assert down.status_code == 503 and "rate-limit storage" in down.json()["error"]["message"]
