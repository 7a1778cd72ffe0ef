"""`sixfold bench feed --quick` end to end: generation, fanout counts, Spark job, real server + wrk; no timing asserts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchrun import run_quick_bench

pytestmark = pytest.mark.e2e


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk (Debian package)")
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
    assert "share the same" in latest["host"]["note"]
