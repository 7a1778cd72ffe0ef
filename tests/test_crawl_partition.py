"""The crawler past one process: `sixfold crawl run --partition i/N` in N separate processes sharing one
frontier, judged by the local test site's server-side access log (each worker sends its own User-Agent):
every page fetched once overall, each host by one worker only (the one its stable hash names) and never
sooner than its delay after the previous request, the same URLs as a single-process crawl of the site,
duplicates across workers' hosts stored once, and no link left in an inbox."""

from __future__ import annotations

import hashlib
import itertools
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler.run import crawl
from sixfold.crawler.site import SiteSpec
from sixfold.crawler.site_server import RunningSite, serve
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

pytestmark = pytest.mark.e2e

PAGES = LAKE_TABLES["crawl_pages"]
DEFAULT_DELAY_S = 0.05  # hosts without a Crawl-delay; the polite host's Crawl-delay is the site's 0.1 s
CRAWL_ENV = {"SIXFOLD_CRAWLER_DEFAULT_DELAY_S": str(DEFAULT_DELAY_S), "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "0.1",
             "SIXFOLD_CRAWLER_ROBOTS_ATTEMPTS": "2", "SIXFOLD_CRAWLER_MAX_DEPTH": "8",
             "SIXFOLD_CRAWLER_PARTITION_POLL_S": "0.05", "SIXFOLD_CRAWLER_FLUSH_S": "0.5"}
SPEC = SiteSpec(hosts=5, pages_per_host=16, crawl_delay_s=0.1, traps=False, slow_host_latency_s=0.01)
EPSILON_S = 0.005  # float noise: the server logs arrival, the crawler waits from the previous response


def owner(host: str, n: int) -> int:
    """The partition of a host, computed here from the documented rule (blake2b-64 of the name, mod N)."""
    name = host.split(":")[0].encode()
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big") % n


def agent(label: str) -> str:
    return f"SixfoldBot/0.1 (test {label})"


def run_workers(site: RunningSite, home: Path, n: int) -> list[subprocess.CompletedProcess]:
    base = {**os.environ, **CRAWL_ENV, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"}
    procs = []
    for i in range(n):
        env = {**base, "SIXFOLD_CRAWLER_USER_AGENT": agent(f"worker {i}/{n}")}
        command = [sys.executable, "-m", "sixfold.cli", "crawl", "run", "--seeds", str(site.seeds_file),
                   "--max-pages", "2000", "--allow-host", "127.0.0.0/8", "--partition", f"{i}/{n}"]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    done = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            for p in procs:
                p.kill()
            raise
        done.append(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
    return done


@pytest.fixture(scope="module")
def crawls(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One site; a single-process crawl of it, then 2 workers, then 4, each with its own home."""
    with serve(SPEC) as site:
        single_home = tmp_path_factory.mktemp("single")
        settings = Settings.from_env({**CRAWL_ENV, "SIXFOLD_HOME": str(single_home),
                                      "SIXFOLD_CRAWLER_USER_AGENT": agent("single")})
        crawl(settings, site.seeds, max_pages=2000, allow_hosts=["127.0.0.0/8"])
        runs = {}
        for n in (2, 4):
            home = tmp_path_factory.mktemp(f"workers{n}")
            runs[n] = (home, run_workers(site, home, n))
        yield site, runs, site.access_log()


def requests_of(log: list[dict], label_prefix: str) -> list[dict]:
    return [r for r in log if r["ua"].startswith(agent(label_prefix).removesuffix(")"))]


def fetched_urls(records: list[dict]) -> Counter[str]:
    return Counter(f"http://{r['host']}{r['target']}" for r in records if r["target"] != "/robots.txt")


@pytest.mark.parametrize("n", [2, 4])
def test_workers_finish_and_fetch_every_page_exactly_once(crawls, n: int) -> None:
    site, runs, log = crawls
    _, procs = runs[n]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr[-2000:]
    counts = fetched_urls([r for r in requests_of(log, "worker") if r["ua"].endswith(f"/{n})")])
    assert site.truth.pages <= set(counts), sorted(site.truth.pages - set(counts))[:5]
    assert {u: c for u, c in counts.items() if c > 1} == {}, "a URL was fetched twice"
    assert not site.truth.disallowed & set(counts) and not site.truth.external & set(counts)


@pytest.mark.parametrize("n", [2, 4])
def test_each_host_is_fetched_by_its_one_worker_at_its_delay(crawls, n: int) -> None:
    site, _, log = crawls
    mine = [r for r in requests_of(log, "worker") if r["ua"].endswith(f"/{n})")]
    by_host: dict[str, list[dict]] = defaultdict(list)
    for r in mine:
        by_host[r["host"]].append(r)
    assert set(by_host) == set(site.truth.hosts)
    workers_used = set()
    for host, records in by_host.items():
        agents = {r["ua"] for r in records}
        assert agents == {agent(f"worker {owner(host, n)}/{n}")}, f"{host} fetched by {sorted(agents)}"
        workers_used |= agents
        delay = site.truth.crawl_delay[host] or DEFAULT_DELAY_S
        times = sorted(r["t"] for r in records)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert gaps and min(gaps) >= delay - EPSILON_S, f"{host}: requests {min(gaps):.3f}s apart, delay {delay}s"
    if n == 2:
        assert len(workers_used) == 2, "both workers should own hosts of this site"


@pytest.mark.parametrize("n", [2, 4])
def test_workers_crawl_what_one_process_crawls(crawls, n: int) -> None:
    _, _, log = crawls
    single = set(fetched_urls(requests_of(log, "single")))
    workers = set(fetched_urls([r for r in requests_of(log, "worker") if r["ua"].endswith(f"/{n})")]))
    assert single and workers == single


@pytest.mark.parametrize("n", [2, 4])
def test_shared_frontier_lake_and_duplicates_after_the_workers(crawls, n: int) -> None:
    site, runs, log = crawls
    home, procs = runs[n]
    settings = Settings.from_env({"SIXFOLD_HOME": str(home)})
    rows = ArrowLake(settings).read(PAGES).to_pylist()
    landed = Counter(r["url"] for r in rows)
    assert max(landed.values()) == 1, "a page landed twice (two workers' landings lost or repeated rows)"
    served = fetched_urls([r for r in requests_of(log, "worker") if r["ua"].endswith(f"/{n})")])
    assert set(landed) == set(served)
    store = SQLiteStore(settings.sqlite_path)
    frontier = {r["url"]: r for r in store.scan(SERVING_TABLES["crawl_frontier"])}
    assert all(frontier[u]["state"] == "done" and frontier[u]["fetch_count"] == 1 for u in site.truth.pages)
    assert store.scan(SERVING_TABLES["crawl_offers"]) == [], "links left in an inbox"
    workers = store.query(SERVING_TABLES["crawl_workers"], {"partitions": n})
    assert sorted(w["partition"] for w in workers) == list(range(n))
    assert {w["state"] for w in workers} == {"done"} and len({w["round"] for w in workers}) == 1
    by_url = {r["url"]: r for r in rows}
    for kind, groups in (("exact", site.truth.exact_duplicates), ("near", site.truth.near_duplicates)):
        assert groups
        for group in groups:  # across workers too (the main host's page and its mirror on the slow host)
            assert sum(by_url[u]["duplicate_of"] is None for u in group) == 1, (kind, group)
    reports = "".join(p.stdout for p in procs)
    assert "offered to other workers" in reports


def test_a_worker_taken_for_dead_while_slow_still_ends_with_its_peer(tmp_path: Path) -> None:
    """Worker 0 joins, then beats nothing for longer than the staleness limit (a loaded box); worker 1
    joining then takes it for dead and starts the next round. Both must still agree that the crawl is
    over once both are idle with no offers (they used to wait for each other's round forever: the CI
    hang of 2026-12-02). The oracle is the protocol's rule: two equal quiet views in a row."""
    from sixfold.crawler.partition import Partition, WorkerBoard

    now = [1_000.0]
    store = SQLiteStore(tmp_path / "store.db")
    first = WorkerBoard(store, Partition(0, 2), 0.2, wall=lambda: now[0])
    second = WorkerBoard(store, Partition(1, 2), 0.2, wall=lambda: now[0])
    assert first.join() == 1
    now[0] += first.stale_s + 1
    assert second.join() == 2  # worker 0 looked dead: a new round
    ended: dict[int, int] = {}
    for step in range(20):
        now[0] += 0.2
        for board in (first, second):
            if board.partition.index not in ended:
                board.beat("idle")
                if board.over():
                    ended[board.partition.index] = step
                    board.finish()
    assert sorted(ended) == [0, 1] and first.round == second.round == 2
    assert max(ended.values()) <= 3  # two equal views a poll apart, plus the poll that moved worker 0 up


def test_partition_is_validated_with_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sixfold.cli import app

    monkeypatch.setenv("SIXFOLD_HOME", str(tmp_path))
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("http://127.0.0.2:9/\n")
    runner = CliRunner()
    for value, says in (("2/2", "i must be below N"), ("1/0", "N must be at least 1"), ("one", "write i/N"),
                        ("-1/2", "write i/N")):
        result = runner.invoke(app, ["crawl", "run", "--seeds", str(seeds), "--max-pages", "1",
                                     f"--partition={value}"])
        assert result.exit_code == 2, (value, result.output)
        assert says in " ".join(result.output.split()), (value, result.output)


def test_crawl_cycle_fetch_partitioned_gives_each_host_one_task(tmp_path: Path) -> None:
    """The crawl_cycle DAG's mapped fetch tasks, called as Airflow calls them ("0/2", "1/2"): each host's
    URLs in one task's file only, every page fetched once over the cycles, the same pages as unpartitioned."""
    import json

    from sixfold.crawler import cycle

    env = {**CRAWL_ENV, "SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CRAWLER_USER_AGENT": agent("cycle")}
    settings = Settings.from_env(env)
    spec = SiteSpec(hosts=4, pages_per_host=12, crawl_delay_s=0.0, traps=False, slow_host_latency_s=0.0)
    with serve(spec) as site:
        for n in range(1, 12):
            cycle_id = f"c{n}"
            listed = cycle.generate(settings, cycle_id, 60, site.seeds if n == 1 else [])
            if listed["urls"] == 0:
                break
            for part in ("0/2", "1/2"):
                cycle.fetch(settings, cycle_id, ["127.0.0.0/8"], cycle.parse_partition(part))
            cycle.parse(settings, cycle_id)
            cycle.dedup(settings, cycle_id)
            cycle.update_frontier(settings, cycle_id)
            directory = cycle.cycle_dir(settings, cycle_id)
            hosts = {}
            for i in range(2):
                path = directory / f"fetched-{i}-of-2.jsonl"
                hosts[i] = {json.loads(line)["host"] for line in path.read_text().splitlines()} if path.exists() else set()
                assert all(owner(h, 2) == i for h in hosts[i])
            assert not hosts[0] & hosts[1]
        counts = fetched_urls(site.access_log())
    assert site.truth.pages <= set(counts)
    assert {u: c for u, c in counts.items() if c > 1} == {}
    landed = Counter(r["url"] for r in ArrowLake(settings).read(PAGES).to_pylist())
    assert set(landed) == set(counts) and max(landed.values()) == 1
