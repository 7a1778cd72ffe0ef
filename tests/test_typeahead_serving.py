"""The served answers: the HTTP fast path agrees with the FastAPI route and with a brute force."""

from __future__ import annotations

import pytest
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
])
def test_bad_requests_get_a_reason(built, query, status, words):
    for client in (TestClient(create_asgi()), TestClient(create_app(built))):
        answer = client.get(f"/v1/suggestions?{query}")
        assert answer.status_code == status
        assert words in answer.json()["error"]["message"]


def test_without_a_trie_the_answer_is_503_with_the_fix(settings):
    answer = TestClient(create_asgi()).get("/v1/suggestions?prefix=a")
    assert answer.status_code == 503 and "sixfold typeahead build" in answer.json()["error"]["message"]
