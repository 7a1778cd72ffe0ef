"""`sixfold bench feed`: the photo feed's write amplification, offline job and timeline reads, in one run.

Four parts over one synthetic data set (`sixfold.feed.generate`: power-law follow graph, Zipf
posting activity), generated into a scratch SIXFOLD_HOME (embedded profile: lake + SQLite):

1. generation: drawing the users, follows and posts, and writing them into the lake and the store;
2. fanout writes, hybrid versus pure push (the "peer"): timeline entries the posts cost
   (`fanout_writes`) at the default celebrity threshold and at one scaled to the synthetic graph
   (a percentile of follower counts: 100k synthetic users rarely reach 100k followers), plus the
   wall time of writing a sample of posts both ways into fresh SQLite stores;
3. the offline timeline job (`generate_timelines`, in-process Spark) for every user;
4. timeline reads over HTTP: the real `sixfold serve` driven by wrk with users who follow at least
   one celebrity (scaled threshold, passed to the server), so every read merges pushed and pulled.

Everything shares the machine's cores; the JSON says so. Every process started here is stopped in
a `finally`. Results go to `var/bench/feed-<UTC>.json/.png` and `feed-latest.json/.png`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from sixfold.platform import benchkit
from sixfold.platform.benchkit import (
    SHARED_CORES_NOTE,
    Say,
    with_load,
)
from sixfold.platform.settings import Settings

TARGET_RPS = 5_000.0
TARGET_P99_MS = 30.0
PURE_PUSH = 2**62  # a threshold no author reaches: every post is pushed


@dataclass(frozen=True)
class FeedBenchOptions:
    users: int = 100_000
    posts: int = 1_000_000
    celebrity_percentile: float = 99.9  # scaled threshold: this percentile of follower counts
    write_sample_posts: int = 2_000  # posts written both ways into SQLite for the wall-time comparison
    per_user: int = 500  # the timeline job's window
    read_users: int = 2_000  # distinct users (following a celebrity) cycled by wrk
    duration_s: int = 15
    connections: int = 32
    threads: int = 2
    workers: int = 2
    seed: int = 7

    @classmethod
    def quick(cls) -> FeedBenchOptions:
        return cls(users=1_000, posts=5_000, write_sample_posts=200, per_user=50, read_users=200, duration_s=3)


# ---- part 1: generation -----------------------------------------------------------------------------
def bench_generation(settings: Settings, opts: FeedBenchOptions, say: Say) -> tuple[dict, Any]:
    from sixfold.feed.generate import generate, total_rows, write
    from sixfold.platform.store import open_store

    started = time.perf_counter()
    data = generate(opts.users, opts.posts, seed=opts.seed)
    drawn_s = time.perf_counter() - started
    say(f"drew {len(data.users):,} users, {len(data.follows):,} follows, {len(data.posts):,} posts "
        f"in {drawn_s:.1f} s; writing lake + SQLite ...")
    total = total_rows(data, settings.feed_celebrity_threshold)
    done = {"rows": 0, "next": 0.1}

    def progress(n: int) -> None:
        done["rows"] += n
        if done["rows"] >= done["next"] * total:
            say(f"  generation: {done['rows'] / total:.0%} of {total:,} rows "
                f"({time.perf_counter() - started:.0f} s)")
            while done["next"] * total <= done["rows"]:
                done["next"] += 0.1

    store = open_store(settings)
    try:
        written_at = time.perf_counter()
        counts = write(settings, data, store, progress=progress)
        write_s = time.perf_counter() - written_at
    finally:
        store.close()
    say(f"generation: {drawn_s + write_s:.1f} s ({write_s:.1f} s writing)")
    return {"users": len(data.users), "follows": len(data.follows), "posts": len(data.posts),
            "draw_s": drawn_s, "write_s": write_s, "seconds": drawn_s + write_s, "rows_written": total,
            "store_bytes": settings.sqlite_path.stat().st_size if settings.sqlite_path.exists() else 0,
            "counts": counts}, data


# ---- part 2: fanout, hybrid vs pure push ---------------------------------------------------------------
def scaled_threshold(follower_counts: list[int], percentile: float) -> int:
    """The follower count at `percentile` of all users (at least 2), rounded up."""
    return max(2, math.ceil(float(np.percentile(np.asarray(follower_counts, dtype=np.float64), percentile))))


def _write_sample(directory: Path, posts: list[dict], fans: dict[int, set[int]], threshold: int) -> dict:
    """Push `posts` into a fresh SQLite store's timelines the way fanout does; wall time and entries."""
    from sixfold.feed.fanout import TIMELINES, WRITE_BATCH, fanout_targets
    from sixfold.platform.store import open_store

    settings = Settings.from_env({**os.environ, "SIXFOLD_HOME": str(directory), "SIXFOLD_PROFILE": "embedded"})
    store = open_store(settings)
    try:
        started = time.perf_counter()
        written = 0
        for post in posts:
            audience = fans.get(post["author_id"], set())
            targets = fanout_targets(post["author_id"], audience, len(audience), threshold)
            for at in range(0, len(targets), WRITE_BATCH):
                written += store.upsert_many(TIMELINES, [
                    {"user_id": u, "post_id": post["post_id"], "author_id": post["author_id"]}
                    for u in targets[at:at + WRITE_BATCH]])
        seconds = time.perf_counter() - started
    finally:
        store.close()
    return {"seconds": seconds, "entries": written}


def bench_fanout(data: Any, default_threshold: int, opts: FeedBenchOptions, work: Path, say: Say) -> dict:
    from sixfold.feed.fanout import fanout_writes

    counts = data.follower_counts()
    scaled = scaled_threshold(list(counts.values()), opts.celebrity_percentile)
    pairs = [(f["follower_id"], f["followee_id"]) for f in data.follows]
    out: dict[str, Any] = {"follower_count_max": max(counts.values()),
                           "follower_count_median": float(np.median(list(counts.values())))}
    for name, threshold in (("default", default_threshold), ("scaled", scaled)):
        started = time.perf_counter()
        w = fanout_writes(pairs, data.posts, threshold)
        out[name] = {**w, "threshold": threshold, "compute_s": time.perf_counter() - started,
                     "ratio_push_over_hybrid": w["push"] / w["hybrid"] if w["hybrid"] else None,
                     "saved_share": w["saved"] / w["push"] if w["push"] else 0.0}
        ratio = out[name]["ratio_push_over_hybrid"]
        say(f"fanout at threshold {threshold:,} ({name}): hybrid {w['hybrid']:,} vs push {w['push']:,} "
            f"writes ({_ratio(ratio)}), {w['celebrities']:,} celebrities")
    out["scaled"]["percentile"] = opts.celebrity_percentile

    # wall time of writing a sample of posts both ways (celebrity posts included in their natural share)
    fans: dict[int, set[int]] = {}
    for follower, followee in pairs:
        if follower != followee:
            fans.setdefault(followee, set()).add(follower)
    rng = np.random.default_rng(opts.seed + 11)
    chosen = sorted(rng.choice(len(data.posts), size=min(opts.write_sample_posts, len(data.posts)),
                               replace=False).tolist())
    sample = [data.posts[i] for i in chosen]
    push = _write_sample(work / "sqlite-push", sample, fans, PURE_PUSH)
    hybrid = _write_sample(work / "sqlite-hybrid", sample, fans, scaled)
    out["sqlite_sample"] = {
        "posts": len(sample), "threshold": scaled,
        "push": push, "hybrid": hybrid,
        "ratio_seconds_push_over_hybrid": push["seconds"] / hybrid["seconds"] if hybrid["seconds"] else None,
        "method": "the sampled posts' timeline entries upserted (batches of 5,000) into a fresh SQLite store, "
                  "once as pure push, once as hybrid at the scaled threshold; followers from the in-memory graph",
    }
    say(f"SQLite sample of {len(sample):,} posts: push {push['entries']:,} entries in {push['seconds']:.2f} s, "
        f"hybrid {hybrid['entries']:,} in {hybrid['seconds']:.2f} s")
    out["why_hybrid"] = ("a celebrity's post would cost one timeline write per follower (millions, the hot-key "
                         "write storm); pulling the few celebrities at read time removes that share of writes "
                         "while ordinary authors stay pushed, so reads remain a precomputed lookup")
    return out


# ---- part 3: offline timeline job ------------------------------------------------------------------
def bench_timeline_job(settings: Settings, opts: FeedBenchOptions, say: Say) -> dict:
    from sixfold.feed.timeline_job import generate_timelines
    from sixfold.platform.spark import get_session
    from sixfold.platform.store import open_store

    started = time.perf_counter()
    spark = get_session(settings, app_name="feed-bench")
    jvm_s = time.perf_counter() - started
    say(f"Spark session in {jvm_s:.1f} s; generating timelines for every user ...")
    store = open_store(settings)
    marks = {"next": 10_000}

    def progress(n: int) -> None:
        if n >= marks["next"]:
            say(f"  timelines: {n:,} users written ({time.perf_counter() - begun:.0f} s)")
            marks["next"] += 10_000

    try:
        begun = time.perf_counter()
        counts = generate_timelines(spark, settings, store, opts.per_user, say=say, progress=progress)
        seconds = time.perf_counter() - begun
    finally:
        store.close()
        spark.stop()
    say(f"timeline job: {seconds:.1f} s for {counts['users']:,} users ({counts['entries']:,} entries)")
    return {**counts, "seconds": seconds, "jvm_start_s": jvm_s, "per_user": opts.per_user,
            "celebrity_threshold": settings.feed_celebrity_threshold,
            "users_per_s": counts["users"] / seconds if seconds else None,
            "timing": "seconds = generate_timelines (read lake, Spark plan, driver-side SQLite writes) after "
                      "the session started (jvm_start_s, not included)"}


# ---- part 4: timeline reads over HTTP -----------------------------------------------------------------
def celebrity_followers(data: Any, threshold: int, n: int, seed: int) -> tuple[list[int], int]:
    """Up to `n` users who follow at least one author with >= `threshold` followers; and how many there are."""
    counts = data.follower_counts()
    celebs = {uid for uid, c in counts.items() if c >= threshold}
    fans = sorted({f["follower_id"] for f in data.follows if f["followee_id"] in celebs})
    rng = np.random.default_rng(seed + 5)
    picked = rng.choice(len(fans), size=min(n, len(fans)), replace=False).tolist() if fans else []
    return [fans[i] for i in picked], len(fans)


def bench_reads(home: Path, data: Any, threshold: int, opts: FeedBenchOptions, work: Path, say: Say) -> dict:
    users, eligible = celebrity_followers(data, threshold, opts.read_users, opts.seed)
    if not users:
        raise RuntimeError(f"no user follows an author with >= {threshold:,} followers; use more users")
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded",
           "SIXFOLD_FEED_CELEBRITY_THRESHOLD": str(threshold)}
    # each reader's own token, as a client would send it (a timeline is its owner's)
    from sixfold.platform.identity import Credentials
    from sixfold.platform.store import SQLiteStore

    store = SQLiteStore(Settings.from_env(env).sqlite_path)
    credentials = Credentials(store)
    paths = [(f"/v1/timeline/{u}?limit=20", credentials.issue(u)) for u in users]
    store.close()

    def drive(page_cache_s: float, what: str) -> dict:
        run_env = {**env, "SIXFOLD_FEED_PAGE_CACHE_S": str(page_cache_s)}
        out = benchkit.wrk_against_serve(run_env, paths, "posts", workers=opts.workers, threads=opts.threads,
                                         connections=opts.connections, duration_s=opts.duration_s, work=work,
                                         say=say, what=f", {len(users):,} users following celebrities{what}")
        say(f"reads{what}: {out['rps']:,.0f} req/s, p50 {out.get('p50_ms', float('nan')):.2f} ms, "
            f"p99 {out.get('p99_ms', float('nan')):.2f} ms, non-2xx {out['non_2xx']:,}")
        return out

    figures = drive(Settings.feed_page_cache_s, "")
    # the same load with every page built from the store: what the kept pages are worth
    uncached = drive(0.0, ", page cache off")
    uncached.pop("sample")
    sample = figures.pop("sample")
    return {
        **figures,
        "page_cache_s": Settings.feed_page_cache_s,
        "page_cache_off": {k: uncached[k] for k in ("rps", "p50_ms", "p99_ms", "non_2xx") if k in uncached},
        "users_cycled": len(users), "users_following_celebrities": eligible, "celebrity_threshold": threshold,
        "sample_posts_returned": len(sample["posts"]),
        "server": f"{figures['server']}, SIXFOLD_FEED_CELEBRITY_THRESHOLD={threshold}",
        "load_generator": f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s --latency, Lua script "
                          f"cycling GET /v1/timeline/{{id}}?limit=20 over {len(users):,} users, each with its owner's bearer token",
        "targets": {"rps": TARGET_RPS, "p99_ms": TARGET_P99_MS, "rps_met": figures["rps"] >= TARGET_RPS,
                    "p99_met": figures.get("p99_ms", math.inf) < TARGET_P99_MS},
    }


# ---- report ---------------------------------------------------------------------------------------------
def _ratio(value: float | None) -> str:
    return f"{value:.2f}x" if value else "n/a (no writes)"


def figures_rows(result: dict) -> list[tuple[str, str, str, str]]:
    rows = []
    g = result.get("generation")
    if g:
        rows.append((f"generate {g['users']:,} users / {g['follows']:,} follows / {g['posts']:,} posts, s",
                     f"{g['seconds']:.1f}", "", ""))
    f = result.get("fanout")
    if f:
        for name in ("default", "scaled"):
            x = f[name]
            rows.append((f"fanout writes, threshold {x['threshold']:,} ({name}; {x['celebrities']:,} celebs)",
                         f"{x['hybrid']:,}", f"{x['push']:,}", _ratio(x["ratio_push_over_hybrid"])))
        s = f["sqlite_sample"]
        rows.append((f"SQLite write {s['posts']:,} sampled posts, s", f"{s['hybrid']['seconds']:.2f}",
                     f"{s['push']['seconds']:.2f}", _ratio(s["ratio_seconds_push_over_hybrid"])))
    t = result.get("timeline_job")
    if t:
        rows.append((f"offline timelines, {t['users']:,} users ({t['entries']:,} entries), s", f"{t['seconds']:.1f}",
                     "", ""))
    r = result.get("reads")
    if r:
        tg = r["targets"]
        rows += [
            ("timeline reads req/s", f"{r['rps']:,.0f}", "", f">= {tg['rps']:,.0f}: {'met' if tg['rps_met'] else 'NOT met'}"),
            ("timeline reads p50 ms", f"{r.get('p50_ms', float('nan')):.2f}", "", ""),
            ("timeline reads p99 ms", f"{r.get('p99_ms', float('nan')):.2f}", "",
             f"< {tg['p99_ms']:.0f}: {'met' if tg['p99_met'] else 'NOT met'}"),
            ("timeline reads non-2xx", f"{r['non_2xx']:,}", "", ""),
        ]
        off = r.get("page_cache_off")
        if off:
            rows += [("timeline reads, page cache off, req/s", f"{off['rps']:,.0f}", "", ""),
                     ("timeline reads, page cache off, p99 ms", f"{off.get('p99_ms', float('nan')):.2f}", "", "")]
    return rows


def print_table(result: dict) -> None:
    benchkit.print_table("sixfold bench feed", ("measure", "hybrid / ours", "pure push", "ratio / target"),
                         figures_rows(result), [f"[dim]{result['host']['note']}[/dim]"])


def draw_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, t, r, g = result["fanout"], result["timeline_job"], result["reads"], result["generation"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    colors = ("#2b7bba", "#d1495b")
    x = np.arange(2)
    axes[0].bar(x - 0.2, [f["default"]["hybrid"], f["scaled"]["hybrid"]], 0.4, label="hybrid", color=colors[0])
    axes[0].bar(x + 0.2, [f["default"]["push"], f["scaled"]["push"]], 0.4, label="pure push", color=colors[1])
    axes[0].set_xticks(x, [f"threshold {f['default']['threshold']:,}", f"threshold {f['scaled']['threshold']:,}"])
    axes[0].set_ylabel("timeline writes")
    axes[0].set_title("fanout writes")
    axes[0].legend()
    s = f["sqlite_sample"]
    axes[1].bar(["hybrid", "pure push"], [s["hybrid"]["seconds"], s["push"]["seconds"]], color=list(colors))
    axes[1].set_ylabel("seconds")
    axes[1].set_title(f"SQLite writes, {s['posts']:,} sampled posts")
    axes[2].bar(["p50", "p99"], [r.get("p50_ms", 0.0), r.get("p99_ms", 0.0)], color=colors[0])
    axes[2].axhline(TARGET_P99_MS, color="grey", linestyle="--", label=f"p99 target {TARGET_P99_MS:.0f} ms")
    axes[2].set_ylabel("ms")
    off = r.get("page_cache_off", {}).get("rps")
    axes[2].set_title(f"timeline reads: {r['rps']:,.0f} req/s (target {TARGET_RPS:,.0f})"
                      + (f"\npage cache off: {off:,.0f} req/s" if off else ""))
    axes[2].legend()
    axes[3].bar(["generate", "timeline job"], [g["seconds"], t["seconds"]], color=("#6a994e", colors[0]))
    axes[3].set_ylabel("seconds")
    axes[3].set_title(f"offline, {g['users']:,} users / {g['posts']:,} posts")
    fig.suptitle(f"sixfold bench feed, {result['started_at']} ({result['host']['cores']} cores shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, directory: Path) -> tuple[Path, Path]:
    return benchkit.write_outputs("feed", result, directory, draw_chart)


def run(settings: Settings, opts: FeedBenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Run every part, print the table, write the JSON and the chart; returns (result, json, png)."""
    result = benchkit.new_result("feed", opts, SHARED_CORES_NOTE.replace("each peer runs alone", "each part runs alone"))
    with tempfile.TemporaryDirectory(prefix="sixfold-bench-feed-") as tmp:
        work = Path(tmp)
        home = work / "home"
        data_settings = Settings.from_env({**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"})
        say(f"[1/4] generation: {opts.users:,} users, {opts.posts:,} posts")
        holder: dict[str, Any] = {}

        def generation() -> dict:
            figures, holder["data"] = bench_generation(data_settings, opts, say)
            return figures

        result["generation"] = with_load(generation)
        data = holder["data"]
        say("[2/4] fanout writes: hybrid vs pure push")
        result["fanout"] = with_load(lambda: bench_fanout(data, settings.feed_celebrity_threshold, opts, work, say))
        scaled = result["fanout"]["scaled"]["threshold"]
        job_settings = replace(data_settings, feed_celebrity_threshold=scaled)
        say(f"[3/4] offline timeline job (celebrity threshold {scaled:,})")
        result["timeline_job"] = with_load(lambda: bench_timeline_job(job_settings, opts, say))
        say("[4/4] timeline reads over HTTP")
        result["reads"] = with_load(lambda: bench_reads(home, data, scaled, opts, work, say))
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = write_outputs(result, settings.var / "bench")
    return result, json_path, png_path
