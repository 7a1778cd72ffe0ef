"""The served answers: the HTTP fast path agrees with the FastAPI route and with a brute force."""

from __future__ import annotations

import pytest
from accounts import bearer, signup
from fastapi.testclient import TestClient

from sixfold.api.app import create_app, create_asgi
from sixfold.typeahead.serving import ArtifactStore
from sixfold.typeahead.trie import build_trie, write_artifact

pytestmark = pytest.mark.unit

SCORES = {"new york": 50.0, "news": 40.0, "netflix": 30.0, "new balance": 30.0, "nasa": 5.0, "café crème": 9.0,
          "new": 1.0}


def brute_force(prefix: str, k: int = 10) -> list[dict]:
    hits = sorted(((p, s) for p, s in SCORES.items() if p.startswith(prefix)), key=lambda ps: (-ps[1], ps[0]))
    return [{"phrase": p, "score": s} for p, s in hits[:k]]


@pytest.fixture
def built(settings):
    store = ArtifactStore(settings)
    version, path = store.new_version()
    write_artifact({"global": build_trie(SCORES.items())}, path, 3)
    store.swap(version)
    return settings


@pytest.mark.parametrize("query, prefix, k", [("ne", "ne", 10), ("new%20", "new ", 10), ("NE&k=2", "ne", 2),
                                              ("caf%C3%A9", "café", 10), ("zz", "zz", 10), ("", "", 10)])
def test_fast_path_and_route_answer_the_same_as_a_brute_force(built, monkeypatch, query, prefix, k):
    outer = TestClient(create_asgi())
    route = TestClient(create_app(built))
    url = f"/v1/suggestions?prefix={query}"
    for client in (outer, route):
        for _ in range(2):  # the second answer may come from the fast path's cache
            answer = client.get(url)
            assert answer.status_code == 200
            assert answer.json()["suggestions"] == brute_force(prefix, k)


@pytest.mark.parametrize("query, status, words", [
    ("k=3", 422, "prefix"), ("prefix=a&k=0", 422, "between 1 and 10"), ("prefix=a&k=x", 422, "integer"),
    ("prefix=a&region=mars", 404, "known regions: global"), ("prefix=" + "a" * 201, 422, "200"),
    ("prefix=a&color=red", 422, "query.color: Extra inputs are not permitted"),
    ("prefix=a&user_id=" + "u" * 129, 422, "128"), ("prefix=a&user_id=42", 401, "no bearer token"),
])
def test_bad_requests_get_a_reason(built, query, status, words):
    for client in (TestClient(create_asgi()), route_only(built)):
        answer = client.get(f"/v1/suggestions?{query}")
        assert answer.status_code == status
        assert words in answer.json()["error"]["message"]


def test_without_a_trie_the_answer_is_503_with_the_fix(settings):
    answer = TestClient(create_asgi()).get("/v1/suggestions?prefix=a")
    assert answer.status_code == 503 and "sixfold typeahead build" in answer.json()["error"]["message"]


def test_a_users_recent_queries_lead_their_suggestions(built):
    """Personalisation: up to 3 of the user's own matching recent queries (newest first), then the trie."""
    from datetime import datetime, timedelta, timezone

    from schemas.records import SERVING_TABLES
    from sixfold.platform.store import SQLiteStore

    client = TestClient(create_asgi())
    (ann, ann_token), (bob, bob_token) = signup(client, "ann"), signup(client, "bob")
    store = SQLiteStore(built.sqlite_path)
    now = datetime.now(timezone.utc)
    for minutes, query in [(5, "nasa"), (4, "new york"), (3, "nebula cat"), (2, "zebra"), (1, "new york")]:
        store.upsert(SERVING_TABLES["user_recent_queries"],
                     {"user_id": str(ann), "ts": now - timedelta(minutes=minutes), "query": query, "region": "eu"})
    # a user's recent searches are theirs: personalised answers need that user's own token
    assert client.get(f"/v1/suggestions?prefix=n&user_id={ann}").status_code == 401
    assert client.get(f"/v1/suggestions?prefix=n&user_id={ann}", headers=bearer(bob_token)).status_code == 403
    mine = client.get(f"/v1/suggestions?prefix=n&user_id={ann}", headers=bearer(ann_token)).json()["suggestions"]
    # the oracle: recent matches newest first, deduplicated, at most 3; then the brute force without them
    lead = ["new york", "nebula cat", "nasa"]
    rest = [s for s in brute_force("n") if s["phrase"] not in lead]
    assert [s["phrase"] for s in mine] == (lead + [s["phrase"] for s in rest])[:10]
    assert mine[1] == {"phrase": "nebula cat", "score": 0.0}  # not a suggestion in the trie (yet)
    others = client.get(f"/v1/suggestions?prefix=n&user_id={bob}", headers=bearer(bob_token)).json()["suggestions"]
    assert others == brute_force("n")


def test_while_the_store_fails_a_personal_request_gets_everyones_suggestions(built, monkeypatch):
    """Degradation (issue 14, item 2): the trie is in memory, the recent queries in the store; a store that
    fails (past its timeout, behind an open breaker) costs the personal part only, never the answer."""
    from sixfold.platform.errors import ServiceUnavailable
    from sixfold.platform.store import SQLiteStore

    client = TestClient(create_asgi())
    ann, token = signup(client, "ann")
    assert client.get(f"/v1/suggestions?prefix=n&user_id={ann}", headers=bearer(token)).status_code == 200

    def failing_query(*args, **kwargs):
        raise ServiceUnavailable("store", "the test's", "timed out (injected)", "wait")

    monkeypatch.setattr(SQLiteStore, "query", failing_query)  # the token stays verified (the auth cache)
    answer = client.get(f"/v1/suggestions?prefix=n&user_id={ann}", headers=bearer(token))
    assert answer.status_code == 200 and answer.json()["suggestions"] == brute_force("n")


def test_a_server_owning_some_shards_sends_the_rest_elsewhere(built, monkeypatch):
    import json

    monkeypatch.setenv("SIXFOLD_TYPEAHEAD_OWNED_SHARDS", "0")
    store = ArtifactStore(built)
    shard_map = json.loads((store.path(store.current()["primary"]) / "shard_map.json").read_text())
    shards = shard_map["regions"]["global"]["shards"]
    client = TestClient(create_asgi())
    for prefix in ("a", "c", "n", "ne", "new", "z"):
        owner = next(s["id"] for s in reversed(shards) if s["first"] <= prefix or s["id"] == 0)
        last_ok = [s for s in shards if s["id"] == owner][0]["last"]
        if prefix > last_ok and owner + 1 < len(shards):
            owner += 1
        answer = client.get(f"/v1/suggestions?prefix={prefix}")
        if owner == 0:
            assert answer.status_code == 200 and answer.json()["suggestions"] == brute_force(prefix)
        else:
            # no other server is registered for that shard (tests/test_typeahead_shards.py has several)
            message = answer.json()["error"]["message"]
            assert answer.status_code == 503 and answer.headers["retry-after"].isdigit()
            assert f"no server owns shard {owner}" in message and "SIXFOLD_TYPEAHEAD_OWNED_SHARDS" in message


def test_the_streams_producer_replays_a_log_onto_the_topic(settings, tmp_path):
    import os
    import subprocess
    import sys

    from sixfold.platform.bus import SpoolBus

    log = tmp_path / "log.jsonl"
    log.write_text('{"user_id": "u1", "query": "  Hello  World ", "region": "EU", "ts": "2026-11-26T10:00:00Z"}\n'
                   '{"user_id": "u2", "query": "", "region": "eu", "ts": "2026-11-26T10:00:01Z"}\n'
                   'not json\n')
    script = os.path.join(os.path.dirname(__file__), "..", "streams", "search_events_producer.py")
    done = subprocess.run([sys.executable, script, str(log), "--rate", "1000"], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "SIXFOLD_HOME": str(settings.home)})
    assert done.returncode == 0, done.stderr
    bus = SpoolBus(settings.spool_dir)
    sent = [m.json() for m in bus.consumer("search-events", "t").poll()]
    assert [(e["query"], e["region"]) for e in sent] == [("hello world", "eu")]
    assert len(bus.consumer("search-events.dlq", "t").poll()) == 2


def route_only(settings) -> TestClient:
    """The app with its FastAPI routes alone (no fast path anywhere): the reference the fast path copies."""
    from sixfold.api.fastpath import FastPaths

    app = create_app(settings)
    app.user_middleware = [m for m in app.user_middleware if m.cls is not FastPaths]
    return TestClient(app)


ODD_QUERIES = [
    "prefix=ne", "prefix=NE&k=3", "prefix=ne&k=3&k=4", "prefix=ne&color=red", "prefix=ne&K=3", "k=3",
    "prefix=ne&k=0", "prefix=ne&k=11", "prefix=ne&k=x", "prefix=ne&k=%203", "prefix=ne&k=+3", "prefix=ne&k=",
    "prefix=" + "a" * 200, "prefix=" + "a" * 201, "prefix=ne&region=" + "r" * 32, "prefix=ne&region=" + "r" * 33,
    "prefix=ne&user_id=" + "9" * 129, "prefix=ne&user_id=", "prefix=ne&region=", "prefix=ne&region=mars",
    "prefix=%00", "prefix=ne&user_id={me}", "prefix=ne&user_id={other}", "prefix=caf%C3%A9&region=GLOBAL",
]


@pytest.mark.parametrize("query", ODD_QUERIES)
@pytest.mark.parametrize("token", ["mine", "none", "forged"])
def test_the_fast_path_answers_every_request_as_the_route_does(built, query, token):
    outer, reference = TestClient(create_asgi()), route_only(built)
    me, my_token = signup(reference, "me")
    other, _ = signup(reference, "other")
    url = "/v1/suggestions?" + query.replace("{me}", str(me)).replace("{other}", str(other))
    headers = {"mine": bearer(my_token), "none": {}, "forged": bearer("sfu_" + "0" * 24 + "." + "A" * 43)}[token]
    want = reference.get(url, headers=headers)
    for _ in range(2):  # the second answer may come from the fast path's cache
        got = outer.get(url, headers=headers)
        assert (got.status_code, got.json()) == (want.status_code, want.json()), url
    assert want.status_code != 500


def test_the_cache_keys_on_the_normalised_request_and_echoes_the_prefix_as_typed(built):
    from sixfold.typeahead.api import SuggestionsFastGet

    client = TestClient(create_asgi())
    spellings = ["NE", "ne", "Ｎｅ", "ne&k=10", "ne&region=", "nE&k=10&region=global"]
    answers = [client.get(f"/v1/suggestions?prefix={s}").json() for s in spellings]
    assert [a["prefix"] for a in answers] == ["NE", "ne", "Ｎｅ", "ne", "ne", "nE"]
    assert all(a["suggestions"] == brute_force("ne") for a in answers)
    fast_paths = client.app
    while not hasattr(fast_paths, "routes"):  # under the server-wide middleware (the in-flight limit)
        fast_paths = fast_paths.app
    fast = next(r for r in fast_paths.routes if isinstance(r, SuggestionsFastGet))
    assert list(fast._cache) == [("ne", 10, "global")]  # one entry for every spelling
    for i in range(20):  # junk never reaches the cache: refused before it
        assert client.get(f"/v1/suggestions?prefix=ne&junk{i}=1").status_code == 422
    assert len(fast._cache) == 1


def test_a_broken_new_trie_leaves_the_last_good_one_serving(built):
    """Degradation (issue 14, item 2): a late or failing pipeline never takes suggestions away. Even a
    pointer swapped to an artifact that cannot be loaded (the DAG's validation would have refused it) leaves
    a running server on the last trie it loaded."""
    import time

    from sixfold.typeahead.serving import Suggester

    suggester = Suggester(built, poll_interval_s=0.02)
    good = suggester.version
    store = ArtifactStore(built)
    version, path = store.new_version()
    write_artifact({"global": build_trie({"zebra": 1.0}.items())}, path, 3)
    for part in path.rglob("*"):
        if part.is_file() and part.name != "shard_map.json":
            part.write_bytes(b"\x00truncated")  # every shard file of the new version is garbage
    store.swap(version)
    suggester.watch()
    try:
        time.sleep(0.3)  # many polls of the pointer
        assert suggester.version == good
        assert suggester.suggest("n")["suggestions"] == brute_force("n")
    finally:
        suggester.close()
