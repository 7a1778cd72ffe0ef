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
   one celebrity (scaled threshold, passed to the server), so every read merges pushed and pulled;
   reads alone, then a mixed load (every 20th request a post or a follow, with its author's token),
   each with the page cache on and off; beside the peer, Mastodon's home-feed design on Redis
   (`sixfold.feed.bench_mastodon`: pure push of post ids into capped per-user lists, LRANGE + MGET
   on read) loaded with the same graph and posts, served by an equally thin ASGI app with the same
   worker count and driven by the same wrk script and requests. The targets are judged on the mix.

Everything shares the machine's cores; the JSON says so. Every process started here is stopped in
a `finally`. Results go to `var/bench/feed-<UTC>.json/.png` and `feed-latest.json/.png`.
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from sixfold.platform import benchkit
from sixfold.platform.benchkit import (
    SHARED_CORES_NOTE,
    Say,
    free_port,
    require,
    running,
    wait_until,
    with_load,
)
from sixfold.platform.settings import Settings

TARGET_RPS = 5_000.0
TARGET_P99_MS = 30.0
PURE_PUSH = 2**62  # a threshold no author reaches: every post is pushed
WRITE_EVERY = 20  # the mixed load: every 20th request is a write (5%)
WRITE_SHARE = 1 / WRITE_EVERY


@dataclass(frozen=True)
class FeedBenchOptions:
    users: int = 100_000
    posts: int = 1_000_000
    celebrity_percentile: float = 99.9  # scaled threshold: this percentile of follower counts
    write_sample_posts: int = 2_000  # posts written both ways into SQLite for the wall-time comparison
    per_user: int = 500  # the timeline job's window
    read_users: int = 2_000  # distinct users (following a celebrity) cycled by wrk
    write_requests: int = 4_000  # distinct writes the mixed load cycles (posts and follows alternating)
    write_users: int = 2_000  # at most this many posters and as many followers (a token each)
    duration_s: int = 15
    connections: int = 32
    threads: int = 2
    workers: int = 2
    seed: int = 7

    @classmethod
    def quick(cls) -> FeedBenchOptions:
        return cls(users=1_000, posts=5_000, write_sample_posts=200, per_user=50, read_users=200, duration_s=2,
                   write_requests=200, write_users=50)


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
    """Push `posts` into a fresh SQLite store's timelines with fanout's own entry writes (its timeline
    stamps left out: this compares push and hybrid on entries alone); wall time and entries."""
    from sixfold.feed.fanout import fanout_targets, write_entries
    from sixfold.platform.store import open_store

    settings = Settings.from_env({**os.environ, "SIXFOLD_HOME": str(directory), "SIXFOLD_PROFILE": "embedded"})
    store = open_store(settings)
    try:
        started = time.perf_counter()
        written = 0
        for post in posts:
            audience = fans.get(post["author_id"], set())
            written += write_entries(store, post, fanout_targets(post["author_id"], audience, len(audience),
                                                                 threshold))
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


# ---- part 4: timeline reads over HTTP, alone and mixed with writes, beside Mastodon's design --------------
def celebrity_followers(data: Any, threshold: int, n: int, seed: int) -> tuple[list[int], int]:
    """Up to `n` users who follow at least one author with >= `threshold` followers; and how many there are."""
    counts = data.follower_counts()
    celebs = {uid for uid, c in counts.items() if c >= threshold}
    fans = sorted({f["follower_id"] for f in data.follows if f["followee_id"] in celebs})
    rng = np.random.default_rng(seed + 5)
    picked = rng.choice(len(fans), size=min(n, len(fans)), replace=False).tolist() if fans else []
    return [fans[i] for i in picked], len(fans)


def write_mix(data: Any, n: int, writers: int, seed: int) -> list[tuple[str, int, dict[str, Any]]]:
    """`n` writes, (path, acting user, JSON body), posts and follows alternating. Posters are drawn
    as the data set posts (the authors of random posts, so busy and followed authors write more),
    each post copying a random generated post's caption and hashtags; followers are any users,
    following the author of a random post. `writers` bounds each pool (a token each)."""
    rng = np.random.default_rng(seed + 17)
    posts, users = data.posts, [u["user_id"] for u in data.users]
    posters = list(dict.fromkeys(posts[i]["author_id"] for i in rng.integers(len(posts), size=writers).tolist()))
    followers = list(dict.fromkeys(users[i] for i in rng.integers(len(users), size=writers).tolist()))
    out: list[tuple[str, int, dict[str, Any]]] = []
    while len(out) < n:
        like = posts[int(rng.integers(len(posts)))]
        if len(out) % 2 == 0:
            author = posters[int(rng.integers(len(posters)))]
            out.append(("/v1/posts", author, {"user_id": author, "caption": like["caption"],
                                              "hashtags": list(like["hashtags"])}))
        else:
            follower = followers[int(rng.integers(len(followers)))]
            if like["author_id"] != follower:
                out.append(("/v1/follows", follower, {"follower_id": follower, "followee_id": like["author_id"]}))
    return out


def _fanout_backlog(env: dict[str, str]) -> dict[str, int]:
    """sixfold's fanout consumer behind the bus: posts published and not yet pushed (read from the spool)."""
    from sixfold.feed.fanout import FANOUT_GROUP, POST_CREATED
    from sixfold.platform.bus import SpoolBus

    spool = Settings.from_env(env).spool_dir
    published = SpoolBus(spool).end_offset(POST_CREATED.topic)
    try:
        done = int(orjson.loads((spool / POST_CREATED.topic / "_groups" / f"{FANOUT_GROUP}.json").read_bytes())["offset"])
    except FileNotFoundError:
        done = 0
    return {"published": published, "fanned_out": done, "backlog": published - done}


DRAIN_TIMEOUT_S = 600.0


def _drained(backlog: Callable[[], int]) -> dict[str, Any]:
    """The writes' backlog when wrk stopped, then how long the server took to work it off (the server
    still running, no load): the next run starts with none, and the lag is a figure of its own."""
    at_stop = backlog()
    started = time.perf_counter()
    left = at_stop
    while left and time.perf_counter() - started < DRAIN_TIMEOUT_S:
        time.sleep(0.1)
        left = backlog()
    return {"backlog": at_stop, "drain_s": time.perf_counter() - started if at_stop else 0.0, "left": left}


def bench_mastodon(data: Any, tokens: dict[int, str], reads: list, mix: list, check_users: list[int],
                   opts: FeedBenchOptions, work: Path, say: Say) -> dict:
    """The peer: Mastodon's home-feed design on Redis (`sixfold.feed.bench_mastodon`), loaded with the
    same graph and posts, driven by the same wrk requests alone and mixed."""
    import sys

    import redis
    import uvicorn

    from sixfold.feed import bench_mastodon as peer
    from sixfold.feed.timelines import post_json

    server = require("redis-server")
    directory = work / "redis-peer"
    directory.mkdir(exist_ok=True)
    port = free_port()
    cmd = [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
           "--dir", str(directory)]
    with running(cmd, None, work / "redis-peer.log") as proc:
        client = redis.Redis(port=port)
        wait_until(lambda: bool(client.ping()), proc, "redis-server (peer)", work / "redis-peer.log")
        started = time.perf_counter()
        loaded = peer.load(client, [(f["follower_id"], f["followee_id"]) for f in data.follows], data.posts,
                           post_json, {token: user for user, token in tokens.items()})
        load_s = time.perf_counter() - started
        # durable as Redis recommends (an fsync a second, like sixfold's SQLite at synchronous=NORMAL),
        # switched on after loading: the rewrite it starts is waited for, not measured
        client.config_set("appendfsync", "everysec")
        client.config_set("appendonly", "yes")
        while any(int(client.info("persistence").get(k, 0)) for k in ("aof_rewrite_in_progress",
                                                                       "aof_rewrite_scheduled")):
            time.sleep(0.2)
        memory = int(client.info("memory")["used_memory"])
        say(f"Mastodon design: {loaded['feed_entries']:,} feed entries for {loaded['feeds']:,} users and "
            f"{loaded['posts']:,} posts loaded into Redis in {load_s:.1f} s ({memory / 2**20:,.0f} MiB)")
        pages = {u: peer.first_page(client, u) for u in check_users}
        env = {**os.environ, peer.REDIS_URL_VAR: f"redis://127.0.0.1:{port}/0"}
        description = (f"uvicorn {uvicorn.__version__} --workers {opts.workers} (loop/http 'auto': "
                       f"{benchkit.uvicorn_impl()}): raw ASGI timeline GET in front of FastAPI writes; "
                       f"redis-server {_redis_version(server)} (AOF, fsync every second); one worker process "
                       f"(fanout, merges); redis-py {redis.__version__} "
                       f"({'hiredis' if redis.utils.HIREDIS_AVAILABLE else 'pure-Python'} parser)")

        def drive(requests: list, write_every: int, what: str) -> dict:
            web = free_port()
            web_cmd = [sys.executable, "-m", "uvicorn", "sixfold.feed.bench_mastodon:create_app", "--factory",
                       "--host", "127.0.0.1", "--port", str(web), "--workers", str(opts.workers),
                       "--log-level", "warning", "--no-access-log"]
            posts_before = int(client.get(peer.NEXT_POST_ID) or 0)

            def backlog() -> dict[str, Any]:
                return {"published": int(client.get(peer.NEXT_POST_ID) or 0) - posts_before,
                        **_drained(lambda: int(client.llen(peer.QUEUE)))}

            out = benchkit.wrk_against(web_cmd, web, env, requests, "posts", health_path="/health",
                                       server=description, threads=opts.threads, connections=opts.connections,
                                       duration_s=opts.duration_s, work=work, say=say,
                                       what=f" (Mastodon design){what}", write_every=write_every,
                                       after_run=backlog)
            say(f"Mastodon design{what}: {out['rps']:,.0f} req/s, p50 {out.get('p50_ms', math.nan):.2f} ms, "
                f"p99 {out.get('p99_ms', math.nan):.2f} ms, non-2xx {out['non_2xx']:,}")
            out.pop("sample")
            return out

        with running([sys.executable, "-m", "sixfold.feed.bench_mastodon", "worker"], env,
                     work / "peer-worker.log"):
            reads_only = drive(reads, 0, "")
            mixed = drive(mix, WRITE_EVERY, f", {WRITE_SHARE:.0%} writes")
        jobs = {kind: int(client.get(f"done:{kind}") or 0) for kind in ("post", "merge")}
    return {"reads": reads_only, "mixed": mixed, "load": {**loaded, "seconds": load_s, "redis_used_memory": memory},
            "worker_jobs_done": jobs, "pages": pages, "server": description,
            "design": ("Mastodon's home feeds: a list of the newest 400 post ids per user in Redis; a post is "
                       "SET and queued, a worker LPUSHes + LTRIMs it into every follower's list and the author's; "
                       "a follow is SADD + a queued merge of the followee's newest 100 posts; a read is LRANGE + "
                       "MGET of the posts' JSON; loaded with the end state of pushing every generated post")}


def _redis_version(server: str) -> str:
    import re
    import subprocess

    out = subprocess.run([server, "--version"], capture_output=True, text=True, check=False).stdout
    m = re.search(r"v=(\S+)", out)
    return m.group(1) if m else "?"


def _figures(out: dict) -> dict:
    keep = ("rps", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "requests", "duration_s", "non_2xx", "socket_errors",
            "sent", "server_alive_after", "after_run")
    return {k: out[k] for k in keep if k in out}


def bench_reads(home: Path, data: Any, threshold: int, opts: FeedBenchOptions, work: Path, say: Say) -> dict:
    users, eligible = celebrity_followers(data, threshold, opts.read_users, opts.seed)
    if not users:
        raise RuntimeError(f"no user follows an author with >= {threshold:,} followers; use more users")
    # abuse limits off: the load comes from one client address and a few thousand users
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded",
           "SIXFOLD_FEED_CELEBRITY_THRESHOLD": str(threshold), "SIXFOLD_LIMIT_WRITES_PER_USER": "",
           "SIXFOLD_LIMIT_WRITES_PER_CLIENT": "", "SIXFOLD_LIMIT_SIGNUP_PER_CLIENT": ""}
    # each reader's and writer's own token, as a client would send it (a timeline is its owner's)
    from sixfold.feed.timelines import AuthorCache, TimelineReader
    from sixfold.platform.identity import Credentials
    from sixfold.platform.store import SQLiteStore

    writes = write_mix(data, opts.write_requests, opts.write_users, opts.seed)
    store = SQLiteStore(Settings.from_env(env).sqlite_path)
    credentials = Credentials(store)
    tokens: dict[int, str] = {}
    for user in [*users, *(u for _, u, _ in writes)]:
        if user not in tokens:
            tokens[user] = credentials.issue(user)
    store.close()
    reads = [(f"/v1/timeline/{u}?limit=20", tokens[u]) for u in users]
    mix = [*reads, *(("POST", path, tokens[u], orjson.dumps(body).decode()) for path, u, body in writes)]

    def drive(page_cache_s: float, requests: list, write_every: int, what: str) -> dict:
        run_env = {**env, "SIXFOLD_FEED_PAGE_CACHE_S": str(page_cache_s)}
        before = _fanout_backlog(run_env)

        def backlog() -> dict[str, Any]:
            published = _fanout_backlog(run_env)["published"] - before["published"]
            return {"published": published, **_drained(lambda: _fanout_backlog(run_env)["backlog"])}

        out = benchkit.wrk_against_serve(run_env, requests, "posts", workers=opts.workers, threads=opts.threads,
                                         connections=opts.connections, duration_s=opts.duration_s, work=work,
                                         say=say, what=f", {len(users):,} users following celebrities{what}",
                                         write_every=write_every, after_run=backlog)
        say(f"sixfold{what}: {out['rps']:,.0f} req/s, p50 {out.get('p50_ms', math.nan):.2f} ms, "
            f"p99 {out.get('p99_ms', math.nan):.2f} ms, non-2xx {out['non_2xx']:,}")
        return out

    cache_s = Settings.feed_page_cache_s
    figures = drive(cache_s, reads, 0, "")
    # the same load with every page built from the store: what the kept pages are worth
    uncached = drive(0.0, reads, 0, ", page cache off")
    sample = figures.pop("sample")

    # the peer, before sixfold's writes: its first pages are checked against sixfold's reader
    check = users[: min(50, len(users))]
    mastodon = bench_mastodon(data, tokens, reads, mix, check, opts, work, say)
    store = SQLiteStore(Settings.from_env(env).sqlite_path)
    try:
        reader = TimelineReader(store, threshold, authors=AuthorCache(store, 0.0))
        agree = sum(1 for u in check if orjson.loads(orjson.dumps(reader.timeline(u, 20))) == mastodon["pages"][u])
    finally:
        store.close()
    mastodon.pop("pages")

    mixed = drive(cache_s, mix, WRITE_EVERY, f", {WRITE_SHARE:.0%} writes")
    mixed_uncached = drive(0.0, mix, WRITE_EVERY, f", {WRITE_SHARE:.0%} writes, page cache off")
    m, p = mixed, mastodon["mixed"]
    load_generator = (f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s --latency, one Lua script "
                      "for both sides: GET /v1/timeline/{id}?limit=20 cycled over "
                      f"{len(users):,} users, each with its owner's bearer token")
    return {
        **_figures(figures),
        "server": f"{figures['server']}, SIXFOLD_FEED_CELEBRITY_THRESHOLD={threshold}, SIXFOLD_LIMIT_*='' (off)",
        "page_cache_s": cache_s,
        "page_cache_off": _figures(uncached),
        "mastodon": _figures(mastodon["reads"]),
        "ratio_rps_over_mastodon": figures["rps"] / mastodon["reads"]["rps"],
        "ratio_rps_page_cache_off_over_mastodon": uncached["rps"] / mastodon["reads"]["rps"],
        "users_cycled": len(users), "users_following_celebrities": eligible, "celebrity_threshold": threshold,
        "sample_posts_returned": len(sample["posts"]),
        "first_pages_equal": {"checked": len(check), "equal": agree,
                              "how": "sixfold's reader in process vs the peer's LRANGE + MGET, before any write"},
        "load_generator": load_generator,
        "targets": {"rps": TARGET_RPS, "p99_ms": TARGET_P99_MS, "judged_on": "reported; judged on the mixed load",
                    "rps_met": figures["rps"] >= TARGET_RPS,
                    "p99_met": figures.get("p99_ms", math.inf) < TARGET_P99_MS},
        "mixed": {
            "write_share": 1 / WRITE_EVERY,
            "writes": {"distinct": len(writes), "posts": sum(1 for w in writes if w[0] == "/v1/posts"),
                       "follows": sum(1 for w in writes if w[0] == "/v1/follows"),
                       "writers": len({u for _, u, _ in writes})},
            "load_generator": (f"{load_generator}; every {WRITE_EVERY}th request of each wrk thread is the next of "
                               f"{len(writes):,} writes instead, POST /v1/posts and POST /v1/follows alternating, "
                               "each with its author's token (the same requests for both sides)"),
            "sixfold": _figures(m),
            "sixfold_page_cache_off": _figures(mixed_uncached),
            "mastodon": _figures(p),
            "ratio_rps_over_mastodon": m["rps"] / p["rps"],
            "ratio_rps_page_cache_off_over_mastodon": mixed_uncached["rps"] / p["rps"],
            "targets": {"rps": TARGET_RPS, "p99_ms": TARGET_P99_MS,
                        "judged_on": "the mixed load, default settings (page cache on)",
                        "rps_met": m["rps"] >= TARGET_RPS, "p99_met": m.get("p99_ms", math.inf) < TARGET_P99_MS,
                        "page_cache_off_rps_met": mixed_uncached["rps"] >= TARGET_RPS,
                        "page_cache_off_p99_met": mixed_uncached.get("p99_ms", math.inf) < TARGET_P99_MS},
            "writes_after": ("sixfold: POST /v1/posts and /v1/follows as the API does them (SQLite rows and an "
                             "event on the spool bus, fsynced; a follow also copies the followee's newest posts "
                             "in), then the consumers in the serve process push each post to its followers "
                             "(celebrities' are pulled instead), land posts and follows in the lake and index "
                             "hashtags. Mastodon design: a post is SET + LPUSH + a queued job, a follow SADD + a "
                             "queued merge; one worker process pushes (every follower) and merges. after_run: "
                             "posts published during warm-up + run; backlog = what was not yet done when wrk "
                             "stopped (sixfold: posts not yet fanned out; Mastodon design: queued jobs), drain_s = "
                             "how long it then took with no load (the next run starts after it)"),
        },
        "mastodon_peer": {k: v for k, v in mastodon.items() if k not in ("reads", "mixed")},
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
        rows += _http_rows("reads", r, r["page_cache_off"], r["mastodon"], None)
        mixed = r["mixed"]
        rows += _http_rows(f"{mixed['write_share']:.0%} writes", mixed["sixfold"], mixed["sixfold_page_cache_off"],
                           mixed["mastodon"], mixed["targets"])

        def lag(figures: dict) -> str:
            a = figures.get("after_run", {})
            return f"{a.get('backlog', 0):,} of {a.get('published', 0):,} ({a.get('drain_s', 0.0):.1f} s)"

        rows.append(("fanout backlog when wrk stopped, of posts made (drained in), on; off",
                     f"{lag(mixed['sixfold'])}; {lag(mixed['sixfold_page_cache_off'])}",
                     lag(mixed["mastodon"]), "reported"))
    return rows


def _http_rows(label: str, on: dict, off: dict, peer: dict, targets: dict | None) -> list[tuple[str, str, str, str]]:
    """req/s, p50 and p99 of sixfold (page cache on, off) beside the Mastodon design's, with the ratio."""
    def verdict(key: str, bound: str) -> str:
        return "" if targets is None else f"{bound}: {'met' if targets[key] else 'NOT met'}"

    rows = []
    for name, figures, suffix in (("page cache on", on, ""), ("page cache off", off, "page_cache_off_")):
        rows += [
            (f"timeline {label}, {name}, req/s", f"{figures['rps']:,.0f}", f"{peer['rps']:,.0f}",
             f"{figures['rps'] / peer['rps']:.2f}x  {verdict(suffix + 'rps_met', f'>= {TARGET_RPS:,.0f}')}"),
            (f"timeline {label}, {name}, p50 / p99 ms",
             f"{figures.get('p50_ms', math.nan):.2f} / {figures.get('p99_ms', math.nan):.2f}",
             f"{peer.get('p50_ms', math.nan):.2f} / {peer.get('p99_ms', math.nan):.2f}",
             verdict(suffix + "p99_met", f"p99 < {TARGET_P99_MS:.0f}")),
        ]
    rows.append((f"timeline {label}, non-2xx (on; off)", f"{on['non_2xx']:,}; {off['non_2xx']:,}",
                 f"{peer['non_2xx']:,}", ""))
    return rows


def print_table(result: dict) -> None:
    notes = []
    r = result.get("reads")
    if r:
        t = r["mixed"]["targets"]
        notes.append(f"targets, judged on {t['judged_on']}: >= {t['rps']:,.0f} req/s "
                     f"{'met' if t['rps_met'] else 'NOT met'}; p99 < {t['p99_ms']:.0f} ms "
                     f"{'met' if t['p99_met'] else 'NOT met'}")
        notes.append("HTTP rows: the peer column is Mastodon's home-feed design on Redis (pure push, LRANGE + MGET), "
                     "same graph, posts, requests, wrk script and worker count; percentiles from wrk for both; "
                     f"first pages equal on {r['first_pages_equal']['equal']} of {r['first_pages_equal']['checked']} "
                     "users checked")
    benchkit.print_table("sixfold bench feed", ("measure", "hybrid / ours", "pure push / peer", "ratio / target"),
                         figures_rows(result), [*notes, f"[dim]{result['host']['note']}[/dim]"])


def draw_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f, t, r, g = result["fanout"], result["timeline_job"], result["reads"], result["generation"]
    fig, axes = plt.subplots(1, 4, figsize=(19, 4.6))
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
    mixed = r["mixed"]
    x3 = np.arange(2)
    series = (("sixfold, page cache on", (r["rps"], mixed["sixfold"]["rps"]), "#2b7bba"),
              ("sixfold, page cache off", (r["page_cache_off"]["rps"], mixed["sixfold_page_cache_off"]["rps"]),
               "#8fb8de"),
              ("Mastodon design (Redis)", (r["mastodon"]["rps"], mixed["mastodon"]["rps"]), "#d1495b"))
    for i, (name, values, color) in enumerate(series):
        axes[2].bar(x3 + (i - 1) * 0.27, values, 0.27, label=name, color=color)
        for j, v in enumerate(values):
            axes[2].annotate(f"{v:,.0f}", (x3[j] + (i - 1) * 0.27, v), ha="center", va="bottom", fontsize=7)
    axes[2].axhline(TARGET_RPS, color="grey", linestyle="--", linewidth=0.8)
    axes[2].set_xticks(x3, ["reads only", f"{mixed['write_share']:.0%} writes (target judged)"])
    axes[2].set_ylabel("requests/s")
    axes[2].set_title(f"timelines over HTTP (mixed: {mixed['ratio_rps_over_mastodon']:.2f}x the Mastodon design)\n"
                      f"mixed p99: sixfold {mixed['sixfold'].get('p99_ms', 0.0):.1f} ms, "
                      f"Mastodon design {mixed['mastodon'].get('p99_ms', 0.0):.1f} ms", fontsize=9)
    axes[2].legend(fontsize=7)
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
        say("[4/4] timelines over HTTP, reads alone and with writes, beside the Mastodon design on Redis")
        result["reads"] = with_load(lambda: bench_reads(home, data, scaled, opts, work, say))
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = write_outputs(result, settings.var / "bench")
    return result, json_path, png_path
