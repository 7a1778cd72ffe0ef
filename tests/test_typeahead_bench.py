"""`sixfold bench typeahead --quick` end to end: real server, RediSearch, Spark, DuckDB; no timing asserts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchrun import run_quick_bench

from sixfold.typeahead.bench import REDISEARCH_MODULE

pytestmark = pytest.mark.e2e

NEEDS = ("wrk", "redis-server", "redis-benchmark")


@pytest.mark.skipif(any(shutil.which(t) is None for t in NEEDS) or not REDISEARCH_MODULE.exists(),
                    reason="needs wrk, redis-server, redis-benchmark and the RediSearch module (Debian packages)")
def test_quick_bench_writes_both_peers_figures(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("typeahead", tmp_path, 300)

    serving = latest["serving"]
    for peer in ("ours", "redisearch"):
        for figure in ("rps", "p50_ms", "p99_ms"):
            assert serving[peer][figure] > 0, (peer, figure)
    assert serving["ours"]["non_2xx"] == 0
    assert serving["redisearch"]["method"]
    assert serving["ratio_rps_ours_over_redisearch"] > 0

    aggregation = latest["aggregation"]
    for engine in ("spark", "duckdb"):
        assert aggregation[engine]["seconds"] > 0
    assert aggregation["spark"]["jvm_start_s"] > 0 and aggregation["spark"]["repeat_seconds"] > 0
    assert aggregation["cross_check"]["equal"], aggregation["cross_check"]
    assert aggregation["ratio_spark_over_duckdb"] > 0

    build = latest["trie_build"]
    for figure in ("build_and_write_s", "peak_rss_mib", "artifact_bytes", "load_s"):
        assert build[figure] > 0, figure
    assert "share the same" in latest["host"]["note"]
