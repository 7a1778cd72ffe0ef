"""Typeahead shards served by several processes: forwarding to an owner, failover to the replica, 503.

Three real `sixfold serve` processes on one SIXFOLD_HOME (so one store, one shard map) own shards
0,1 / 1,2 / 2,0 of a 3-shard trie: every shard has two owners. The oracle is a brute force over
the phrases the trie was built from (and, for a personalised request, the user's recent queries),
not the trie or a server.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from accounts import bearer, signup

from schemas.records import SERVING_TABLES
from sixfold.platform.benchkit import free_port, running, wait_until
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore
from sixfold.typeahead.serving import ArtifactStore
from sixfold.typeahead.sharding import FORWARDED_HEADER, LEASE_S, ShardMap
from sixfold.typeahead.trie import RegionTrie, build_trie, write_artifact

pytestmark = pytest.mark.unit

WORDS = ("new", "news", "net", "nasa", "apple", "app", "apply", "band", "bank", "car", "cart", "cat", "data", "date",
         "dog", "moon", "more", "sea", "search", "seat", "tree", "trip", "true", "york", "zebra", "café")
OWNED = {"a": "0,1", "b": "1,2", "c": "2,0"}  # server -> shards: each shard has an owner and a replica


def phrase_scores(seed: int, count: int) -> dict[str, float]:
    rng = random.Random(seed)
    scores: dict[str, float] = {}
    while len(scores) < count:
        phrase = " ".join(rng.sample(WORDS, rng.choice((1, 2, 2, 3))))
        scores[phrase] = float(rng.randint(1, 500))
    return scores


REGIONS = {"global": phrase_scores(1, 300), "eu": phrase_scores(2, 120)}


def brute_force(region: str, prefix: str, k: int = 10) -> list[dict]:
    hits = sorted(((p, s) for p, s in REGIONS[region].items() if p.startswith(prefix)), key=lambda ps: (-ps[1], ps[0]))
    return [{"phrase": p, "score": s} for p, s in hits[:k]]


def prefixes(region: str) -> list[str]:
    typed = {p[:n] for p in REGIONS[region] for n in (1, 2, 3, 5)} | {"", "zz", "q", "new ", "sea s"}
    return sorted(typed)


def url(region: str, prefix: str, k: int = 10) -> str:
    region_part = "" if region == "global" else f"&region={region}"
    return f"/v1/suggestions?{httpx.QueryParams({'prefix': prefix, 'k': k})}{region_part}"


class Cluster:
    """The three servers, and which shard each (region, prefix) belongs to."""

    def __init__(self, home: Path, stack: ExitStack) -> None:
        store = ArtifactStore(home_settings(home))
        version, path = store.new_version()
        write_artifact({name: build_trie(scores.items()) for name, scores in REGIONS.items()}, path, 3)
        store.swap(version)
        self.routes: dict[str, RegionTrie] = {}
        shard_map = json.loads((path / "shard_map.json").read_text())
        for name, info in shard_map["regions"].items():
            assert len(info["shards"]) == 3
            self.routes[name] = RegionTrie(path / name, info["shards"], owned=set())
        self.procs: dict[str, subprocess.Popen] = {}
        self.clients: dict[str, httpx.Client] = {}
        sixfold = str(Path(sys.executable).parent / "sixfold")
        waits = []
        for name, owned in OWNED.items():
            port = free_port()
            env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_TYPEAHEAD_SHARDS": "3",
                   "SIXFOLD_TYPEAHEAD_OWNED_SHARDS": owned}
            env.pop("SIXFOLD_TYPEAHEAD_URL", None)  # `sixfold serve` registers its own --host/--port
            log = home / f"serve-{name}.log"
            proc = stack.enter_context(running([sixfold, "serve", "--port", str(port), "--no-consumers"], env, log))
            client = stack.enter_context(httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10,
                                                      trust_env=False))
            self.procs[name], self.clients[name] = proc, client
            waits.append((client, proc, log))
        for client, proc, log in waits:
            wait_until(lambda c=client: healthy(c), proc, "sixfold serve", log)

    def shard(self, region: str, prefix: str) -> int:
        return self.routes[region].route(prefix)

    def kill(self, name: str) -> None:
        os.killpg(self.procs[name].pid, signal.SIGKILL)  # the server and anything it started, at once
        self.procs[name].wait()


def home_settings(home: Path) -> Settings:
    return Settings.from_env({"SIXFOLD_HOME": str(home)})


def healthy(client: httpx.Client) -> bool:
    try:
        return client.get("/v1/health").status_code == 200
    except httpx.TransportError:
        return False


@pytest.fixture
def cluster(home: Path):
    with ExitStack() as stack:
        yield Cluster(home, stack)


def assert_every_prefix_answers(cluster: Cluster, servers: tuple[str, ...], failing_shards: set[int] = frozenset()):
    """Each server answers every prefix of every region as the brute force does, except prefixes of
    `failing_shards`, which get a 503 with Retry-After from servers not owning them."""
    asked = {name: 0 for name in servers}
    for region in REGIONS:
        for prefix in prefixes(region):
            shard = cluster.shard(region, prefix)
            for name in servers:
                answer = cluster.clients[name].get(url(region, prefix))
                owns = str(shard) in OWNED[name].split(",")
                if shard in failing_shards and not owns:
                    assert answer.status_code == 503, (name, region, prefix, answer.text)
                    assert answer.headers["retry-after"].isdigit()
                    assert f"shard {shard} of region {region!r}" in answer.json()["error"]["message"]
                    continue
                assert answer.status_code == 200, (name, region, prefix, answer.text)
                assert answer.json() == {"prefix": prefix, "suggestions": brute_force(region, prefix)}, \
                    (name, region, prefix)
                asked[name] += 1
    return asked


def test_every_server_answers_every_prefix_as_one_server_owning_all_shards(cluster: Cluster, home: Path) -> None:
    # the prefixes reach every shard of every region, so every server forwards some and answers some
    for region in REGIONS:
        assert {cluster.shard(region, p) for p in prefixes(region)} == {0, 1, 2}
    assert_every_prefix_answers(cluster, ("a", "b", "c"))
    for name in OWNED:  # k is passed through
        assert cluster.clients[name].get(url("global", "n", k=3)).json()["suggestions"] == brute_force("global", "n", 3)

    # personalised: the user's token goes with the forwarded request, so the owner blends their searches in
    client = cluster.clients["a"]
    ann, token = signup(client, "ann")
    store = SQLiteStore(home_settings(home).sqlite_path)
    now = datetime.now(UTC)
    recent = [(5, "seat"), (4, "sea moon"), (3, "sea zzz unknown"), (2, "tree"), (1, "sea moon")]
    for minutes, query in recent:
        store.upsert(SERVING_TABLES["user_recent_queries"],
                     {"user_id": str(ann), "ts": now - timedelta(minutes=minutes), "query": query, "region": "eu"})
    lead = ["sea moon", "sea zzz unknown", "seat"]  # newest first, once each, at most 3, matching "se"
    scores = REGIONS["global"]
    expected = [{"phrase": q, "score": scores.get(q, 0.0)} for q in lead]
    expected += [s for s in brute_force("global", "se") if s["phrase"] not in lead]
    shard = cluster.shard("global", "se")
    for name in OWNED:  # owners and non-owners alike
        answer = cluster.clients[name].get(url("global", "se") + f"&user_id={ann}", headers=bearer(token))
        assert answer.status_code == 200, (name, answer.text)
        assert answer.json() == {"prefix": "se", "suggestions": expected[:10]}, (name, shard)
        # and a personal request without that user's token is refused at the edge, as on one server
        assert cluster.clients[name].get(url("global", "se") + f"&user_id={ann}").status_code == 401

    # a forwarded request is never forwarded again: a non-owner answers it with a 503 itself
    prefix = next(p for p in prefixes("global") if cluster.shard("global", p) == 0 and brute_force("global", p))
    b = cluster.clients["b"]  # owns 1 and 2
    assert b.get(url("global", prefix)).json()["suggestions"] == brute_force("global", prefix)
    looped = b.get(url("global", prefix), headers={FORWARDED_HEADER: "http://127.0.0.1:1"})
    assert looped.status_code == 503 and looped.headers["retry-after"].isdigit()
    assert "not forwarded again" in looped.json()["error"]["message"]
    # an owner answers a forwarded request as any other
    owned_here = next(p for p in prefixes("global") if cluster.shard("global", p) == 1)
    forwarded = b.get(url("global", owned_here), headers={FORWARDED_HEADER: "http://127.0.0.1:1"})
    assert forwarded.json()["suggestions"] == brute_force("global", owned_here)


def test_an_owner_killed_leaves_the_replica_and_both_killed_a_503(cluster: Cluster) -> None:
    cluster.kill("a")  # owned 0 and 1: their replicas are c (0) and b (1); a stays in the map until its lease ends
    assert_every_prefix_answers(cluster, ("b", "c"))
    cluster.kill("c")  # now shard 0 has no live owner; b owns 1 and 2 itself
    assert_every_prefix_answers(cluster, ("b",), failing_shards={0})


def test_a_dead_servers_rows_leave_the_map_when_its_lease_runs_out(tmp_path: Path) -> None:
    now = [1_000_000.0]
    store = SQLiteStore(tmp_path / "store.db", clock=lambda: now[0])
    alive = ShardMap(store, "http://10.0.0.1:8000", clock=lambda: now[0])
    dead = ShardMap(store, "http://10.0.0.2:8000", clock=lambda: now[0])
    reader = ShardMap(store, "http://10.0.0.3:8000", clock=lambda: now[0])
    alive.register({0, 1}, {0, 1, 2})
    dead.register({1, 2}, {0, 1, 2})
    assert sorted(reader.owners(1)) == ["http://10.0.0.1:8000", "http://10.0.0.2:8000"]
    assert alive.owners(0) == []  # a server never forwards to itself
    now[0] += LEASE_S - 1
    alive.register({0, 1}, {0, 1, 2})  # renewed; `dead` is not
    now[0] += 2
    assert reader.owners(1) == ["http://10.0.0.1:8000"] and reader.owners(2) == []
    alive.register({1}, {0, 1, 2})  # restarted owning fewer shards: its other rows go at once
    now[0] += 2
    assert reader.owners(0) == [] and reader.owners(1) == ["http://10.0.0.1:8000"]
    alive.deregister({1})  # a clean stop
    now[0] += 2
    assert reader.owners(1) == []
