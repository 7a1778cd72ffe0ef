"""`sixfold bench shortener`: redirects and creations over HTTP, beside nginx answering the same redirects.

One scratch SIXFOLD_HOME (embedded profile: SQLite store, spool bus, in-process LRU), one user and
one API key, then, one part after the other on the same machine:

1. links: `links` long URLs (drawn by `long_url`, so a test can recompute any of them) created
   through `POST /v1/urls:batch` in batches of `batch_size` by one keep-alive client (links/s);
2. creations: single `POST /v1/urls` driven by wrk (every request a creation, distinct URLs):
   creations/s with p50/p99;
3. the ceiling: Debian's nginx (`sixfold.shortener.bench_nginx`) with the same links as a generated
   `map` and `return 302`, the same worker count, wrk script, connections, threads and duration,
   over the same two key sets: the hot `hot_share` of the keys, and all of them;
4. Sixfold's redirects (`GET /{key}` → 302): the hot set with the redirect cache on (sized to the
   hot set, as the design sizes it for the hot 20%), the same set with the cache off
   (`SIXFOLD_SHORTENER_CACHE_ENTRIES=0`: every redirect reads the store, as nginx has no cache to
   miss), and all keys with the cache off (the uncached figure);
5. the realistic mix the targets are judged on: the hot set with every `write_every`-th request of
   each wrk thread a `POST /v1/urls` (2 %), cache on, and the same with the cache off.

Every server is the real `sixfold serve --workers N` (uvicorn, the stream consumers in process, so
each redirect's click event is emitted and landed as in production), started afresh for each run
with the per-key quota (`SIXFOLD_SHORTENER_LIMIT_PER_KEY=''`) and the abuse limits
(`SIXFOLD_LIMIT_*=''`) off: the load is one client address and one API key. Percentiles come from
wrk's own histogram for both sides. After each run, while its server still runs, a sample of keys is
fetched with a plain HTTP client (no redirect following) and each answer checked: 302 and the
`Location` the link was created with; an unknown key must answer 404. Results go to
`var/bench/shortener-<UTC>.json/.png` and `shortener-latest.json/.png`. Benchmark tooling, outside
the serving path.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from sixfold.platform import benchkit
from sixfold.platform.benchkit import SHARED_CORES_NOTE, Say, free_port, require, running, wait_until, with_load
from sixfold.platform.settings import Settings
from sixfold.shortener import bench_nginx

TARGET_RPS = 10_000.0
TARGET_P99_MS = 10.0
UNKNOWN_KEY = "zzzzzzzzzzzz"  # base-58, never issued in a run this size: must answer 404 on both sides
URL_HOSTS = ("www.example.com", "shop.example.org", "news.example.net", "docs.example.com", "blog.example.org")

# the shared wrk script, with the credential sent as the shortener's X-Api-Key instead of a bearer token
WRK_SCRIPT = benchkit.WRK_SCRIPT.replace('headers["Authorization"] = "Bearer " .. token',
                                         'headers["X-Api-Key"] = token')
assert WRK_SCRIPT != benchkit.WRK_SCRIPT, "benchkit.WRK_SCRIPT changed: the X-Api-Key substitution no longer applies"


@dataclass(frozen=True)
class ShortenerBenchOptions:
    links: int = 100_000
    hot_share: float = 0.2  # the cached key set: this share of the links, as the design sizes its cache
    batch_size: int = 1_000  # links per POST /v1/urls:batch (the API's maximum)
    create_requests: int = 20_000  # distinct single POST /v1/urls bodies wrk cycles (creation and mixed runs)
    check_sample: int = 1_000  # keys fetched and checked after every run
    duration_s: int = 15
    create_duration_s: int = 10
    warmup_s: int = 5  # wrk before each measured run (fills the cache, every worker up)
    connections: int = 32
    threads: int = 2
    workers: int = 2  # uvicorn workers and nginx worker_processes alike
    write_every: int = 50  # the mix: every 50th request of a wrk thread is a creation (2 %)
    seed: int = 7
    paced_rate: int = 10_000  # the target's rate, sent open loop by vegeta (0: skip the paced part)
    vegeta: str = ""  # vegeta's path (found or built by `run`)

    @classmethod
    def quick(cls) -> ShortenerBenchOptions:
        return cls(links=5_000, create_requests=2_000, check_sample=300, duration_s=2, create_duration_s=2,
                   warmup_s=1, paced_rate=0)


def long_url(seed: int, index: int) -> str:
    """The `index`-th long URL of a run with `seed`: realistic length and shape, no character nginx's
    map would read specially, and the same every time (a test recomputes what a key must redirect to)."""
    digest = hashlib.blake2b(f"{seed}:{index}".encode(), digest_size=6).hexdigest()
    host = URL_HOSTS[int(digest[:4], 16) % len(URL_HOSTS)]
    return f"https://{host}/articles/{index}/{digest}?utm_source=bench&utm_medium=link&ref={index % 997}"


# ---- a plain HTTP client (keep-alive, never follows a redirect) ----------------------------------------
class Client:
    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        sent = dict(headers or {})
        data = None
        if body is not None:
            data = orjson.dumps(body)
            sent["Content-Type"] = "application/json"
        self.conn.request(method, path, body=data, headers=sent)
        response = self.conn.getresponse()
        payload = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, payload

    def close(self) -> None:
        self.conn.close()


def _json(answer: tuple[int, dict[str, str], bytes], expected: int, what: str) -> dict[str, Any]:
    status, _, payload = answer
    if status != expected:
        raise RuntimeError(f"{what} answered {status} (expected {expected}): {payload[:500]!r}")
    return orjson.loads(payload)


def check_redirects(port: int, sample: list[tuple[int, str, str]]) -> dict[str, Any]:
    """GET each sampled key once with a plain client: how many answered 302 with the `Location` the link
    was created with; the statuses; the first wrong answers; and what an unknown key answered."""
    client = Client(port)
    statuses: dict[str, int] = {}
    right = 0
    wrong: list[dict[str, Any]] = []
    seen: list[list[Any]] = []
    try:
        for index, key, target in sample:
            status, headers, _ = client.call("GET", f"/{key}")
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            location = headers.get("location")
            if status == 302 and location == target:
                right += 1
            elif len(wrong) < 5:
                wrong.append({"index": index, "key": key, "status": status, "location": location, "expected": target})
            if len(seen) < 20:
                seen.append([index, key, location])
        unknown, _, _ = client.call("GET", f"/{UNKNOWN_KEY}")
    finally:
        client.close()
    return {"checked": len(sample), "right": right, "statuses": statuses, "wrong": wrong,
            "unknown_key": {"path": f"/{UNKNOWN_KEY}", "status": unknown}, "sample": seen,
            "how": "a plain http.client GET per sampled key, no redirect following; right = 302 and Location "
                   "equal to the long URL the key was created for"}


# ---- one wrk run against one server --------------------------------------------------------------------
def drive(cmd: list[str], port: int, env: dict[str, str] | None, requests: list[tuple[str, str, str, str]],
          first: tuple[str, str], sample: list[tuple[int, str, str]], *, health_path: str, server: str,
          opts: ShortenerBenchOptions, work: Path, say: Say, what: str, write_every: int = 0,
          duration_s: int | None = None, rate: int | None = None) -> dict[str, Any]:
    """Start `cmd`, wait for `health_path` and for `first` (path, long URL) to redirect right, warm up with
    wrk, run wrk (`--latency`, the shared Lua script: GETs cycled, every `write_every`-th request a write),
    then check `sample` while the server still runs. Returns wrk's figures, the checks and the server.
    With `rate`, the measured run is vegeta sending the same requests open loop at `rate` per second."""
    wrk = require("wrk")
    duration = duration_s or opts.duration_s
    stem = re.sub(r"[^a-z0-9]+", "-", Path(cmd[0]).name.lower())
    paths_file = work / f"wrk-{stem}-{port}.txt"
    for line in requests:
        if any(c in field for field in line for c in "\t\n"):
            raise ValueError(f"a wrk request field holds a tab or newline: {line!r}")
    paths_file.write_text("".join("\t".join(line) + "\n" for line in requests))
    script = work / f"wrk-{stem}-{port}.lua"
    script.write_text(WRK_SCRIPT % {"paths": str(paths_file), "write_every": write_every, "threads": opts.threads})
    base = f"http://127.0.0.1:{port}"
    log_path = work / f"server-{stem}-{port}.log"
    with running(cmd, env, log_path) as proc:
        wait_until(lambda: urllib.request.urlopen(base + health_path, timeout=2).status == 200, proc, server,
                   log_path)

        def redirects_right() -> bool:
            client = Client(port)
            try:
                status, headers, body = client.call("GET", first[0])
            finally:
                client.close()
            if status != 302 or headers.get("location") != first[1]:
                raise RuntimeError(f"{server}: GET {first[0]} answered {status} Location {headers.get('location')!r}, "
                                   f"expected 302 to {first[1]!r}: {body[:300]!r}")
            return True

        wait_until(redirects_right, proc, f"{server} (first GET {first[0]})", log_path, timeout_s=60)
        warm = subprocess.run([wrk, f"-t{opts.threads}", f"-c{opts.connections}", f"-d{opts.warmup_s}s", "-s",
                               str(script), base], capture_output=True, text=True, check=False)
        if warm.returncode != 0:
            raise RuntimeError(f"wrk warm-up failed: {warm.stderr}")
        if rate:
            say(f"vegeta at {rate:,}/s for {duration}s against {server.split(' (')[0]} on :{port}{what}")
            figures = benchkit.vegeta_attack(
                opts.vegeta,
                benchkit.vegeta_targets(base, requests, write_every, credential_header="X-Api-Key"),
                rate, duration, work, f"{stem}-{port}", connections=2 * opts.connections)
            output = figures.pop("generator")
        else:
            say(f"wrk -t{opts.threads} -c{opts.connections} -d{duration}s against {server.split(' (')[0]} on :{port}{what}")
            run = subprocess.run([wrk, f"-t{opts.threads}", f"-c{opts.connections}", f"-d{duration}s", "--latency",
                                  "-s", str(script), base], capture_output=True, text=True, check=False)
            if run.returncode != 0:
                raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr}\n{run.stdout}")
            output = run.stdout
        alive = proc.poll() is None
        checks = check_redirects(port, sample)
    if not rate:
        figures = benchkit.parse_wrk(output)
    if figures["non_2xx"] or any(figures.get("socket_errors", {}).values()):
        # what the server said about it (a traceback, a refusal): kept, since the scratch directory is not
        figures["server_log_tail"] = benchkit.tail(log_path, 40)
    say(f"  {figures['rps']:,.0f} req/s, p50 {figures.get('p50_ms', math.nan):.2f} ms, "
        f"p99 {figures.get('p99_ms', math.nan):.2f} ms, non-2xx/3xx {figures['non_2xx']:,}; "
        f"{checks['right']:,} of {checks['checked']:,} sampled redirects right")
    return {**figures, "server": server, "server_alive_after": alive, "checks": checks, "wrk_output": output}


def _figures(out: dict[str, Any]) -> dict[str, Any]:
    keep = ("rps", "offered_rps", "p50_ms", "p75_ms", "p90_ms", "p95_ms", "p99_ms", "p99_9_ms", "max_ms", "requests",
            "duration_s", "non_2xx", "status_codes", "success_ratio", "errors",
            "socket_errors", "sent", "server_alive_after", "checks", "server_log_tail", "wrk_output")
    return {k: out[k] for k in keep if k in out}


# ---- the parts ---------------------------------------------------------------------------------------
def sixfold_env(home: Path, cache_entries: int) -> dict[str, str]:
    """The server under test: a scratch home, the embedded profile, the quota and abuse limits off."""
    return {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded",
            "SIXFOLD_SHORTENER_LIMIT_PER_KEY": "", "SIXFOLD_LIMIT_WRITES_PER_USER": "",
            "SIXFOLD_LIMIT_WRITES_PER_CLIENT": "", "SIXFOLD_LIMIT_SIGNUP_PER_CLIENT": "",
            "SIXFOLD_SHORTENER_CACHE_ENTRIES": str(cache_entries)}


def sixfold_serve(port: int, workers: int) -> tuple[list[str], str]:
    import uvicorn

    cmd = [str(Path(sys.executable).parent / "sixfold"), "serve", "--port", str(port), "--workers", str(workers)]
    return cmd, (f"sixfold serve --workers {workers} (uvicorn {uvicorn.__version__}, loop/http 'auto': "
                 f"{benchkit.uvicorn_impl()}; stream consumers in process)")


def create_links(env: dict[str, str], opts: ShortenerBenchOptions, work: Path, say: Say) -> dict[str, Any]:
    """Sign up, take an API key, create every link through the batch endpoint; the keys in order."""
    port = free_port()
    cmd, server = sixfold_serve(port, opts.workers)
    log_path = work / "server-setup.log"
    with running(cmd, env, log_path) as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2).status == 200,
                   proc, server, log_path)
        client = Client(port)
        try:
            user = _json(client.call("POST", "/v1/users", {"username": f"bench{opts.seed}"}), 201, "POST /v1/users")
            key = _json(client.call("POST", "/v1/api-keys", {}, {"Authorization": f"Bearer {user['token']}"}), 201,
                        "POST /v1/api-keys")
            api_key = key["api_key"]
            keys: list[str] = []
            batch_seconds: list[float] = []
            began = time.perf_counter()
            for start in range(0, opts.links, opts.batch_size):
                urls = [{"long_url": long_url(opts.seed, i)}
                        for i in range(start, min(start + opts.batch_size, opts.links))]
                t0 = time.perf_counter()
                answer = _json(client.call("POST", "/v1/urls:batch", {"urls": urls}, {"X-Api-Key": api_key}), 200,
                               "POST /v1/urls:batch")
                batch_seconds.append(time.perf_counter() - t0)
                for i, item in enumerate(answer["results"]):
                    if "key" not in item:
                        raise RuntimeError(f"link {start + i} ({urls[i]['long_url']}) was refused: {item}")
                    keys.append(item["key"])
                if len(keys) % max(opts.links // 5, opts.batch_size) < opts.batch_size:
                    say(f"  {len(keys):,} links created ({time.perf_counter() - began:.1f} s)")
            seconds = time.perf_counter() - began
        finally:
            client.close()
        alive = proc.poll() is None
    if len(set(keys)) != len(keys):
        raise RuntimeError(f"the batch endpoint issued {len(keys) - len(set(keys)):,} duplicate keys")
    batch_seconds.sort()
    say(f"{len(keys):,} links in {seconds:.1f} s ({len(keys) / seconds:,.0f} links/s through :batch)")
    return {"keys": keys, "api_key": api_key, "user_id": user["user_id"], "server": server,
            "figures": {"created": len(keys), "batch_size": opts.batch_size, "batches": len(batch_seconds),
                        "seconds": seconds, "links_per_s": len(keys) / seconds if seconds else 0.0,
                        "batch_p50_ms": 1e3 * batch_seconds[len(batch_seconds) // 2],
                        "batch_max_ms": 1e3 * batch_seconds[-1], "server_alive_after": alive,
                        "how": f"POST /v1/urls:batch with {opts.batch_size:,} long URLs each, one keep-alive client "
                               "waiting for each answer; seconds over every batch"}}


def pick_sets(keys: list[str], opts: ShortenerBenchOptions) -> tuple[list[int], list[int], list[int]]:
    """Link indices: the hot set (a random `hot_share` of them), all of them shuffled (so wrk's threads
    do not walk the key space in creation order), and the checked sample."""
    rng = random.Random(opts.seed)
    everything = list(range(len(keys)))
    hot = rng.sample(everything, max(1, int(len(keys) * opts.hot_share)))
    shuffled = everything[:]
    rng.shuffle(shuffled)
    sample = rng.sample(everything, min(opts.check_sample, len(keys)))
    return hot, shuffled, sample


def run_parts(home: Path, opts: ShortenerBenchOptions, work: Path, say: Say, result: dict[str, Any]) -> None:
    hot_env = sixfold_env(home, max(1, int(opts.links * opts.hot_share)))
    say(f"[1/5] links: {opts.links:,} through POST /v1/urls:batch")
    holder: dict[str, Any] = {}

    def links_part() -> dict[str, Any]:
        holder.update(create_links(hot_env, opts, work, say))
        return holder["figures"]

    result["links"] = with_load(links_part)
    keys, api_key = holder["keys"], holder["api_key"]
    hot, shuffled, sample_ix = pick_sets(keys, opts)
    sample = [(i, keys[i], long_url(opts.seed, i)) for i in sample_ix]
    hot_reads = [("GET", f"/{keys[i]}", "", "") for i in hot]
    all_reads = [("GET", f"/{keys[i]}", "", "") for i in shuffled]
    first_hot = (f"/{keys[hot[0]]}", long_url(opts.seed, hot[0]))
    first_all = (f"/{keys[shuffled[0]]}", long_url(opts.seed, shuffled[0]))
    creations = [("POST", "/v1/urls", api_key, orjson.dumps({"long_url": long_url(opts.seed, opts.links + j)}).decode())
                 for j in range(opts.create_requests)]
    result["links"].update({"hot_keys": len(hot), "sample_checked": len(sample),
                            "sample": [[i, keys[i], long_url(opts.seed, i)] for i in sample_ix[:20]],
                            "long_url": f"sixfold.shortener.bench.long_url(seed={opts.seed}, index)"})

    def sixfold(env: dict[str, str], reads: list, first: tuple[str, str], what: str, write_every: int = 0,
                writes: list | None = None, duration_s: int | None = None, rate: int | None = None) -> dict[str, Any]:
        port = free_port()
        cmd, server = sixfold_serve(port, opts.workers)
        return with_load(lambda: _figures(drive(cmd, port, env, [*reads, *(writes or [])], first, sample,
                                                health_path="/v1/health", server=server, opts=opts, work=work,
                                                say=say, what=what, write_every=write_every,
                                                duration_s=duration_s, rate=rate)))

    say(f"[2/5] creations: single POST /v1/urls, {opts.create_duration_s} s")
    result["creations"] = sixfold(hot_env, hot_reads, first_hot, ", every request a POST /v1/urls", write_every=1,
                                  writes=creations, duration_s=opts.create_duration_s)

    say(f"[3/5] nginx: the same redirects from a map of {len(keys):,} links")
    binary = bench_nginx.nginx_binary()
    version = bench_nginx.nginx_version(binary)
    nginx_server = (f"nginx {version} (Debian), worker_processes {opts.workers}, map $uri + return 302, "
                    "access_log off, keepalive_requests unlimited")

    def nginx(reads: list, first: tuple[str, str], what: str, rate: int | None = None) -> dict[str, Any]:
        port = free_port()
        prefix = work / f"nginx-{port}"
        conf = bench_nginx.write_config(prefix, port, opts.workers,
                                        ((key, long_url(opts.seed, i)) for i, key in enumerate(keys)))
        bench_nginx.check_config(binary, prefix, conf)
        return with_load(lambda: _figures(drive(bench_nginx.command(binary, prefix, conf), port, None, reads, first,
                                                sample, health_path=bench_nginx.HEALTH_PATH, server=nginx_server,
                                                opts=opts, work=work, say=say, what=what, rate=rate)))

    result["nginx"] = {"server": nginx_server, "version": version,
                       "hot": nginx(hot_reads, first_hot, f", hot {len(hot):,} keys"),
                       "all": nginx(all_reads, first_all, f", all {len(keys):,} keys")}

    cold_env = sixfold_env(home, 0)
    say("[4/5] Sixfold redirects: hot set cache on / off, all keys cache off")
    result["sixfold"] = {
        "server": holder["server"],
        "cache_entries": int(hot_env["SIXFOLD_SHORTENER_CACHE_ENTRIES"]),
        "hot_cache_on": sixfold(hot_env, hot_reads, first_hot, f", hot {len(hot):,} keys, cache on"),
        "hot_cache_off": sixfold(cold_env, hot_reads, first_hot, f", hot {len(hot):,} keys, cache off"),
        "all_cache_off": sixfold(cold_env, all_reads, first_all, f", all {len(keys):,} keys, cache off"),
    }
    share = 1 / opts.write_every
    say(f"[5/5] the mix: hot set with {share:.0%} POST /v1/urls, cache on / off")
    result["mixed"] = {
        "write_share": share,
        "cache_on": sixfold(hot_env, hot_reads, first_hot, f", {share:.0%} creations, cache on",
                            write_every=opts.write_every, writes=creations),
        "cache_off": sixfold(cold_env, hot_reads, first_hot, f", {share:.0%} creations, cache off",
                             write_every=opts.write_every, writes=creations),
    }
    if opts.paced_rate:
        # The target as it reads: this many requests a second, and the p99 they get. Open loop, the same
        # generator and the same percentiles for both sides; nginx answers the mix's reads only.
        say(f"[6/6] paced: the mix and nginx's redirects at {opts.paced_rate:,}/s sent open loop (vegeta)")
        result["paced"] = {
            "rate": opts.paced_rate,
            "mixed_cache_on": sixfold(hot_env, hot_reads, first_hot, f", {share:.0%} creations, cache on",
                                      write_every=opts.write_every, writes=creations, rate=opts.paced_rate),
            "mixed_cache_off": sixfold(cold_env, hot_reads, first_hot, f", {share:.0%} creations, cache off",
                                       write_every=opts.write_every, writes=creations, rate=opts.paced_rate),
            "nginx_hot": nginx(hot_reads, first_hot, f", hot {len(hot):,} keys", rate=opts.paced_rate),
        }


def summarise(result: dict[str, Any], opts: ShortenerBenchOptions) -> None:
    """Ratios to nginx, the targets, and the conditions, into `result`."""
    s, n, m = result["sixfold"], result["nginx"], result["mixed"]

    def ratio(a: dict, b: dict) -> float:
        return a["rps"] / b["rps"] if b["rps"] else 0.0

    result["ratios"] = {
        "hot_cache_on_over_nginx": ratio(s["hot_cache_on"], n["hot"]),
        "hot_cache_off_over_nginx": ratio(s["hot_cache_off"], n["hot"]),
        "all_cache_off_over_nginx": ratio(s["all_cache_off"], n["all"]),
        "mixed_cache_on_over_nginx_hot": ratio(m["cache_on"], n["hot"]),
        "mixed_cache_off_over_nginx_hot": ratio(m["cache_off"], n["hot"]),
        "how": "Sixfold req/s over nginx req/s on the same paths; the mix has no nginx counterpart (nginx cannot "
               "create links), so it is set against nginx's redirects of the same hot set",
    }

    def met(figures: dict) -> dict[str, bool]:
        return {"rps_met": figures["rps"] >= TARGET_RPS, "p99_met": figures.get("p99_ms", math.inf) < TARGET_P99_MS}

    def met_paced(figures: dict) -> dict[str, bool]:
        # open loop: the rate was offered whatever happened; met when (almost) all of it was answered right
        kept_up = figures["offered_rps"] >= TARGET_RPS and figures["rps"] >= 0.99 * figures["offered_rps"]
        return {"rps_met": kept_up and figures["non_2xx"] == 0, "p99_met": figures["p99_ms"] < TARGET_P99_MS}

    paced = result.get("paced")
    judged = (met_paced(paced["mixed_cache_on"]) if paced else met(m["cache_on"]))
    result["targets"] = {
        "rps": TARGET_RPS, "p99_ms": TARGET_P99_MS,
        "judged_on": (f"the mix (hot-set redirects with {m['write_share']:.0%} creations, cache on) sent open loop at "
                      f"{paced['rate']:,}/s by vegeta: the rate answered, and the p99 at that rate" if paced else
                      f"the mix: hot-set redirects with {m['write_share']:.0%} creations, cache on, wrk closed loop"),
        **judged,
        "mixed_saturated_cache_on": met(m["cache_on"]),
        **({"paced_mixed_cache_off": met_paced(paced["mixed_cache_off"])} if paced else {}),
        "mixed_cache_off": met(m["cache_off"]),
        "redirects_only_cached_set": met(s["hot_cache_on"]),
        "redirects_only_uncached_set": met(s["all_cache_off"]),
    }
    result["conditions"] = {
        "load_generator": (f"wrk -t{opts.threads} -c{opts.connections} -d{opts.duration_s}s --latency after a "
                           f"{opts.warmup_s} s wrk warm-up, one Lua script for both sides (GET paths cycled from a "
                           "per-thread offset; writes are POST /v1/urls with X-Api-Key)"),
        "sixfold": (f"{result['sixfold']['server']}; embedded profile (SQLite store, spool bus), a fresh server per "
                    f"run over one scratch home; SIXFOLD_SHORTENER_LIMIT_PER_KEY='' (per-key quota off) and "
                    f"SIXFOLD_LIMIT_*='' (abuse limits off): one client and one API key make all the load; cache on "
                    f"= SIXFOLD_SHORTENER_CACHE_ENTRIES={result['sixfold']['cache_entries']:,} per worker (the hot "
                    "set), off = 0"),
        "nginx": (f"{result['nginx']['server']}; nginx's 302 carries its small HTML body, Sixfold's none; nginx "
                  "compares map strings ignoring case (keys that differ only by case go in as regexes)"),
        "key_sets": (f"hot: {result['links']['hot_keys']:,} random keys of {result['links']['created']:,} "
                     f"({opts.hot_share:.0%}); all: every key, shuffled"),
    }


# ---- report ---------------------------------------------------------------------------------------------
def _ms(figures: dict) -> str:
    return f"{figures.get('p50_ms', math.nan):.2f} / {figures.get('p99_ms', math.nan):.2f}"


def _verdict(flags: dict[str, bool]) -> str:
    return (f">= {TARGET_RPS:,.0f}/s {'met' if flags['rps_met'] else 'NOT met'}, "
            f"p99 < {TARGET_P99_MS:.0f} ms {'met' if flags['p99_met'] else 'NOT met'}")


def figures_rows(result: dict) -> list[tuple[str, ...]]:
    s, n, m, r, t = result["sixfold"], result["nginx"], result["mixed"], result["ratios"], result["targets"]
    hot, every = result["links"]["hot_keys"], result["links"]["created"]
    rows: list[tuple[str, ...]] = []
    for label, ours, peer, ratio, flags in (
            (f"redirects, hot {hot:,} keys, cache on", s["hot_cache_on"], n["hot"], r["hot_cache_on_over_nginx"],
             t["redirects_only_cached_set"]),
            (f"redirects, hot {hot:,} keys, cache off", s["hot_cache_off"], n["hot"], r["hot_cache_off_over_nginx"],
             None),
            (f"redirects, all {every:,} keys, cache off", s["all_cache_off"], n["all"], r["all_cache_off_over_nginx"],
             t["redirects_only_uncached_set"]),
            (f"mix, {m['write_share']:.0%} creations, cache on (target)", m["cache_on"], n["hot"],
             r["mixed_cache_on_over_nginx_hot"], {k: t[k] for k in ("rps_met", "p99_met")}),
            (f"mix, {m['write_share']:.0%} creations, cache off", m["cache_off"], n["hot"],
             r["mixed_cache_off_over_nginx_hot"], t["mixed_cache_off"])):
        rows.append((f"{label}, req/s", f"{ours['rps']:,.0f}", f"{peer['rps']:,.0f}",
                     f"{ratio:.2f}x" + (f"  {_verdict(flags)}" if flags else "")))
        rows.append((f"{label}, p50 / p99 ms", _ms(ours), _ms(peer), ""))
    paced = result.get("paced")
    if paced:
        peer = paced["nginx_hot"]
        for label, ours, flags in (
                (f"mix paced at {paced['rate']:,}/s (vegeta), cache on (target)", paced["mixed_cache_on"],
                 {k: t[k] for k in ("rps_met", "p99_met")}),
                (f"mix paced at {paced['rate']:,}/s (vegeta), cache off", paced["mixed_cache_off"],
                 t["paced_mixed_cache_off"])):
            rows.append((f"{label}, answered/s", f"{ours['rps']:,.0f}", f"{peer['rps']:,.0f}", _verdict(flags)))
            rows.append((f"{label}, p50 / p99 ms", _ms(ours), _ms(peer), ""))
    c, links = result["creations"], result["links"]
    rows.append(("creations, single POST /v1/urls, /s; p50 / p99 ms", f"{c['rps']:,.0f}; {_ms(c)}", "", ""))
    rows.append((f"creations, POST /v1/urls:batch of {links['batch_size']:,}, links/s", f"{links['links_per_s']:,.0f}",
                 "", ""))
    runs = [s["hot_cache_on"], s["hot_cache_off"], s["all_cache_off"], m["cache_on"], m["cache_off"], c]
    peer_runs = [n["hot"], n["all"]]
    if paced:
        runs += [paced["mixed_cache_on"], paced["mixed_cache_off"]]
        peer_runs.append(paced["nginx_hot"])
    rows.append(("non-2xx/3xx answers, all runs", f"{sum(x['non_2xx'] for x in runs):,}",
                 f"{sum(x['non_2xx'] for x in peer_runs):,}", ""))
    checked = [x["checks"] for x in runs]
    peer_checked = [x["checks"] for x in peer_runs]
    rows.append(("sampled redirects right (302 + Location), all runs",
                 f"{sum(x['right'] for x in checked):,} of {sum(x['checked'] for x in checked):,}",
                 f"{sum(x['right'] for x in peer_checked):,} of {sum(x['checked'] for x in peer_checked):,}", ""))
    return rows


def print_table(result: dict) -> None:
    t = result["targets"]
    notes = [f"targets, judged on {t['judged_on']}: {_verdict(t)}",
             f"HTTP rows: {result['conditions']['load_generator']}; percentiles from wrk for both sides (paced rows: "
             "vegeta's, for both sides)",
             f"Sixfold: {result['conditions']['sixfold']}",
             f"nginx: {result['conditions']['nginx']}",
             f"key sets: {result['conditions']['key_sets']}",
             f"[dim]{result['host']['note']}[/dim]"]
    loads = [x["loadavg_1m"] for x in _runs(result)]
    if any(x["busy"] for x in loads):
        notes.append(f"[yellow]the box was busy (1-minute load above {result['host']['cores']} cores) around "
                     f"{sum(x['busy'] for x in loads)} of {len(loads)} runs: figures depressed and noisy[/yellow]")
    benchkit.print_table("sixfold bench shortener", ("measure", "Sixfold", "nginx", "Sixfold / nginx, target"),
                         figures_rows(result), notes)


def _runs(result: dict) -> list[dict]:
    s, m = result["sixfold"], result["mixed"]
    paced = result.get("paced")
    return [result["creations"], result["nginx"]["hot"], result["nginx"]["all"], s["hot_cache_on"],
            s["hot_cache_off"], s["all_cache_off"], m["cache_on"], m["cache_off"],
            *([paced["mixed_cache_on"], paced["mixed_cache_off"], paced["nginx_hot"]] if paced else [])]


def draw_chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    s, n, m = result["sixfold"], result["nginx"], result["mixed"]
    groups = ["hot set", "all keys", f"mix ({m['write_share']:.0%} creations), hot set"]
    paced = result.get("paced") or {}
    if paced:
        groups.append(f"mix paced at {paced['rate']:,}/s\n(vegeta, open loop)")
    series = (("Sixfold, cache on", (s["hot_cache_on"], None, m["cache_on"], paced.get("mixed_cache_on")), "#2b7bba"),
              ("Sixfold, cache off", (s["hot_cache_off"], s["all_cache_off"], m["cache_off"],
                                      paced.get("mixed_cache_off")), "#8fb8de"),
              ("nginx map (ceiling)", (n["hot"], n["all"], None, paced.get("nginx_hot")), "#d1495b"))
    series = tuple((name, runs[:len(groups)], color) for name, runs, color in series)
    fig, axes = plt.subplots(1, 3, figsize=(18, 4.8))
    x = np.arange(len(groups))
    width = 0.27
    for i, (name, runs, color) in enumerate(series):
        for axis, value in ((axes[0], lambda f: f["rps"]), (axes[1], lambda f: f.get("p99_ms", 0.0))):
            values = [value(f) if f else 0.0 for f in runs]
            axis.bar(x + (i - 1) * width, values, width, label=name, color=color)
            for j, v in enumerate(values):
                if runs[j]:
                    axis.annotate(f"{v:,.0f}" if axis is axes[0] else f"{v:.1f}", (x[j] + (i - 1) * width, v),
                                  ha="center", va="bottom", fontsize=7)
    axes[0].axhline(TARGET_RPS, color="grey", linestyle="--", linewidth=0.8)
    axes[0].set_ylabel("redirects/s")
    axes[0].set_title(f"redirects over HTTP (hot, cache on: {result['ratios']['hot_cache_on_over_nginx']:.2f}x "
                      f"nginx; target >= {TARGET_RPS:,.0f}/s)", fontsize=9)
    axes[1].axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    axes[1].set_ylabel("p99 ms (wrk; paced: vegeta)")
    axes[1].set_title(f"p99 latency (target < {TARGET_P99_MS:.0f} ms)", fontsize=9)
    for axis in axes[:2]:
        axis.set_xticks(x, groups, fontsize=8)
        axis.legend(fontsize=7)
    c, links = result["creations"], result["links"]
    axes[2].bar(["single POST /v1/urls", f"POST /v1/urls:batch\n({links['batch_size']:,} a request)"],
                [c["rps"], links["links_per_s"]], color=("#6a994e", "#a7c957"))
    for j, v in enumerate((c["rps"], links["links_per_s"])):
        axes[2].annotate(f"{v:,.0f}", (j, v), ha="center", va="bottom", fontsize=8)
    axes[2].set_ylabel("links created/s")
    axes[2].set_title(f"creations (single: p99 {c.get('p99_ms', 0.0):.1f} ms)", fontsize=9)
    t = result["targets"]
    fig.suptitle(f"sixfold bench shortener, {result['started_at']}: {links['created']:,} links, "
                 f"{result['host']['cores']} cores shared; target on the mix "
                 f"{'met' if t['rps_met'] and t['p99_met'] else 'NOT met'}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, directory: Path) -> tuple[Path, Path]:
    return benchkit.write_outputs("shortener", result, directory, draw_chart)


def run(settings: Settings, opts: ShortenerBenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Every part, the table, the JSON and the chart; returns (result, json, png)."""
    if opts.links < 10 or opts.write_every < 2 or not 0 < opts.hot_share <= 1:
        raise RuntimeError("give at least 10 links, write_every >= 2 and a hot share in (0, 1]")
    if opts.paced_rate and not opts.vegeta:
        say("vegeta (the open-loop load generator of the paced part) ...")
        opts = replace(opts, vegeta=benchkit.vegeta_binary(settings.home))
    result = benchkit.new_result("shortener", opts, SHARED_CORES_NOTE + "; one server runs at a time")
    with tempfile.TemporaryDirectory(prefix="sixfold-bench-shortener-") as tmp:
        work = Path(tmp)
        run_parts(work / "home", opts, work, say, result)
    summarise(result, opts)
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = write_outputs(result, settings.var / "bench")
    return result, json_path, png_path

