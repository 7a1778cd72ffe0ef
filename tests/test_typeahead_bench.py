"""`sixfold bench typeahead --quick` end to end: real server, RediSearch, Spark, DuckDB; no timing asserts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from benchrun import run_quick_bench

from sixfold.typeahead.bench import REDISEARCH_MODULE, merged_percentile, parse_redis_benchmark

NEEDS = ("wrk", "redis-server", "redis-benchmark")

REDIS_BENCHMARK_RUN = """
====== FT.SUGGET sug he MAX 10 ======
  10 requests completed in 0.01 seconds
  64 parallel clients

Latency by percentile distribution:
0.000% <= 0.103 milliseconds (cumulative count 1)
50.000% <= 0.295 milliseconds (cumulative count 5)
90.000% <= 1.727 milliseconds (cumulative count 9)
100.000% <= 9.887 milliseconds (cumulative count 10)

Cumulative distribution of latencies:
10.000% <= 0.103 milliseconds (cumulative count 1)
60.000% <= 0.303 milliseconds (cumulative count 6)
90.000% <= 2.103 milliseconds (cumulative count 9)
100.000% <= 10.103 milliseconds (cumulative count 10)

Summary:
  throughput summary: 1000.00 requests per second
"""


@pytest.mark.unit
def test_redis_benchmark_percentiles_are_over_every_request_of_every_run() -> None:
    run = parse_redis_benchmark(REDIS_BENCHMARK_RUN)
    assert (run["requests"], run["rps"]) == (10, 1000.0)
    assert run["p50_ms"] == 0.295 and run["p99_ms"] == 9.887
    # exact histograms (every latency listed): the merged percentile is the pooled requests' percentile
    fast = [(float(ms), n) for n, ms in enumerate(range(1, 91), 1)]  # 90 requests at 1..90 ms
    slow = [(float(ms), n) for n, ms in enumerate(range(1000, 1010), 1)]  # 10 requests at 1000..1009 ms
    pooled = sorted([ms for ms, _ in fast] + [ms for ms, _ in slow])
    for q in (50.0, 90.0, 91.0, 99.0):
        assert merged_percentile([fast, slow], q) == pooled[int(q / 100 * len(pooled) + 0.999999) - 1], q
    # the worst run's p99 (1008 ms) would overstate it; the best run's (90 ms) understate it
    assert merged_percentile([fast, slow], 99.0) == 1008.0 and merged_percentile([fast, slow], 90.0) == 90.0


@pytest.mark.e2e
@pytest.mark.skipif(any(shutil.which(t) is None for t in NEEDS) or not REDISEARCH_MODULE.exists(),
                    reason="needs wrk, redis-server, redis-benchmark and the RediSearch module (Debian packages)")
def test_quick_bench_writes_both_peers_figures(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("typeahead", tmp_path, 300)

    serving = latest["serving"]
    for peer in ("ours", "ours_cache_off", "redisearch"):
        for figure in ("rps", "p50_ms", "p99_ms"):
            assert serving[peer][figure] > 0, (peer, figure)
    assert serving["ours"]["response_cache"] and not serving["ours_cache_off"]["response_cache"]
    assert serving["ours"]["non_2xx"] == 0 and serving["ours_cache_off"]["non_2xx"] == 0
    assert serving["redisearch"]["method"]
    assert serving["ratio_rps_ours_over_redisearch"] > 0 and serving["ratio_rps_ours_cache_off_over_redisearch"] > 0
    assert serving["targets"]["judged_on"].startswith("response cache off")
    # the peer's percentiles are over every request of its runs: never below the best run's, never above the worst's
    runs = serving["redisearch"]["runs"]
    assert sum(r["requests"] for r in runs) == serving["redisearch"]["requests"]
    assert min(r["p99_ms"] for r in runs) <= serving["redisearch"]["p99_ms"] <= serving["redisearch"]["p99_worst_run_ms"]

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
