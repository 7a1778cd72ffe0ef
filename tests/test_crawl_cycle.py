"""The batch crawl cycle (generate -> fetch -> parse -> dedup -> update frontier): each stage idempotent
for its cycle id, cycles continue one another until the site is crawled, and the `crawl_cycle` DAG
runs one cycle with `dag.test()`."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler import cycle
from sixfold.crawler.site import SiteSpec, SiteTruth
from sixfold.crawler.site_server import serve
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

PAGES = LAKE_TABLES["crawl_pages"]
FRONTIER = SERVING_TABLES["crawl_frontier"]
CRAWL_ENV = {"SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0", "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "0.1",
             "SIXFOLD_CRAWLER_ROBOTS_ATTEMPTS": "1", "SIXFOLD_CRAWLER_MAX_DEPTH": "6"}
SPEC = SiteSpec(hosts=3, pages_per_host=12, crawl_delay_s=0.0, traps=False)


def run_cycle(settings: Settings, cycle_id: str, seeds: list[str], max_pages: int) -> dict:
    return {"generate": cycle.generate(settings, cycle_id, max_pages, seeds),
            "fetch": cycle.fetch(settings, cycle_id, ["127.0.0.0/8"]),
            "parse": cycle.parse(settings, cycle_id), "dedup": cycle.dedup(settings, cycle_id),
            "update": cycle.update_frontier(settings, cycle_id)}


def frontier_rows(settings: Settings) -> dict[str, dict]:
    return {r["url"]: r for r in SQLiteStore(settings.sqlite_path).scan(FRONTIER)}


def expected_duplicates(truth: SiteTruth, by_url: dict[str, dict]) -> dict[str, tuple[str, str]]:
    """The site's ground truth as verdicts: in each duplicate group the page fetched first (then the
    smaller URL) is the original, every other member is a duplicate of it; no page outside a group is one.
    Also checks the fixture: an exact group's bodies are equal, a near group's are not."""
    expected = {}
    for kind, groups in (("exact", truth.exact_duplicates), ("near", truth.near_duplicates)):
        for group in groups:
            shas = {by_url[u]["content_sha256"] for u in group}
            assert len(shas) == (1 if kind == "exact" else len(group)) and None not in shas
            first = min(group, key=lambda u: (by_url[u]["fetched_at"], u))
            expected.update({u: (kind, first) for u in group - {first}})
    return expected


@pytest.mark.e2e
def test_stages_are_idempotent_and_cycles_crawl_the_site(tmp_path: Path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), **CRAWL_ENV})
    lake = ArrowLake(settings)
    with serve(SPEC) as site:
        first = run_cycle(settings, "c1", site.seeds, 40)
        assert first["generate"]["urls"] == len(site.seeds) and first["fetch"]["fetched"] >= 2
        rows_after, frontier_after, log_after = lake.read(PAGES).to_pylist(), frontier_rows(settings), site.access_log()

        again = run_cycle(settings, "c1", [], 40)  # every stage retried: nothing changes, nothing is fetched
        assert again["generate"]["reused"] and again["fetch"]["this_attempt"] == 0
        assert again["update"]["completed"] == 0
        assert len(site.access_log()) == len(log_after)
        assert sorted(lake.read(PAGES).to_pylist(), key=lambda r: r["url"]) == sorted(rows_after,
                                                                                     key=lambda r: r["url"])
        assert frontier_rows(settings) == frontier_after

        for n in range(2, 12):  # later cycles continue from the frontier until nothing is due
            report = run_cycle(settings, f"c{n}", [], 40)
            if report["generate"]["urls"] == 0:
                break
        counts = Counter(f"http://{r['host']}{r['target']}" for r in site.access_log())

    truth = site.truth
    assert truth.pages <= set(counts)
    assert all(counts[u] == 1 for u in truth.pages), "a page was fetched by two cycles"
    assert not truth.disallowed & set(counts)
    rows = lake.read(PAGES).to_pylist()
    landed = Counter(r["url"] for r in rows)
    assert truth.pages <= set(landed) and max(landed.values()) == 1
    by_url = {r["url"]: r for r in rows}
    assert truth.exact_duplicates and truth.near_duplicates, "the site serves both kinds of duplicate"
    expected = expected_duplicates(truth, by_url)
    assert {u: (r["duplicate_kind"], r["duplicate_of"]) for u, r in by_url.items() if r["duplicate_of"]} == expected
    frontier = frontier_rows(settings)
    assert all(frontier[u]["state"] == "done" and frontier[u]["fetch_count"] == 1 for u in truth.pages)


@pytest.mark.airflow
@pytest.mark.parametrize("partitions", [0, 2], ids=["fetch-default", "fetch-mapped-over-2"])
def test_crawl_cycle_dag_runs_one_cycle(airflow: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        partitions: int) -> None:
    from airflow.models.dagbag import DagBag

    from sixfold.platform.airflow_env import DAGS_FOLDER

    for key, value in CRAWL_ENV.items():
        monkeypatch.setenv(key, value)
    settings = airflow
    # 127.0.0.2..4 all hash to partition 1 of 2; a fourth host (127.0.0.5) is partition 0's
    with serve(SPEC if partitions != 2 else replace(SPEC, hosts=4)) as site:
        # Seeding every member of the site's duplicate groups puts them all in this one cycle's fetch list.
        truth = site.truth
        grouped = set().union(*truth.exact_duplicates, *truth.near_duplicates)
        seeds_file = tmp_path / "seeds.txt"
        seeds_file.write_text("".join(f"{u}\n" for u in [*site.seeds, *sorted(grouped)]))
        dag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False).dags["crawl_cycle"]
        when = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
        run = dag.test(logical_date=when, run_conf={"seeds_file": str(seeds_file), "max_pages": 20,
                                                    "allow_hosts": ["127.0.0.0/8"], "partitions": partitions})
        assert run.state == "success"
        log = site.access_log()
    cycle_id = cycle.cycle_id_for(run.data_interval_start)
    directory = cycle.cycle_dir(settings, cycle_id)
    assert (directory / "fetchlist.jsonl").exists() and (directory / "parsed.jsonl").exists()
    files = sorted(p.name for p in directory.glob("fetched*.jsonl"))
    if partitions == 2:  # one mapped fetch task per partition; a host's requests all came from one of them
        assert files == ["fetched-0-of-2.jsonl", "fetched-1-of-2.jsonl"]
        hosts = [{json.loads(line)["host"] for line in (directory / f).read_text().splitlines()} for f in files]
        assert hosts[0] and hosts[1] and not hosts[0] & hosts[1]
        assert {r["host"] for r in log} == hosts[0] | hosts[1]
    else:
        assert files == ["fetched.jsonl"]
    rows = ArrowLake(settings).read(PAGES).to_pylist()
    by_url = {r["url"]: r for r in rows}
    assert len(by_url) == len(rows) and set(by_url) >= {s for s in site.seeds if s in truth.pages} | grouped
    assert all(r["cycle_id"] == cycle_id for r in rows)
    queued = [r for r in frontier_rows(settings).values() if r["state"] == "queued"]
    assert queued, "the cycle's links should be queued for the next cycle"
    assert truth.exact_duplicates and truth.near_duplicates, "the site serves both kinds of duplicate"
    expected = expected_duplicates(truth, by_url)
    # the cycle's dedup stage, page by page
    assert {u: (r["duplicate_kind"], r["duplicate_of"]) for u, r in by_url.items() if r["duplicate_of"]} == expected
    # the Spark job (spark-submit) ran last, over the whole crawl: the same verdicts, and nothing else
    assert [t.task_id for t in dag.topological_sort()][-1] == "near_duplicates"
    verdicts = ArrowLake(settings).read(LAKE_TABLES["crawl_duplicates"]).to_pylist()
    assert len(verdicts) == len({v["url"] for v in verdicts})
    assert {v["url"]: (v["kind"], v["duplicate_of"]) for v in verdicts} == expected
    assert all(v["distance"] <= settings.crawler_simhash_distance and (v["kind"] == "near" or v["distance"] == 0)
               for v in verdicts)
