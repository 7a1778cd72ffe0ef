"""`sixfold bench crawler --quick` end to end: the site in a subprocess, our crawler, Scrapy, then ours in 1, 2
and 4 worker processes; no timing asserts.

The figures are checked against facts recorded apart from them: each crawler's own count of the
pages it got (our lake, Scrapy's stats) against what the site's access log says it served, and the
URLs served against the site's ground truth, rebuilt here from the spec the bench recorded."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import pytest
from benchrun import run_quick_bench

from sixfold.crawler.site import SiteSpec, build

pytestmark = pytest.mark.e2e


def test_quick_crawler_bench_compares_both(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("crawler", tmp_path, 420)

    spec = SiteSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in latest["site"]["spec"].items()})
    truth = build(spec).truth(latest["site"]["port"])
    assert latest["site"]["truth_pages"] == len(truth.pages) > 0

    ours, scrapy = latest["ours"], latest["scrapy"]
    for system in (ours, scrapy):
        server = system["server"]
        served = server["html_page_urls"]
        # what the crawler counted itself == what the server's access log says it served, each page once
        assert system["own_count"]["html_pages"] == server["html_pages"] == len(served) > 0
        assert server["repeat_page_fetches"] == 0
        assert server["truth_pages_fetched"] == len(truth.pages & set(served))
    assert scrapy["seconds"] == scrapy["stats"]["elapsed_time_seconds"]  # Scrapy's own clock, unmodified
    assert ours["seconds"] >= ours["report"]["seconds"] > 0  # the timed call holds the crawl's own timing

    # the ratio from the raw figures: each crawler's own page count over its own crawl seconds
    rate = {name: s["own_count"]["html_pages"] / s["seconds"] for name, s in (("ours", ours), ("scrapy", scrapy))}
    assert latest["ratio_pages_per_s"] == pytest.approx(rate["ours"] / rate["scrapy"], rel=1e-9)

    # ours fetched exactly the pages a correct crawler fetches: every truth page, nothing robots.txt forbids
    assert set(ours["server"]["html_page_urls"]) == truth.pages
    assert ours["server"]["coverage"] == 1.0 and ours["server"]["disallowed_fetched"] == 0
    # Scrapy fetched them too, plus only the host whose robots.txt answers 5xx (it reads that as allow-all)
    scrapy_urls = set(scrapy["server"]["html_page_urls"])
    assert truth.pages <= scrapy_urls
    robots_5xx = {host for host, status in truth.robots_status.items() if status >= 500}
    extra = scrapy_urls - truth.pages
    assert {urlsplit(u).netloc for u in extra} <= robots_5xx
    assert scrapy["server"]["disallowed_fetched"] == len(extra)

    # past one process: every N crawled exactly the truth, each page once, each host by one worker only
    assert [run["workers"] for run in latest["workers"]] == [1, 2, 4]
    for run in latest["workers"]:
        server = run["server"]
        assert server["truth_pages_fetched"] == len(truth.pages) and server["repeat_page_fetches"] == 0
        assert server["hosts_with_two_workers"] == [] and sum(server["hosts_per_worker"]) == len(truth.hosts)
        assert len(run["user_agents"]) == run["workers"]

    assert "traps off" in latest["site"]["note"]
    assert scrapy["scrapy_version"].startswith("2.")
    assert "ours" in stdout and "Scrapy" in stdout
