"""The crawler against the local test site, checked by the site's ground truth and its server-side
access log: every page once, robots.txt obeyed, Crawl-delay kept, traps bounded with reasons,
duplicates stored once, and a crawl killed mid-way resumed without losing or refetching pages."""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any
from urllib.parse import urlsplit

import pytest

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler.run import PageBlobs, crawl
from sixfold.crawler.site import SiteSpec
from sixfold.crawler.site_server import RunningSite, serve
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

pytestmark = pytest.mark.e2e

PAGES = LAKE_TABLES["crawl_pages"]
DROPS = SERVING_TABLES["crawl_drops"]
CRAWL_ENV = {  # no default delay (only the polite host's Crawl-delay), quick robots.txt retries, shallow traps
    "SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0", "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "0.2",
    "SIXFOLD_CRAWLER_ROBOTS_ATTEMPTS": "2", "SIXFOLD_CRAWLER_MAX_DEPTH": "8", "SIXFOLD_CRAWLER_MAX_URL_LENGTH": "256",
}
MAX_DEPTH, MAX_VARIANTS = 8, 30
EPSILON_S = 0.02


def requested(site: RunningSite) -> Counter[str]:
    return Counter(f"http://{r['host']}{r['target']}" for r in site.access_log())


@pytest.fixture(scope="module")
def crawled(tmp_path_factory: pytest.TempPathFactory) -> Any:
    home = tmp_path_factory.mktemp("crawl-home")
    settings = Settings.from_env({"SIXFOLD_HOME": str(home), **CRAWL_ENV})
    with serve(SiteSpec(hosts=5, pages_per_host=30, crawl_delay_s=0.2)) as site:
        report = crawl(settings, site.seeds, max_pages=2000, allow_hosts=["127.0.0.0/8"])
        rows = ArrowLake(settings).read(PAGES).to_pylist()
        yield site, report, settings, rows, requested(site)


def test_every_page_is_fetched_exactly_once(crawled) -> None:
    site, report, _, rows, counts = crawled
    truth = site.truth
    assert truth.pages <= set(counts), sorted(truth.pages - set(counts))[:5]
    twice = {url: n for url, n in counts.items() if n > 1 and not url.endswith("/robots.txt")}
    assert twice == {}, "fetched more than once: " + repr(sorted(twice)[:5])
    robots = {url: n for url, n in counts.items() if url.endswith("/robots.txt")}
    assert len(robots) == len(truth.hosts) and max(robots.values()) <= 2  # 5xx: asked again once (ATTEMPTS=2)
    landed = Counter(r["url"] for r in rows)
    assert all(landed[url] == 1 for url in truth.pages)
    by_url = {r["url"]: r for r in rows}
    for url in truth.pages:
        assert by_url[url]["status"] == 200 and by_url[url]["title"] and by_url[url]["content_sha256"]
    assert report.pages == len(rows) and report.pages_per_s > 0


def test_robots_disallowed_and_external_urls_are_never_requested(crawled) -> None:
    site, report, settings, _, counts = crawled
    truth = site.truth
    assert not truth.disallowed & set(counts)
    assert not truth.external & set(counts)
    robots_error = next(h for h, role in truth.roles.items() if role == "robots_error")
    asked = [u for u in counts if u.startswith(f"http://{robots_error}/")]
    assert asked == [f"http://{robots_error}/robots.txt"]  # RFC 9309: a 5xx robots.txt disallows everything
    assert report.deferred_hosts == [robots_error]
    drops = SQLiteStore(settings.sqlite_path)
    robots_drops = {r["url"] for r in drops.query(DROPS, {"reason": "robots"})}
    assert robots_drops and robots_drops <= truth.disallowed
    assert {r["url"] for r in drops.query(DROPS, {"reason": "external"})} == truth.external


def test_crawl_delay_is_kept_between_requests_server_side(crawled) -> None:
    site, *_ = crawled
    polite = {h: d for h, d in site.truth.crawl_delay.items() if d > 0}
    assert polite
    for host, delay in polite.items():
        times = sorted(r["t"] for r in site.access_log() if r["host"] == host)
        assert len(times) >= 3
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert min(gaps) >= delay - EPSILON_S, f"{host}: requests {min(gaps):.3f}s apart, Crawl-delay {delay}s"


def test_retry_after_of_a_503_holds_its_host_server_side(crawled) -> None:
    site, *_ = crawled
    busy = [url for url, status in site.truth.errors.items() if status == 503]
    assert busy
    log = site.access_log()
    for url in busy:
        host = url.split("/")[2]
        times = sorted(r["t"] for r in log if r["host"] == host)
        at = next(r["t"] for r in log if f"http://{r['host']}{r['target']}" == url)
        after = [t for t in times if t > at]
        assert after, f"nothing else was asked of {host} after its 503: the test proves nothing"
        assert after[0] - at >= site.site.spec.retry_after_s - EPSILON_S, f"{host} asked again {after[0] - at:.3f}s later"


def test_traps_are_bounded_and_every_drop_has_its_reason(crawled) -> None:
    site, report, settings, _, counts = crawled
    fetched = {family: [u for u in counts if re.search(rx, u)] for family, rx in site.truth.traps.items()}
    bounds = {"calendar": 2 * MAX_DEPTH + 2, "cyclic": 10, "session_ids": 6, "query_explosion": MAX_VARIANTS + 1,
              "deep": MAX_DEPTH + 1, "long_url": 5}
    for family, urls in fetched.items():
        assert 1 <= len(urls) <= bounds[family], (family, len(urls))
    assert not any("sid=" in u for u in counts)  # session ids are canonicalised away
    store = SQLiteStore(settings.sqlite_path)
    expected = {"calendar": "depth", "cyclic": "repeated_segment", "query_explosion": "query_explosion",
                "deep": "depth", "long_url": "url_length"}
    for family, reason in expected.items():
        dropped = [r for r in store.query(DROPS, {"reason": reason}) if re.search(site.truth.traps[family], r["url"])]
        assert dropped, f"no {reason} drop recorded for the {family} trap"
        assert all(r["detail"] and r["cycle_id"] == report.cycle_id for r in dropped)
    loops = [r["url"] for r in store.query(DROPS, {"reason": "redirect_loop"})]
    assert loops and set(loops) <= site.truth.redirect_loops
    assert sum(report.dropped.values()) == len(store.scan(DROPS))


def test_exact_and_near_duplicates_are_stored_once(crawled) -> None:
    site, report, settings, rows, _ = crawled
    by_url = {r["url"]: r for r in rows}
    blobs = PageBlobs(settings.blob_dir / "crawl")
    for kind, groups in (("exact", site.truth.exact_duplicates), ("near", site.truth.near_duplicates)):
        assert groups
        for group in groups:
            members = [by_url[u] for u in group]
            originals = [r for r in members if r["duplicate_of"] is None]
            assert len(originals) == 1, (kind, group)
            original = originals[0]
            assert original["text"] and blobs.get(original["content_sha256"]) is not None
            for r in members:
                if r is not original:
                    assert r["duplicate_of"] == original["url"] and r["duplicate_kind"] == kind
                    assert r["text"] is None
                    if kind == "near":
                        assert blobs.get(r["content_sha256"]) is None  # its content is not stored again
    originals = {r["content_sha256"] for r in rows if r["content_sha256"] and r["duplicate_of"] is None}
    stored = list((settings.blob_dir / "crawl").glob("*/*.html.gz"))
    assert len(stored) == len(originals)
    assert report.exact_duplicates == sum(len(g) - 1 for g in site.truth.exact_duplicates)
    assert report.near_duplicates == sum(len(g) - 1 for g in site.truth.near_duplicates)


def test_redirects_errors_and_non_html_are_recorded(crawled) -> None:
    site, _, settings, rows, _ = crawled
    by_url = {r["url"]: r for r in rows}
    for source, final in site.truth.redirects.items():
        hop = by_url[source]
        assert 300 <= hop["status"] < 400 and hop["final_url"] != source
        assert by_url[final]["status"] == 200
    for url, status in site.truth.errors.items():
        assert by_url[url]["status"] == status
    too_big = set()  # by what the site serves: an HTML type (so it is read) and a body over the limit
    for url in site.truth.non_html:
        parts = urlsplit(url)
        _, headers, body = site.site.respond(parts.netloc, parts.path + (f"?{parts.query}" if parts.query else ""))
        if headers["content-type"].startswith("text/html") and len(body) > settings.crawler_max_body_bytes:
            too_big.add(url)
    assert too_big
    for url in site.truth.non_html:
        row = by_url[url]
        assert row["text"] is None and row["content_sha256"] is None
        assert (row["error"] is not None and "limit" in row["error"]) == (url in too_big), (url, row["error"])
    page = by_url[site.seeds[0]]
    assert page["out_links"] and page["depth"] == 0 and page["fetched_at"] and page["simhash"] is not None


def test_ssrf_guard_refuses_the_site_without_an_allow_list(tmp_path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), **CRAWL_ENV})
    with serve(SiteSpec(hosts=2, pages_per_host=12, traps=False, crawl_delay_s=0.0)) as site:
        report = crawl(settings, site.seeds, max_pages=10, allow_hosts=[])
        assert site.access_log() == []
        assert report.errors == 2
        assert all("--allow-host 127.0.0." in e for e in report.error_samples.values())
        # refused URLs stay queued: the same crawl, run again with the allow-list, fetches them
        again = crawl(settings, site.seeds, max_pages=1000, allow_hosts=["127.0.0.2", "127.0.0.3"])
        assert again.resumed == 2 and site.truth.pages <= set(requested(site))


def landed_urls(settings: Settings) -> Counter[str]:
    return Counter(r["url"] for r in ArrowLake(settings).read(PAGES).select(["url"]).to_pylist())


def test_a_killed_crawl_resumes_without_losing_or_refetching_pages(tmp_path) -> None:
    env = {**os.environ, **CRAWL_ENV, "SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CRAWLER_FLUSH_PAGES": "5",
           "SIXFOLD_CRAWLER_FLUSH_S": "0.2", "SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0.05",
           "SIXFOLD_CRAWLER_AUTOTHROTTLE": "0"}
    settings = Settings.from_env(env)
    with serve(SiteSpec(hosts=3, pages_per_host=30, crawl_delay_s=0.0, traps=False)) as site:
        command = [sys.executable, "-m", "sixfold.cli", "crawl", "run", "--seeds", str(site.seeds_file),
                   "--max-pages", "1000", "--allow-host", "127.0.0.0/8"]
        first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and first.poll() is None:
            try:
                if sum(landed_urls(settings).values()) >= 15:
                    break
            except OSError:  # read while the crawler swapped the partition's file in: look again
                pass
            time.sleep(0.05)
        assert first.poll() is None, "the crawl finished before it could be killed; slow it down"
        first.send_signal(signal.SIGKILL)
        first.wait()
        time.sleep(0.5)  # the server logs a request once it has answered: let in-flight answers finish
        before = landed_urls(settings)
        requests_before = requested(site)
        assert before and set(before) < set(site.truth.pages) | set(site.truth.redirects) | set(site.truth.errors) \
            | site.truth.non_html | site.truth.redirect_loops

        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, check=False)
        assert second.returncode == 0, second.stderr[-2000:]
        assert "queued URLs from an earlier run" in second.stdout
        counts = requested(site)

    after = landed_urls(settings)
    assert site.truth.pages <= set(after), "pages lost by the kill"
    for url in before:
        assert counts[url] == 1, f"{url} was landed before the kill and fetched again"
    refetched = {u for u, n in counts.items() if n > 1 and not u.endswith("/robots.txt")}
    assert refetched <= set(requests_before) - set(before)  # only pages in flight (fetched, not landed) at the kill
    assert all(n == 1 for n in after.values()), "a page landed twice"


def test_max_pages_is_exact_and_the_next_run_continues(tmp_path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), **CRAWL_ENV})
    with serve(SiteSpec(hosts=2, pages_per_host=12, crawl_delay_s=0.0, traps=False)) as site:
        first = crawl(settings, site.seeds, max_pages=7, allow_hosts=["127.0.0.0/8"], concurrency=4)
        pages_asked = [u for u in requested(site) if not u.endswith("/robots.txt")]
        assert first.pages == 7 and len(pages_asked) == 7 and first.queued_left > 0
        second = crawl(settings, site.seeds, max_pages=1000, allow_hosts=["127.0.0.0/8"])
        counts = requested(site)
    assert second.resumed == first.queued_left
    assert site.truth.pages <= set(counts)
    assert all(n == 1 for u, n in counts.items() if not u.endswith("/robots.txt"))
    robots = {u: n for u, n in counts.items() if u.endswith("/robots.txt")}
    assert robots and set(robots.values()) == {1}  # the second run reused the answers the first one kept


@pytest.mark.integration
def test_a_crawl_keeps_its_frontier_and_duplicates_in_cassandra(services_running, tmp_path) -> None:
    """The cluster profile: frontier, checksums, SimHash bands and drops in Cassandra (a fresh keyspace)."""
    import uuid

    env = {**CRAWL_ENV, "SIXFOLD_HOME": str(tmp_path), "SIXFOLD_PROFILE": "cluster",
           "SIXFOLD_CASSANDRA_HOST": ":".join(map(str, services_running.cassandra_contact)),
           "SIXFOLD_CASSANDRA_KEYSPACE": f"sixfold_crawl_{uuid.uuid4().hex[:8]}"}
    settings = Settings.from_env(env)
    with serve(SiteSpec(hosts=2, pages_per_host=15, crawl_delay_s=0.0, traps=False)) as site:
        first = crawl(settings, site.seeds, max_pages=9, allow_hosts=["127.0.0.0/8"], concurrency=4)
        second = crawl(settings, site.seeds, max_pages=1000, allow_hosts=["127.0.0.0/8"])
        counts = requested(site)
        truth = site.truth
    assert first.pages == 9 and second.resumed == first.queued_left > 0  # the frontier outlived the first run
    assert truth.pages <= set(counts) and not truth.disallowed & set(counts)
    assert all(n == 1 for u, n in counts.items() if not u.endswith("/robots.txt"))
    by_url = {r["url"]: r for r in ArrowLake(settings).read(PAGES).to_pylist()}
    for kind, groups in (("exact", truth.exact_duplicates), ("near", truth.near_duplicates)):
        assert groups
        for group in groups:  # one original per group, across both runs: the checksum and band tables held
            assert sum(by_url[u]["duplicate_of"] is None for u in group) == 1, (kind, group)
            assert {by_url[u]["duplicate_kind"] for u in group} == {None, kind}
