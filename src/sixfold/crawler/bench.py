"""`sixfold bench crawler`: our crawler against Scrapy on the same local test site, in the same run.

The site (`sixfold.crawler.site`, traps off by default, no Crawl-delay, no slow-host latency) is
served by a subprocess, so the server never shares a GIL with a crawler. Then, one after the
other, over the same seeds and with the same rules:

1. ours: `sixfold.crawler.run.crawl` in this process (fresh SIXFOLD_HOME: SQLite frontier, Parquet
   pages, blobs), with politeness set to zero (no default delay, no AutoThrottle) and its normal
   rule of one fetch in flight per host;
2. Scrapy (`sixfold.crawler.bench_scrapy`, its own process): ROBOTSTXT_OBEY, the same concurrency,
   one request per host at a time, no delay, no AutoThrottle, the same depth, page budget and
   size limit.

Both are measured by the site server's access log (by user agent): pages = responses with status
200, an HTML content type and a size under the limit; pages/s = pages / the crawler's own crawl
seconds (ours: the `crawl()` call; Scrapy: its elapsed_time_seconds stat). Coverage = share of
the truth's pages fetched; truth pages/s counts only those (Scrapy reads a robots.txt that answers
500 as "allow all" and crawls that host too, which RFC 9309 forbids and ours does not); also
reported: robots-disallowed URLs fetched, repeat fetches, the rate over the server-side window. Beside
them, for checking: the HTML page URLs the server served each crawler, each crawler's own page count
(our landed rows, Scrapy's stat) and the site's port, from which its truth can be rebuilt.

3. ours past one process: 1, 2 and 4 workers (`sixfold crawl run --partition i/N`, each its own
   process, a fresh SIXFOLD_HOME per N), with the same rules. Each worker sends its own user agent,
   so the access log says which worker fetched what: pages/s = 200 HTML pages / the crawl's window
   as the server saw it (first to last request of its workers); also over the processes' wall time
   (interpreter start and the end-of-crawl agreement included), hosts per worker, and whether every
   host was fetched by one worker only.

Results go to `var/bench/crawler-<UTC>.json/.png` and `crawler-latest.json/.png`.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sixfold.crawler.site import SiteSpec
from sixfold.crawler.site_server import RunningSite, serve
from sixfold.platform import benchkit
from sixfold.platform.benchkit import SHARED_CORES_NOTE, Say, tail, with_load
from sixfold.platform.settings import Settings


@dataclass(frozen=True)
class CrawlerBenchOptions:
    hosts: int = 16
    pages_per_host: int = 150
    traps: bool = False  # traps are infinite: with them on, both crawl until max_pages
    slow_host_latency_s: float = 0.0  # one host at a time per crawler: a slow host would set the pace of both
    concurrency: int = 16  # fetches in flight at once, both crawlers
    per_host: int = 1  # fetches in flight per host (ours: always one)
    max_pages: int = 0  # the fetch budget of both; 0: everything the site has (traps off only)
    max_depth: int = 16
    max_bytes: int = 5_000_000  # page size limit of both
    timeout_s: float = 600.0  # per crawler
    seed: int = 7
    workers: tuple[int, ...] = (1, 2, 4)  # partitioned runs of ours, each worker its own process

    @classmethod
    def quick(cls) -> CrawlerBenchOptions:
        return cls(hosts=8, pages_per_host=40, timeout_s=180.0)

    def site_spec(self) -> SiteSpec:
        return SiteSpec(hosts=self.hosts, pages_per_host=self.pages_per_host, seed=self.seed, crawl_delay_s=0.0,
                        traps=self.traps, slow_host_latency_s=self.slow_host_latency_s,
                        polite_host_pages=self.pages_per_host)


def fetch_budget(site: RunningSite, opts: CrawlerBenchOptions) -> int:
    """The page budget both crawlers get: everything fetchable on a trap-free site, with room to spare."""
    if opts.max_pages:
        return opts.max_pages
    if opts.traps:
        raise RuntimeError("with traps on the site is infinite: give a page budget (max_pages) or turn traps off")
    t = site.truth
    fetchable = len(t.pages) + len(t.redirects) + len(t.redirect_loops) + len(t.errors) + len(t.non_html)
    return 2 * fetchable


# ---- the two crawls -------------------------------------------------------------------------------
def crawl_ours(settings: Settings, site: RunningSite, budget: int, opts: CrawlerBenchOptions, work: Path,
               say: Say) -> dict[str, Any]:
    from sixfold.crawler.run import crawl

    home = work / "ours"
    ours = replace(Settings.from_env({**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"}),
                   crawler_concurrency=opts.concurrency, crawler_default_delay_s=0.0, crawler_autothrottle=False,
                   crawler_robots_retry_s=0.05, crawler_max_depth=opts.max_depth,
                   crawler_max_body_bytes=opts.max_bytes, crawler_timeout_s=min(opts.timeout_s, 30.0),
                   crawler_host_budget=max(settings.crawler_host_budget, 4 * opts.pages_per_host))
    hosts = [h.split(":")[0] for h in site.truth.hosts]
    say(f"ours: {opts.concurrency} workers, one fetch per host at a time, budget {budget:,} fetches")
    began_t, began = time.time(), time.perf_counter()
    report = crawl(ours, site.seeds, budget, allow_hosts=hosts, concurrency=opts.concurrency)
    seconds = time.perf_counter() - began
    return {"seconds": seconds, "window": (began_t, time.time()), "user_agent": ours.crawler_user_agent,
            "report": asdict(report) if hasattr(report, "__dataclass_fields__") else str(report),
            "own_count": {"html_pages": landed_html_pages(ours, opts.max_bytes),
                          "how": "crawl_pages rows the crawler landed: status 200, an HTML type, no error"},
            "how": "sixfold.crawler.run.crawl in the bench process; seconds = the crawl() call (opening the "
                   "SQLite frontier, fetching, extracting, dedup, landing Parquet pages and blobs)"}


def landed_html_pages(settings: Settings, max_bytes: int) -> int:
    """The crawler's own count of the HTML pages it fetched (its lake), to check against the server's."""
    from schemas.records import LAKE_TABLES
    from sixfold.platform.lake import ArrowLake

    rows = ArrowLake(settings).read(LAKE_TABLES["crawl_pages"]).to_pylist()
    return sum(r["status"] == 200 and (r["content_type"] or "").lower().startswith("text/html") and not r["error"]
               and (r["bytes"] or 0) <= max_bytes for r in rows)


def crawl_scrapy(site: RunningSite, budget: int, opts: CrawlerBenchOptions, work: Path, say: Say) -> dict[str, Any]:
    import scrapy

    out, log_path = work / "scrapy-stats.json", work / "scrapy.log"
    user_agent = f"Scrapy/{scrapy.__version__} (sixfold bench peer)"
    cmd = [sys.executable, "-m", "sixfold.crawler.bench_scrapy", "--seeds", str(site.seeds_file), "--out", str(out),
           "--concurrency", str(opts.concurrency), "--per-host", str(opts.per_host), "--depth", str(opts.max_depth),
           "--max-pages", str(budget), "--max-bytes", str(opts.max_bytes), "--user-agent", user_agent]
    say(f"Scrapy {scrapy.__version__}: CONCURRENT_REQUESTS={opts.concurrency}, PER_DOMAIN={opts.per_host}, "
        f"CLOSESPIDER_PAGECOUNT={budget:,}, DEPTH_LIMIT={opts.max_depth}")
    began_t, began = time.time(), time.perf_counter()
    with open(log_path, "wb") as log:
        try:
            done = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, timeout=opts.timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"Scrapy did not finish in {opts.timeout_s:.0f} s; log: {log_path}\n"
                               f"{tail(log_path)}") from None
    wall = time.perf_counter() - began
    if done.returncode != 0 or not out.exists():
        raise RuntimeError(f"Scrapy exited with {done.returncode}; log: {log_path}\n{tail(log_path)}")
    stats = json.loads(out.read_text())
    return {"seconds": float(stats["stats"]["elapsed_time_seconds"]), "process_wall_s": wall,
            "window": (began_t, time.time()), "user_agent": user_agent, "scrapy_version": stats["scrapy_version"],
            "settings": stats["settings"], "stats": stats["stats"],
            "own_count": {"html_pages": int(stats["stats"].get("bench/html_pages", 0)),
                          "how": "Scrapy's stat bench/html_pages: HTML responses the spider parsed"},
            "how": "Scrapy in its own process; seconds = Scrapy's elapsed_time_seconds (engine start to close), "
                   "process_wall_s adds interpreter and reactor start"}


def tally(site: RunningSite, run: dict[str, Any], records: list[dict[str, Any]], max_bytes: int) -> dict[str, Any]:
    """What the server saw of one crawler: its pages, coverage of the truth, rule breaks."""
    lo, hi = run["window"]
    mine = [r for r in records if r["ua"] == run["user_agent"] and lo - 1 <= r["t"] <= hi + 1]
    canon = site.site.canonical
    pages = [r for r in mine if r["status"] == 200 and r["type"].lower().startswith("text/html")
             and r["bytes"] <= max_bytes]
    page_urls = [canon(f"http://{r['host']}{r['target']}") for r in pages]
    fetched = {canon(f"http://{r['host']}{r['target']}") for r in mine if r["target"] != "/robots.txt"}
    truth = site.truth
    times = [r["t"] for r in mine]
    window = max(times) - min(times) if len(times) > 1 else 0.0
    return {
        "requests": len(mine),
        "robots_requests": sum(r["target"] == "/robots.txt" for r in mine),
        "html_pages": len(pages),
        "html_page_urls": sorted(set(page_urls)),  # what the server served this crawler, to check against a truth
        "distinct_html_pages": len(set(page_urls)),
        "repeat_page_fetches": len(page_urls) - len(set(page_urls)),
        "pages_per_s": len(pages) / run["seconds"] if run["seconds"] else 0.0,
        "server_window_s": window,
        "pages_per_s_server_window": len(pages) / window if window else 0.0,
        "truth_pages": len(truth.pages),
        "truth_pages_fetched": len(truth.pages & fetched),
        "coverage": len(truth.pages & fetched) / len(truth.pages) if truth.pages else 0.0,
        "truth_pages_per_s": len(truth.pages & fetched) / run["seconds"] if run["seconds"] else 0.0,
        "disallowed_fetched": len({u for u in fetched if not site.site.robots_allows(u)}),
        "trap_urls_fetched": sum(any(re.search(rx, u) for rx in truth.traps.values()) for u in fetched),
        "statuses": {str(s): sum(r["status"] == s for r in mine) for s in sorted({r["status"] for r in mine})},
    }


def crawl_partitioned(site: RunningSite, budget: int, opts: CrawlerBenchOptions, work: Path, n: int,
                      say: Say) -> dict[str, Any]:
    """`sixfold crawl run --partition i/n` for i < n, started together, each its own process and user agent."""
    home = work / f"workers-{n}"
    hosts = [h.split(":")[0] for h in site.truth.hosts]
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded",
           "SIXFOLD_CRAWLER_CONCURRENCY": str(opts.concurrency), "SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0",
           "SIXFOLD_CRAWLER_AUTOTHROTTLE": "0", "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "0.05",
           "SIXFOLD_CRAWLER_MAX_DEPTH": str(opts.max_depth), "SIXFOLD_CRAWLER_MAX_BODY_BYTES": str(opts.max_bytes),
           "SIXFOLD_CRAWLER_TIMEOUT_S": str(min(opts.timeout_s, 30.0)),
           "SIXFOLD_CRAWLER_HOST_BUDGET": str(max(Settings().crawler_host_budget, 4 * opts.pages_per_host))}
    agents = [f"{Settings().crawler_user_agent} (bench worker {i}/{n})" for i in range(n)]
    say(f"ours, {n} worker process(es): --partition 0/{n} .. {n - 1}/{n}, {opts.concurrency} fetches in flight each")
    began_t, began = time.time(), time.perf_counter()
    procs = []
    for i, ua in enumerate(agents):
        log_path = work / f"workers-{n}-{i}.log"
        with open(log_path, "wb") as log:
            cmd = [sys.executable, "-m", "sixfold.cli", "crawl", "run", "--seeds", str(site.seeds_file),
                   "--max-pages", str(budget), "--partition", f"{i}/{n}", *[a for h in hosts for a in ("--allow-host", h)]]
            procs.append((subprocess.Popen(cmd, env={**env, "SIXFOLD_CRAWLER_USER_AGENT": ua}, stdout=log,
                                           stderr=subprocess.STDOUT), log_path))
    deadline = time.monotonic() + opts.timeout_s
    for proc, log_path in procs:
        try:
            proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for other, _ in procs:
                other.kill()
            raise RuntimeError(f"{n} workers did not finish in {opts.timeout_s:.0f} s; log: {log_path}\n"
                               f"{tail(log_path)}") from None
        if proc.returncode != 0:
            raise RuntimeError(f"a worker of {n} exited with {proc.returncode}; log: {log_path}\n{tail(log_path)}")
    wall = time.perf_counter() - began
    return {"workers": n, "user_agents": agents, "process_wall_s": wall, "window": (began_t, time.time()),
            "how": "N `sixfold crawl run --partition i/N` processes started together against one SQLite store; "
                   "pages/s over the server-side window (first to last request of the N workers)"}


def tally_partitioned(site: RunningSite, run: dict[str, Any], records: list[dict[str, Any]],
                      max_bytes: int) -> dict[str, Any]:
    """What the server saw of N workers: pages, repeats, coverage, and which worker fetched each host."""
    lo, hi = run["window"]
    agents = set(run["user_agents"])
    mine = [r for r in records if r["ua"] in agents and lo - 1 <= r["t"] <= hi + 1]
    canon = site.site.canonical
    pages = [canon(f"http://{r['host']}{r['target']}") for r in mine
             if r["status"] == 200 and r["type"].lower().startswith("text/html") and r["bytes"] <= max_bytes]
    fetched = {canon(f"http://{r['host']}{r['target']}") for r in mine if r["target"] != "/robots.txt"}
    host_agents: dict[str, set[str]] = {}
    for r in mine:
        host_agents.setdefault(r["host"], set()).add(r["ua"])
    times = [r["t"] for r in mine]
    window = max(times) - min(times) if len(times) > 1 else 0.0
    return {
        "requests": len(mine), "html_pages": len(pages), "distinct_html_pages": len(set(pages)),
        "repeat_page_fetches": len(pages) - len(set(pages)),
        "truth_pages_fetched": len(site.truth.pages & fetched),
        "coverage": len(site.truth.pages & fetched) / len(site.truth.pages) if site.truth.pages else 0.0,
        "server_window_s": window,
        "pages_per_s": len(pages) / window if window else 0.0,
        "pages_per_s_process_wall": len(pages) / run["process_wall_s"] if run["process_wall_s"] else 0.0,
        "hosts_per_worker": [sum(agents_ == {ua} for agents_ in host_agents.values()) for ua in run["user_agents"]],
        "hosts_with_two_workers": sorted(h for h, a in host_agents.items() if len(a) > 1),
    }


def scaling_rows(result: dict) -> list[tuple[str, str, str, str, str, str]]:
    rows = []
    base = result["workers"][0]["server"]["pages_per_s"] if result.get("workers") else 0.0
    for run_ in result.get("workers", []):
        s = run_["server"]
        rows.append((str(run_["workers"]), f"{s['pages_per_s']:,.1f}", f"{s['pages_per_s'] / base:.2f}x" if base else "",
                     f"{s['pages_per_s_process_wall']:,.1f}", f"{s['html_pages']:,} ({s['repeat_page_fetches']} repeats)",
                     "/".join(map(str, s["hosts_per_worker"]))
                     + (f", {len(s['hosts_with_two_workers'])} shared!" if s["hosts_with_two_workers"] else "")))
    return rows


# ---- report -------------------------------------------------------------------------------------------
def figures_rows(result: dict) -> list[tuple[str, str, str, str]]:
    o, s = result["ours"]["server"], result["scrapy"]["server"]
    return [
        ("pages/s (200 HTML / crawl seconds)", f"{o['pages_per_s']:,.1f}", f"{s['pages_per_s']:,.1f}",
         f"{result['ratio_pages_per_s']:.2f}x"),
        ("truth pages/s (required pages only / crawl seconds)", f"{o['truth_pages_per_s']:,.1f}",
         f"{s['truth_pages_per_s']:,.1f}", f"{result['ratio_truth_pages_per_s']:.2f}x"),
        ("crawl seconds", f"{result['ours']['seconds']:.2f}", f"{result['scrapy']['seconds']:.2f}", ""),
        ("pages/s over the server-side window", f"{o['pages_per_s_server_window']:,.1f}",
         f"{s['pages_per_s_server_window']:,.1f}", f"{result['ratio_pages_per_s_server_window']:.2f}x"),
        ("200 HTML pages fetched", f"{o['html_pages']:,}", f"{s['html_pages']:,}", ""),
        (f"truth pages covered (of {o['truth_pages']:,})", f"{o['coverage']:.1%}", f"{s['coverage']:.1%}", ""),
        ("requests (robots.txt included)", f"{o['requests']:,}", f"{s['requests']:,}", ""),
        ("robots-disallowed URLs fetched", f"{o['disallowed_fetched']:,}", f"{s['disallowed_fetched']:,}", ""),
        ("repeat page fetches", f"{o['repeat_page_fetches']:,}", f"{s['repeat_page_fetches']:,}", ""),
    ]


def print_table(result: dict) -> None:
    benchkit.print_table("sixfold bench crawler", ("measure", "ours", "Scrapy", "ours / Scrapy"), figures_rows(result),
                         [result["site"]["note"], f"[dim]{result['host']['note']}[/dim]"])
    if result.get("workers"):
        benchkit.print_table("ours past one process (--partition i/N)",
                             ("workers", "pages/s (server window)", "vs 1", "pages/s (process wall)", "200 HTML pages",
                              "hosts per worker"), scaling_rows(result),
                             ["each worker its own process and user agent; hosts split by a stable hash of the name; "
                              "wall = start of the processes to the last exit (interpreter start included)"])


def draw_chart(result: dict, records: dict[str, list[float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    o, s = result["ours"]["server"], result["scrapy"]["server"]
    colors = ("#2b7bba", "#d1495b")
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.2))
    axes[0].bar(["ours", "Scrapy"], [o["pages_per_s"], s["pages_per_s"]], color=list(colors))
    axes[0].set_ylabel("pages/s")
    axes[0].set_title(f"throughput (ours/Scrapy {result['ratio_pages_per_s']:.2f}x)")
    axes[1].bar(["ours", "Scrapy"], [100 * o["coverage"], 100 * s["coverage"]], color=list(colors))
    axes[1].set_ylim(0, 105)
    axes[1].set_ylabel("% of the truth's pages")
    axes[1].set_title("coverage")
    for (name, times), color in zip(records.items(), colors):
        if times:
            start = times[0]
            axes[2].plot([t - start for t in times], range(1, len(times) + 1), label=name, color=color)
    axes[2].set_xlabel("seconds since the crawler's first request")
    axes[2].set_ylabel("200 HTML pages")
    axes[2].set_title("pages over time (server side)")
    axes[2].legend()
    runs = result.get("workers", [])
    if runs:
        rates = [r["server"]["pages_per_s"] for r in runs]
        axes[3].bar([str(r["workers"]) for r in runs], rates, color="#2b7bba")
        axes[3].set_xlabel("worker processes (--partition i/N)")
        axes[3].set_ylabel("pages/s")
        axes[3].set_title(f"ours past one process ({runs[-1]['workers']} vs 1: "
                          f"{rates[-1] / rates[0] if rates[0] else 0:.2f}x)")
    fig.suptitle(f"sixfold bench crawler, {result['started_at']}: {result['site']['hosts']} hosts, "
                 f"{result['site']['truth_pages']:,} pages ({result['host']['cores']} cores shared)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_outputs(result: dict, records: dict[str, list[float]], directory: Path) -> tuple[Path, Path]:
    return benchkit.write_outputs("crawler", result, directory, lambda r, path: draw_chart(r, records, path))


def run(settings: Settings, opts: CrawlerBenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Serve the site, crawl it with ours then Scrapy, print the table, write JSON and chart."""
    result = benchkit.new_result("crawler", opts, SHARED_CORES_NOTE + "; the site server is a third process")
    spec = opts.site_spec()
    with tempfile.TemporaryDirectory(prefix="sixfold-bench-crawler-") as tmp:
        work = Path(tmp)
        say(f"serving the test site: {spec.hosts} hosts x {spec.pages_per_host} pages, traps "
            f"{'on' if spec.traps else 'off'}, no Crawl-delay (subprocess)")
        with serve(spec, in_process=False, state_dir=work / "site") as site:
            budget = fetch_budget(site, opts)
            t = site.truth
            result["site"] = {
                "spec": asdict(spec), "port": site.port, "hosts": len(t.hosts), "truth_pages": len(t.pages),
                "budget": budget,
                "note": (f"site: {len(t.hosts)} hosts, {len(t.pages):,} pages, traps "
                         + ("off, so both crawl the whole finite site (budget "
                            f"{budget:,} fetches is never reached)" if not spec.traps
                            else f"on, so both stop at the budget of {budget:,} fetches")),
            }
            say("[1/3] ours")
            ours = with_load(lambda: crawl_ours(settings, site, budget, opts, work, say))
            say(f"ours: {ours['seconds']:.2f} s")
            say("[2/3] Scrapy")
            peer = with_load(lambda: crawl_scrapy(site, budget, opts, work, say))
            say(f"Scrapy: {peer['seconds']:.2f} s (process {peer['process_wall_s']:.2f} s)")
            partitioned = []
            for n in opts.workers:
                say(f"[3/3] ours, {n} worker(s)")
                partitioned.append(with_load(lambda n=n: crawl_partitioned(site, budget, opts, work, n, say)))
            time.sleep(0.2)  # the last log lines
            records = site.access_log()
        for run_ in partitioned:
            run_["server"] = tally_partitioned(site, run_, records, opts.max_bytes)
        result["workers"] = partitioned
        ours["server"] = tally(site, ours, records, opts.max_bytes)
        peer["server"] = tally(site, peer, records, opts.max_bytes)
        result["ours"], result["scrapy"] = ours, peer
        rate_o, rate_s = ours["server"]["pages_per_s"], peer["server"]["pages_per_s"]
        result["ratio_pages_per_s"] = rate_o / rate_s if rate_s else 0.0
        truth_o, truth_s = ours["server"]["truth_pages_per_s"], peer["server"]["truth_pages_per_s"]
        result["ratio_truth_pages_per_s"] = truth_o / truth_s if truth_s else 0.0
        win_o, win_s = ours["server"]["pages_per_s_server_window"], peer["server"]["pages_per_s_server_window"]
        result["ratio_pages_per_s_server_window"] = win_o / win_s if win_s else 0.0
        curves = {}
        for name, run_ in (("ours", ours), ("Scrapy", peer)):
            lo, hi = run_["window"]
            curves[name] = sorted(r["t"] for r in records if r["ua"] == run_["user_agent"] and lo - 1 <= r["t"] <= hi + 1
                                  and r["status"] == 200 and r["type"].startswith("text/html")
                                  and r["bytes"] <= opts.max_bytes)
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = write_outputs(result, curves, settings.var / "bench")
    return result, json_path, png_path
