"""`sixfold bench feed --quick` end to end: generation, fanout counts, Spark job, real server + wrk; no timing asserts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchrun import run_quick_bench

from sixfold.feed.bench_mastodon import MAX_ITEMS, newest_feeds


@pytest.mark.unit
def test_the_peer_is_loaded_with_what_pushing_every_post_would_leave() -> None:
    """The Mastodon-design peer's feeds: LPUSH + LTRIM of every post, in id order, to its author and followers."""
    import random

    rng = random.Random(3)
    follows = {(rng.randrange(40), rng.randrange(40)) for _ in range(300)}
    posts = [(post_id, rng.randrange(40) if rng.random() < 0.7 else 0) for post_id in rng.sample(range(10**6), 3000)]
    replayed: dict[int, list[int]] = {}
    for post_id, author in sorted(posts):
        for user in {author} | {follower for follower, followee in follows if followee == author}:
            replayed[user] = [post_id, *replayed.get(user, [])][:MAX_ITEMS]  # LPUSH + LTRIM
    loaded = dict(newest_feeds(sorted(follows), posts))
    assert loaded == replayed
    assert max(len(ids) for ids in loaded.values()) == MAX_ITEMS  # user 0 posts often: some feeds are capped


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("wrk") is None or shutil.which("redis-server") is None,
                    reason="needs wrk and redis-server (Debian packages)")
def test_quick_feed_bench_writes_every_section(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("feed", tmp_path, 420)

    generation = latest["generation"]
    for figure in ("users", "follows", "posts", "seconds", "rows_written"):
        assert generation[figure] > 0, figure

    fanout = latest["fanout"]
    for name in ("default", "scaled"):
        assert fanout[name]["push"] > 0 and fanout[name]["hybrid"] > 0, name
        assert fanout[name]["hybrid"] <= fanout[name]["push"], name
        assert fanout[name]["ratio_push_over_hybrid"] >= 1.0, name
    assert fanout["default"]["threshold"] == 100_000
    assert fanout["scaled"]["threshold"] < fanout["default"]["threshold"]
    assert fanout["scaled"]["celebrities"] >= 1
    sample = fanout["sqlite_sample"]
    assert sample["push"]["seconds"] > 0 and sample["hybrid"]["seconds"] > 0
    assert sample["push"]["entries"] >= sample["hybrid"]["entries"] > 0

    job = latest["timeline_job"]
    assert job["users"] > 0 and job["entries"] > 0 and job["seconds"] > 0
    assert job["celebrity_threshold"] == fanout["scaled"]["threshold"]

    reads = latest["reads"]
    for figure in ("rps", "p50_ms", "p99_ms", "requests", "users_cycled"):
        assert reads[figure] > 0, figure
    assert reads["non_2xx"] == 0
    assert reads["server_alive_after"]
    assert set(reads["targets"]) >= {"rps_met", "p99_met"}
    # the peer, Mastodon's design on Redis, loaded with the same data: the same first pages, its own figures
    assert reads["first_pages_equal"]["equal"] == reads["first_pages_equal"]["checked"] > 0
    assert reads["mastodon"]["rps"] > 0 and reads["mastodon"]["non_2xx"] == 0
    assert reads["ratio_rps_over_mastodon"] > 0

    mixed = reads["mixed"]
    assert mixed["write_share"] == 0.05
    for side in ("sixfold", "sixfold_page_cache_off", "mastodon"):
        figures = mixed[side]
        assert figures["rps"] > 0 and figures["p99_ms"] > 0, side
        assert figures["non_2xx"] == 0, side  # the writes were accepted (201), not refused or limited
        assert figures["sent"]["writes"] > 0 and figures["after_run"]["published"] > 0, side
    assert mixed["ratio_rps_over_mastodon"] > 0
    assert mixed["targets"]["judged_on"].startswith("the mixed load")
    assert set(mixed["targets"]) >= {"rps_met", "p99_met", "page_cache_off_rps_met", "page_cache_off_p99_met"}
    assert "share the same" in latest["host"]["note"]
