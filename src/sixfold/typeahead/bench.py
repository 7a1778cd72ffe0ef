"""`sixfold bench typeahead`: our serving, aggregation and trie build measured beside a peer, in one run.

Three parts, each with both figures taken in the same run on the same machine:

1. serving: the real `sixfold serve` (uvicorn, 2 workers) driven by wrk with prefixes as users type
   them, twice: with its response cache (the default) and without it (`SIXFOLD_TYPEAHEAD_RESPONSE_CACHE=0`,
   a trie lookup on every request, as RediSearch does: the like-for-like figure, on which the target is
   judged); against RediSearch's suggestion dictionary (FT.SUGGET) driven by redis-benchmark, its
   percentiles computed over every request of every prefix's run (their latency histograms merged);
2. aggregation: the 15-minute window counts over a synthetic search log, Spark against DuckDB,
   with a cross-check that both produce the same rows and the same total;
3. trie build: `build_trie` + `write_artifact` for a million phrases (time, peak RSS, size, load).

Servers and load generators share the machine's cores; the JSON says so. Every process started
here is stopped in a `finally`, Ctrl-C included. Results go to `var/bench/typeahead-<UTC>.json/.png`
and `typeahead-latest.json/.png`.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

from sixfold.platform import benchkit
from sixfold.platform.benchkit import (
    Say,
    free_port,
    require,
    running,
    wait_until,
    with_load,
)
from sixfold.platform.settings import Settings

REDISEARCH_MODULE = Path("/usr/lib/redis/modules/redisearch.so")
SUG_KEY = "sixfold:bench:sug"
VOCABULARY = 20_000
WORDS_PER_PHRASE = (0.3, 0.45, 0.25)  # shares of 1-, 2- and 3-word phrases
SCORE_ZIPF_S = 1.1  # the phrase of popularity rank r scores ~ 1 / r**1.1
WORD_ZIPF_S = 0.9  # words are drawn Zipf-like too, so phrases share prefixes the way queries do
LOG_REGIONS = ("us", "in", "gb", "de")
LOG_START = "2025-01-01T00:00:00Z"
LOG_HOURS = 2.0
TARGET_RPS = 8_000.0
TARGET_P99_MS = 20.0
TARGET_SPARK_OVER_DUCKDB = 3.0


@dataclass(frozen=True)
class BenchOptions:
    phrases: int = 200_000
    prefixes: int = 20_000
    duration_s: int = 15
    connections: int = 64
    threads: int = 2
    workers: int = 2
    redis_prefixes: int = 100  # redis-benchmark sends one fixed command: one run per prefix ...
    redis_requests: int = 5_000  # ... of this many requests
    log_rows: int = 10_000_000
    build_phrases: int = 1_000_000
    seed: int = 7

    @classmethod
    def quick(cls) -> BenchOptions:
        return cls(phrases=5_000, prefixes=2_000, duration_s=2, redis_prefixes=8, redis_requests=2_000,
                   log_rows=50_000, build_phrases=20_000)


# ---- workload ------------------------------------------------------------------------------------
def vocabulary(limit: int = VOCABULARY) -> list[str]:
    import wordfreq

    return [w for w in wordfreq.top_n_list("en", limit) if w.replace("'", "").isalpha()]


def make_phrases(n: int, seed: int) -> dict[str, int]:
    """`n` distinct 1-3 word phrases with Zipf-distributed integer scores; same n and seed, same dict."""
    rng = np.random.default_rng(seed)
    words = np.array(vocabulary(), dtype=object)
    word_p = 1.0 / np.arange(1, len(words) + 1) ** WORD_ZIPF_S
    word_p /= word_p.sum()
    seen: dict[str, None] = {}
    while len(seen) < n:
        batch = max(1024, 2 * (n - len(seen)))
        lengths = rng.choice(3, size=batch, p=WORDS_PER_PHRASE) + 1
        drawn = words[rng.choice(len(words), size=(batch, 3), p=word_p)]
        for row, length in zip(drawn, lengths):
            seen[" ".join(row[:length])] = None
            if len(seen) == n:
                break
    phrases = list(seen)
    order = rng.permutation(n)  # popularity rank independent of generation order
    scores = np.maximum(1, np.rint(1e6 / (order + 1.0) ** SCORE_ZIPF_S)).astype(np.int64)
    return dict(zip(phrases, scores.tolist()))


def sample_prefixes(scores: dict[str, int], n: int, seed: int) -> list[str]:
    """Prefixes as users type them: a phrase drawn by popularity, cut at a random length 1..len."""
    rng = np.random.default_rng(seed + 1)
    phrases = list(scores)
    weights = np.fromiter(scores.values(), dtype=np.float64, count=len(phrases))
    picks = rng.choice(len(phrases), size=n, p=weights / weights.sum())
    out = []
    for i in picks.tolist():
        phrase = phrases[i]
        out.append(phrase[: int(rng.integers(1, len(phrase) + 1))])
    return out


# ---- part 1: serving ------------------------------------------------------------------------------
def bench_ours(scores: dict[str, int], prefixes: list[str], opts: BenchOptions, work: Path, say: Say) -> dict:
    from sixfold.typeahead.serving import ArtifactStore
    from sixfold.typeahead.trie import build_trie, write_artifact

    require("wrk")  # before the trie build, not after it
    home = work / "serving-home"
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"}
    settings = Settings.from_env(env)
    started = time.perf_counter()
    store = ArtifactStore(settings)
    version, path = store.new_version()
    write_artifact({"global": build_trie(scores.items())}, path, settings.typeahead_shards)
    store.swap(version)
    say(f"trie for {len(scores):,} phrases built in {time.perf_counter() - started:.1f} s")

    paths = [f"/v1/suggestions?prefix={quote(p, safe='')}&k=10" for p in prefixes]
    runs = {}
    for name, cache in (("cache_on", "1"), ("cache_off", "0")):
        # the first request loads the trie in that worker; the warm-up keeps every worker's load out of the figures
        figures = benchkit.wrk_against_serve({**env, "SIXFOLD_TYPEAHEAD_RESPONSE_CACHE": cache}, paths, "suggestions",
                                             workers=opts.workers, threads=opts.threads,
                                             connections=opts.connections, duration_s=opts.duration_s, work=work,
                                             say=say, what=f", response cache {'on' if cache == '1' else 'off'}")
        figures.pop("sample")
        say(f"sixfold, response cache {name[6:]}: {figures['rps']:,.0f} req/s, p50 {figures.get('p50_ms', 0):.2f} ms, "
            f"p99 {figures.get('p99_ms', 0):.2f} ms")
        runs[name] = {
            **figures,
            "response_cache": cache == "1",
            "server": f"{figures['server']}, SIXFOLD_TYPEAHEAD_RESPONSE_CACHE={cache}",
            "load_generator": f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s --latency, Lua "
                              f"script cycling {len(prefixes):,} URL-encoded prefixes (GET "
                              "/v1/suggestions?prefix=...&k=10); p50/p99 = wrk's percentiles over every request",
        }
    return runs


_CDF_POINT = re.compile(r"^\s*([\d.]+)% <= ([\d.]+) milliseconds \(cumulative count (\d+)\)", re.MULTILINE)


def parse_redis_benchmark(output: str) -> dict[str, Any]:
    """One run of `redis-benchmark` (not --csv, not -q) for a custom command: its requests, seconds,
    throughput, and its latency histogram as (ms, requests at or under it) points, from both of the
    distributions it prints (by percentile, and cumulative at fixed steps)."""
    m = re.search(r"(\d+) requests completed in ([\d.]+) seconds", output)
    t = re.search(r"throughput summary: ([\d.]+) requests per second", output)
    if not m or not t:
        raise ValueError("no 'requests completed' or 'throughput summary' in redis-benchmark output:\n" + output[-2000:])
    points = sorted({(float(ms), int(count)) for _pct, ms, count in _CDF_POINT.findall(output)})
    if not points:
        raise ValueError("no latency distribution in redis-benchmark output:\n" + output[-2000:])
    requests = int(m.group(1))
    run = {"requests": requests, "seconds": float(m.group(2)), "rps": float(t.group(1)), "cdf": points}
    for q in (50.0, 99.0):
        run[f"p{q:g}_ms"] = merged_percentile([points], q)
    return run


def merged_percentile(cdfs: list[list[tuple[float, int]]], q: float) -> float:
    """The q-th percentile over every request of several runs, from each run's (ms, count at or under)
    points: the smallest listed latency at or under which q% of all requests fall. Between its listed
    points a run is counted at the lower point, so the figure never understates a percentile, and
    it is as fine as the histograms printed (0.1 ms steps to 2 ms, 1 ms to 100 ms, plus the
    percentile ticks)."""
    grid = np.unique(np.concatenate([[ms for ms, _ in cdf] for cdf in cdfs]))
    below = np.zeros(len(grid), dtype=np.int64)
    total = 0
    for cdf in cdfs:
        ms = np.array([p[0] for p in cdf])
        counts = np.maximum.accumulate(np.array([p[1] for p in cdf], dtype=np.int64))
        at = np.searchsorted(ms, grid, side="right") - 1
        below += np.where(at >= 0, counts[np.maximum(at, 0)], 0)
        total += int(counts[-1])
    return float(grid[int(np.searchsorted(below, q / 100.0 * total, side="left"))])


def bench_redisearch(scores: dict[str, int], prefixes: list[str], opts: BenchOptions, work: Path, say: Say) -> dict:
    import redis

    server, benchmark = require("redis-server"), require("redis-benchmark")
    if not REDISEARCH_MODULE.exists():
        raise RuntimeError(f"RediSearch module not found at {REDISEARCH_MODULE}; install redis-redisearch")
    port = free_port()
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--loadmodule", str(REDISEARCH_MODULE),
           "--save", "", "--appendonly", "no", "--dir", str(work)]
    log_path = work / "redis.log"
    with running(cmd, None, log_path) as proc:
        client = redis.Redis(port=port)
        wait_until(lambda: bool(client.ping()), proc, "redis-server", log_path)
        started = time.perf_counter()
        items = list(scores.items())
        for lo in range(0, len(items), 10_000):
            pipe = client.pipeline(transaction=False)
            for phrase, score in items[lo:lo + 10_000]:
                pipe.execute_command("FT.SUGADD", SUG_KEY, phrase, score)
            pipe.execute()
        loaded = int(client.execute_command("FT.SUGLEN", SUG_KEY))
        say(f"RediSearch: {loaded:,} suggestions loaded in {time.perf_counter() - started:.1f} s")
        probe = client.execute_command("FT.SUGGET", SUG_KEY, prefixes[0], "MAX", 10)
        if not probe:
            raise RuntimeError(f"FT.SUGGET returned nothing for {prefixes[0]!r}")
        nonempty = sum(1 for p in prefixes[:500] if client.execute_command("FT.SUGGET", SUG_KEY, p, "MAX", 10))

        rng = np.random.default_rng(opts.seed + 2)
        chosen = [prefixes[i] for i in rng.choice(len(prefixes), size=opts.redis_prefixes, replace=False).tolist()]
        say(f"redis-benchmark -c {opts.connections} --threads {opts.threads}: {len(chosen)} prefixes x "
            f"{opts.redis_requests:,} FT.SUGGET each")
        runs = []
        for prefix in chosen:
            out = subprocess.run([benchmark, "-h", "127.0.0.1", "-p", str(port), "-c", str(opts.connections),
                                  "--threads", str(opts.threads), "-n", str(opts.redis_requests),
                                  "FT.SUGGET", SUG_KEY, prefix, "MAX", "10"],
                                 capture_output=True, text=True, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"redis-benchmark failed: {out.stderr}\n{out.stdout}")
            runs.append({"prefix": prefix, **parse_redis_benchmark(out.stdout)})
        stats = client.info("commandstats").get("cmdstat_FT.SUGGET", {})
        errors = int(stats.get("failed_calls", 0)) + int(stats.get("rejected_calls", 0))
        calls = int(stats.get("calls", 0))
    total_requests = sum(r["requests"] for r in runs)
    total_time = sum(r["requests"] / r["rps"] for r in runs)
    cdfs = [r.pop("cdf") for r in runs]
    return {
        "rps": total_requests / total_time,
        "p50_ms": merged_percentile(cdfs, 50.0),
        "p90_ms": merged_percentile(cdfs, 90.0),
        "p99_ms": merged_percentile(cdfs, 99.0),
        "p99_9_ms": merged_percentile(cdfs, 99.9),
        "p99_worst_run_ms": max(r["p99_ms"] for r in runs),
        "requests": total_requests,
        "duration_s": total_time,
        "error_replies": errors,
        "server_counted_calls": calls,
        "loaded": loaded,
        "nonempty_share_first_500_prefixes": nonempty / min(500, len(prefixes)),
        "server": f"redis-server {redis_version(server)} + RediSearch ({REDISEARCH_MODULE}), no persistence",
        "method": ("redis-benchmark sends one fixed command, so it ran once per prefix for "
                   f"{len(runs)} prefixes drawn uniformly from the same prefix list wrk cycles for sixfold "
                   f"({opts.redis_requests:,} requests each, -c {opts.connections}, --threads {opts.threads}, "
                   "no pipelining); rps = total requests / sum of per-run times; p50/p90/p99/p99.9 over every "
                   "request of every run, from the runs' latency histograms merged (`merged_percentile`), as "
                   "wrk's are over every request of its run; p99_worst_run_ms = the worst single run's p99"),
        "runs": runs,
    }


def redis_version(server: str) -> str:
    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def bench_serving(opts: BenchOptions, work: Path, say: Say) -> dict:
    scores = make_phrases(opts.phrases, opts.seed)
    prefixes = sample_prefixes(scores, opts.prefixes, opts.seed)
    ours = bench_ours(scores, prefixes, opts, work, say)
    peer = bench_redisearch(scores, prefixes, opts, work, say)
    say(f"RediSearch: {peer['rps']:,.0f} req/s, p50 {peer['p50_ms']:.2f} ms, p99 {peer['p99_ms']:.2f} ms "
        "(over every request)")
    on, off = ours["cache_on"], ours["cache_off"]
    return {
        "phrases": len(scores),
        "prefixes": len(prefixes),
        "mean_prefix_chars": float(np.mean([len(p) for p in prefixes])),
        "ours": on,
        "ours_cache_off": off,
        "redisearch": peer,
        "ratio_rps_ours_over_redisearch": on["rps"] / peer["rps"],
        "ratio_rps_ours_cache_off_over_redisearch": off["rps"] / peer["rps"],
        "targets": {"rps": TARGET_RPS, "p99_ms": TARGET_P99_MS, "judged_on": "response cache off (like for like)",
                    "rps_met": off["rps"] >= TARGET_RPS, "p99_met": off.get("p99_ms", 1e9) < TARGET_P99_MS,
                    "cache_on_rps_met": on["rps"] >= TARGET_RPS,
                    "cache_on_p99_met": on.get("p99_ms", 1e9) < TARGET_P99_MS},
        "note": ("ours answers over HTTP/1.1 with JSON bodies; RediSearch over RESP; both return the top 10. "
                 "RediSearch looks every request up, so sixfold's response cache (answers kept per trie version "
                 "under the normalised prefix) is a shortcut the peer lacks: the cache-off run is like for like"),
    }


# ---- part 2: aggregation ----------------------------------------------------------------------------
SPARK_TUNING = {
    "spark.sql.shuffle.partitions": "4",
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.files.maxPartitionBytes": str(32 * 1024 * 1024),
    "spark.sql.parquet.compression.codec": "snappy",
}


RUNS = 3  # each engine runs the query 3 times: the first is the headline, the best later one shows it warm


def write_log(path: Path, rows: int, seed: int) -> str:
    """The synthetic search log: sixfold's own generator (4 regions, 2 hours)."""
    from datetime import timedelta

    from sixfold.platform.schema import parse_timestamp
    from sixfold.typeahead.generate import write_log_parquet

    start = parse_timestamp(LOG_START)
    write_log_parquet(path, rows, start, start + timedelta(hours=LOG_HOURS), seed=seed, regions=LOG_REGIONS)
    return "sixfold.typeahead.generate.write_log_parquet"


def totals_of(path: Path) -> tuple[int, int]:
    import duckdb

    with duckdb.connect() as con:
        rows, total = con.execute(f"SELECT count(*), sum(count) FROM read_parquet('{path}/**/*.parquet')").fetchone()
    return int(rows), int(total or 0)


def bench_spark(settings: Settings, log: Path, out: Path) -> dict:
    from pyspark.sql import functions as F

    from sixfold.platform.spark import get_session, session_conf

    started = time.perf_counter()
    spark = get_session(settings, app_name="sixfold-bench")
    jvm_s = time.perf_counter() - started
    try:
        for key, value in SPARK_TUNING.items():
            spark.conf.set(key, value)
        # The first job of a fresh JVM pays class loading and JIT (seconds, whatever the data); a
        # long-lived session or a spark-submit job pays it once, so it is timed apart from the query.
        started = time.perf_counter()
        spark.range(10_000).groupBy((F.col("id") % 7).alias("g")).count().collect()
        warmup_s = time.perf_counter() - started
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            events = spark.read.parquet(str(log))
            window_start = F.timestamp_seconds(F.floor(F.unix_timestamp("ts") / 900) * 900).alias("window_start")
            counts = events.groupBy("region", window_start, "query").count()
            counts.write.mode("overwrite").parquet(str(out))
            timings.append(time.perf_counter() - started)
        conf = {**session_conf(settings), **SPARK_TUNING, "spark.master": settings.spark_master}
    finally:
        spark.stop()
    return {"seconds": timings[0], "repeat_seconds": min(timings[1:]), "all_seconds": timings,
            "jvm_start_s": jvm_s,
            "first_job_warmup_s": warmup_s, "settings": conf,
            "timing": "seconds = read + aggregate + write, the first time in this session, after session start "
                      "(jvm_start_s) and one trivial warm-up job (first_job_warmup_s), neither included; "
                      "repeat_seconds = the best of the later runs of the same query in the same (warm) JVM",
            "query": "read.parquet -> groupBy(region, 15-min floor of ts, query).count() -> write.parquet"}


def bench_duckdb(log: Path, out: Path) -> dict:
    import duckdb

    out.mkdir(parents=True, exist_ok=True)
    target = out / "part-0.parquet"
    sql = (f"COPY (SELECT region, time_bucket(INTERVAL 15 MINUTE, ts) AS window_start, query, count(*) AS count "
           f"FROM read_parquet('{log}') GROUP BY ALL) TO '{target}' (FORMAT parquet, COMPRESSION snappy)")
    with duckdb.connect(config={"threads": 2}) as con:
        con.execute("SET TimeZone = 'UTC'")
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            con.execute(sql)
            timings.append(time.perf_counter() - started)
        version = duckdb.__version__
    return {"seconds": timings[0], "repeat_seconds": min(timings[1:]), "all_seconds": timings,
            "settings": {"threads": 2, "TimeZone": "UTC", "compression": "snappy",
                         "duckdb": version}, "query": sql}


def bench_aggregation(settings: Settings, opts: BenchOptions, work: Path, say: Say) -> dict:
    log = work / "search_log.parquet"
    started = time.perf_counter()
    generator = write_log(log, opts.log_rows, opts.seed)
    say(f"log of {opts.log_rows:,} rows written in {time.perf_counter() - started:.1f} s "
        f"({log.stat().st_size / 2**20:.0f} MiB)")
    duck = bench_duckdb(log, work / "duckdb-out")
    say(f"DuckDB: {duck['seconds']:.2f} s (repeat {duck['repeat_seconds']:.2f} s)")
    spark = bench_spark(settings, log, work / "spark-out")
    say(f"Spark: {spark['seconds']:.2f} s (repeat {spark['repeat_seconds']:.2f} s; + {spark['jvm_start_s']:.1f} s "
        f"JVM start, {spark['first_job_warmup_s']:.1f} s warm-up job)")
    spark_rows, spark_total = totals_of(work / "spark-out")
    duck_rows, duck_total = totals_of(work / "duckdb-out")
    return {
        "rows": opts.log_rows,
        "log_bytes": log.stat().st_size,
        "generator": generator,
        "regions": list(LOG_REGIONS),
        "hours": LOG_HOURS,
        "spark": {**spark, "output_rows": spark_rows, "output_total": spark_total},
        "duckdb": {**duck, "output_rows": duck_rows, "output_total": duck_total},
        "ratio_spark_over_duckdb": spark["seconds"] / duck["seconds"],
        "ratio_spark_over_duckdb_repeat": spark["repeat_seconds"] / duck["repeat_seconds"],
        "goal_ratio": TARGET_SPARK_OVER_DUCKDB,
        "goal_met": spark["seconds"] / duck["seconds"] <= TARGET_SPARK_OVER_DUCKDB,
        "cross_check": {"equal": spark_rows == duck_rows and spark_total == duck_total == opts.log_rows,
                        "spark_rows": spark_rows, "duckdb_rows": duck_rows,
                        "spark_total": spark_total, "duckdb_total": duck_total, "input_rows": opts.log_rows},
    }


# ---- part 3: trie build -------------------------------------------------------------------------------
def _child_build(n: int, seed: int, directory: str) -> dict:
    from sixfold.typeahead.trie import build_trie, write_artifact

    scores = make_phrases(n, seed)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    trie = build_trie(scores.items())
    built = time.perf_counter()
    write_artifact({"global": trie}, Path(directory), 4)
    done = time.perf_counter()
    return {"build_s": built - started, "write_s": done - built, "nodes": len(trie.nodes),
            "rss_before_kib": before, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _child_load(directory: str) -> dict:
    from sixfold.typeahead.serving import load_trie

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    loaded = load_trie(Path(directory), "bench", None)
    seconds = time.perf_counter() - started
    assert loaded.regions["global"].lookup("a", 10)
    return {"load_s": seconds, "rss_before_kib": before,
            "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}


def _in_child(kind: str, *args: Any) -> dict:
    """Run one measurement in a fresh interpreter, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, "-m", "sixfold.typeahead.bench", kind, json.dumps(args)],
                         capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"trie {kind} child failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_trie_build(opts: BenchOptions, work: Path, say: Say) -> dict:
    directory = work / "build-artifact"
    build = _in_child("build", opts.build_phrases, opts.seed + 3, str(directory))
    size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file())
    say(f"trie build: {build['build_s'] + build['write_s']:.1f} s, peak RSS {build['peak_rss_kib'] / 2**20:.2f} GiB")
    load = _in_child("load", str(directory))
    return {
        "phrases": opts.build_phrases,
        "nodes": build["nodes"],
        "build_s": build["build_s"],
        "write_s": build["write_s"],
        "build_and_write_s": build["build_s"] + build["write_s"],
        "peak_rss_mib": build["peak_rss_kib"] / 1024,
        "rss_before_build_mib": build["rss_before_kib"] / 1024,
        "artifact_bytes": size,
        "load_s": load["load_s"],
        "load_peak_rss_mib": load["peak_rss_kib"] / 1024,
        "method": "each step in a fresh child interpreter; peak RSS = its ru_maxrss (RUSAGE_SELF); "
                  "rss_before_build = after generating the phrases, before build_trie",
        "shards": 4,
    }


# ---- report ---------------------------------------------------------------------------------------------
def figures_rows(result: dict) -> list[tuple[str, str, str, str]]:
    """(measure, ours, peer, ratio) rows for the table."""
    rows = []
    s = result.get("serving")
    if s:
        r = s["redisearch"]
        for o, label in ((s["ours_cache_off"], "response cache off"), (s["ours"], "response cache on")):
            rows += [
                (f"serving req/s ({label})", f"{o['rps']:,.0f}", f"{r['rps']:,.0f}", f"{o['rps'] / r['rps']:.2f}x"),
                (f"serving p50 ms ({label})", f"{o.get('p50_ms', float('nan')):.2f}", f"{r['p50_ms']:.2f}",
                 f"{o.get('p50_ms', float('nan')) / r['p50_ms']:.2f}x"),
                (f"serving p99 ms ({label})", f"{o.get('p99_ms', float('nan')):.2f}", f"{r['p99_ms']:.2f}",
                 f"{o.get('p99_ms', float('nan')) / r['p99_ms']:.2f}x"),
            ]
        rows.append(("serving non-2xx / error replies (off; on)",
                     f"{s['ours_cache_off']['non_2xx']:,}; {s['ours']['non_2xx']:,}", f"{r['error_replies']:,}", ""))
    a = result.get("aggregation")
    if a:
        rows.append((f"aggregate {a['rows']:,} rows, s (Spark vs DuckDB)", f"{a['spark']['seconds']:.2f}",
                     f"{a['duckdb']['seconds']:.2f}", f"{a['ratio_spark_over_duckdb']:.2f}x"))
        rows.append(("  same query again, warm (best of 2), s", f"{a['spark']['repeat_seconds']:.2f}",
                     f"{a['duckdb']['repeat_seconds']:.2f}", f"{a['ratio_spark_over_duckdb_repeat']:.2f}x"))
        rows.append(("Spark JVM start + warm-up job s (not above)",
                     f"{a['spark']['jvm_start_s']:.2f} + {a['spark']['first_job_warmup_s']:.2f}", "", ""))
    t = result.get("trie_build")
    if t:
        rows += [
            (f"trie build+write {t['phrases']:,} phrases, s", f"{t['build_and_write_s']:.2f}", "", ""),
            ("trie build peak RSS MiB", f"{t['peak_rss_mib']:,.0f}", "", ""),
            ("trie artifact MiB", f"{t['artifact_bytes'] / 2**20:,.1f}", "", ""),
            ("trie load s", f"{t['load_s']:.2f}", "", ""),
        ]
    return rows


def print_table(result: dict) -> None:
    notes = []
    s, a = result.get("serving"), result.get("aggregation")
    if s:
        t = s["targets"]
        notes.append(f"targets ({t['judged_on']}): >= {t['rps']:,.0f} req/s {'met' if t['rps_met'] else 'NOT met'}; "
                     f"p99 < {t['p99_ms']:.0f} ms {'met' if t['p99_met'] else 'NOT met'}")
        notes.append("RediSearch percentiles: over every request of its per-prefix runs (histograms merged), "
                     "as wrk's are over every request")
    if a:
        notes.append(f"aggregation: Spark/DuckDB {a['ratio_spark_over_duckdb']:.2f} (goal <= {a['goal_ratio']:.0f}: "
                     f"{'met' if a['goal_met'] else 'NOT met'}); outputs "
                     f"{'equal' if a['cross_check']['equal'] else 'DIFFER'} "
                     f"({a['cross_check']['spark_rows']:,} rows)")
    notes.append(f"[dim]{result['host']['note']}[/dim]")
    benchkit.print_table("sixfold bench typeahead", ("measure", "ours / Spark", "peer", "ratio"),
                         figures_rows(result), notes)


def draw_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.2))
    s, a, t = result["serving"], result["aggregation"], result["trie_build"]
    colors = ("#2b7bba", "#d1495b")

    def bars(ax: Any, labels: list[str], values: list[float], title: str, unit: str,
             palette: tuple[str, ...] = colors) -> None:
        ax.bar(labels, values, color=list(palette[: len(values)]))
        ax.set_title(title)
        ax.set_ylabel(unit)
        for i, v in enumerate(values):
            ax.annotate(f"{v:,.2f}" if v < 100 else f"{v:,.0f}", (i, v), ha="center", va="bottom")

    off, on, peer = s["ours_cache_off"], s["ours"], s["redisearch"]
    bars(axes[0], ["sixfold\ncache off", "sixfold\ncache on", "RediSearch"], [off["rps"], on["rps"], peer["rps"]],
         f"serving throughput (cache off {s['ratio_rps_ours_cache_off_over_redisearch']:.2f}x, "
         f"on {s['ratio_rps_ours_over_redisearch']:.2f}x)", "requests/s", palette=("#2b7bba", "#8fb8de", "#d1495b"))
    x = np.arange(2)
    axes[1].bar(x - 0.27, [off["p50_ms"], off["p99_ms"]], 0.27, label="sixfold, cache off", color="#2b7bba")
    axes[1].bar(x, [on["p50_ms"], on["p99_ms"]], 0.27, label="sixfold, cache on", color="#8fb8de")
    axes[1].bar(x + 0.27, [peer["p50_ms"], peer["p99_ms"]], 0.27, label="RediSearch", color=colors[1])
    axes[1].axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    axes[1].set_xticks(x, ["p50", "p99 (all requests)"])
    axes[1].set_ylabel("ms")
    axes[1].set_title("serving latency")
    axes[1].legend()
    axes[2].bar(x - 0.2, [a["spark"]["seconds"], a["spark"]["repeat_seconds"]], 0.4, label="Spark", color=colors[0])
    axes[2].bar(x + 0.2, [a["duckdb"]["seconds"], a["duckdb"]["repeat_seconds"]], 0.4, label="DuckDB",
                color=colors[1])
    axes[2].set_xticks(x, ["first run", "repeat (warm)"])
    axes[2].set_ylabel("seconds")
    axes[2].set_title(f"aggregate {a['rows']:,} rows (Spark/DuckDB {a['ratio_spark_over_duckdb']:.1f}x)")
    axes[2].legend()
    bars(axes[3], ["build", "write", "load"], [t["build_s"], t["write_s"], t["load_s"]],
         f"trie, {t['phrases']:,} phrases", "seconds", palette=("#2b7bba", "#2b7bba", "#6a994e"))
    fig.suptitle(f"sixfold bench typeahead, {result['started_at']} ({result['host']['cores']} cores shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, directory: Path) -> tuple[Path, Path]:
    return benchkit.write_outputs("typeahead", result, directory, draw_chart)


def run(settings: Settings, opts: BenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Run every part, print the table, write the JSON and the chart; returns (result, json, png)."""
    result = benchkit.new_result("typeahead", opts)
    with tempfile.TemporaryDirectory(prefix="sixfold-bench-") as tmp:
        work = Path(tmp)
        say("[1/3] serving: sixfold vs RediSearch")
        result["serving"] = with_load(lambda: bench_serving(opts, work, say))
        say("[2/3] aggregation: Spark vs DuckDB")
        result["aggregation"] = with_load(lambda: bench_aggregation(settings, opts, work, say))
        say("[3/3] trie build")
        result["trie_build"] = with_load(lambda: bench_trie_build(opts, work, say))
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = write_outputs(result, settings.var / "bench")
    return result, json_path, png_path


def _child_main(argv: list[str]) -> None:
    kind, args = argv[0], json.loads(argv[1])
    measure = {"build": _child_build, "load": _child_load}[kind]
    print(json.dumps(measure(*args)))


if __name__ == "__main__":
    _child_main(sys.argv[1:])
