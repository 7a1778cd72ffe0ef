"""The shortener on both stores (SQLite; real Cassandra with a real Memcached on the cluster profile):
unique keys and alias claims under races, and a delete seen at once by another server sharing Memcached."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from schemas.records import SERVING_TABLES
from sixfold.platform.settings import Settings
from sixfold.shortener.cache import LocalCache, MemcachedCache, open_cache
from sixfold.shortener.keys import KeyPool
from sixfold.shortener.links import LinkError, Links


@pytest.fixture(params=["sqlite", pytest.param("cassandra", marks=pytest.mark.integration)])
def profile(request, settings: Settings):
    if request.param == "sqlite":
        from sixfold.platform.store import SQLiteStore

        store = SQLiteStore(settings.sqlite_path)
        yield store, settings, lambda: LocalCache(1000, 60)
    else:
        from sixfold.platform.store import CassandraStore

        cluster = replace(request.getfixturevalue("services_running"), cassandra_keyspace="sixfold_shortener")
        assert cluster.shortener_memcached  # the cluster profile's default, started by the services fixture
        store = CassandraStore(cluster)
        yield store, cluster, lambda: open_cache(cluster)
    store.close()


def test_racing_creators_get_distinct_keys_and_one_alias_winner(profile) -> None:
    store, settings, cache = profile
    servers = [Links(store, settings, pool=KeyPool(store, block=64), cache=cache()) for _ in range(4)]
    keys: list[list[str]] = [[] for _ in servers]
    alias = f"race-{datetime.now(UTC).strftime('%H%M%S%f')}"
    alias_wins: list[int] = []
    barrier = threading.Barrier(len(servers))

    def work(i: int) -> None:
        barrier.wait()
        try:
            servers[i].create(i, f"https://alias.example/{i}", custom_alias=alias)
            alias_wins.append(i)
        except LinkError as exc:
            assert exc.status == 409
        for n in range(150):
            keys[i].append(servers[i].create(i, f"https://example.com/{i}/{n}")["key"])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(servers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    everything = [k for ks in keys for k in ks]
    assert len(everything) == 600 and len(set(everything)) == 600  # blocks are leased once, whoever asks
    assert len(alias_wins) == 1
    winner = alias_wins[0]
    for server in servers:  # every server resolves every link to what its creator sent
        assert server.resolve(alias).long_url == f"https://alias.example/{winner}"
        for i, ks in enumerate(keys):
            assert server.resolve(ks[7]).long_url == f"https://example.com/{i}/7"


def test_a_delete_shows_on_another_server_and_the_purge_finds_expired_links(profile) -> None:
    store, settings, cache = profile
    one, two = (Links(store, settings, pool=KeyPool(store, block=16), cache=cache()) for _ in range(2))
    row = one.create(1, "https://example.com/doomed")
    assert two.resolve(row["key"]).status == 302  # now cached by the second server
    one.delete(1, row["key"])
    seen = two.resolve(row["key"]).status
    if isinstance(two.cache, MemcachedCache):
        assert seen == 410  # one shared cache: invalidated everywhere at once
    else:
        assert seen == 302  # a per-process LRU keeps it until its TTL (SIXFOLD_SHORTENER_CACHE_TTL_S)
        two.cache.drop(row["key"])
        assert two.resolve(row["key"]).status == 410
    soon = one.create(1, "https://example.com/brief", expire_at=datetime.now(UTC) + timedelta(seconds=2))
    report = one.purge(datetime.now(UTC) + timedelta(seconds=3))
    assert report["purged"] >= 1
    assert store.get(SERVING_TABLES["short_urls"], {"key": soon["key"]})["state"] == "expired"
    assert two.resolve(soon["key"]).status == 410
