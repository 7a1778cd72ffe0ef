"""The crawler's test site is a trustworthy oracle: its truth matches what it serves.

The served site is crawled here by brute force, independently of the site's own truth builder and
of the crawler: plain urllib, html.parser for links (and <base href>), urllib.robotparser for
robots.txt, a canonicaliser written for this test, and a simhash of our own. No timing asserts.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
import urllib.robotparser
from collections import deque
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import numpy as np
import pytest

from sixfold.crawler.site import SiteSpec, SiteSpecError, SiteTruth, build
from sixfold.crawler.site_server import RunningSite, serve

PAGE_LIMIT = 5_000_000  # bytes; the site's over-sized files are bigger, its pages far smaller
UA = "sixfold-site-test"


# ---- an independent brute-force crawler ----------------------------------------------------------------
def canon(url: str) -> str:
    p = urlsplit(url)
    host = (p.hostname or "").lower()
    netloc = host if p.port in (None, 80) else f"{host}:{p.port}"
    query = sorted((k, v) for k, v in parse_qsl(p.query, keep_blank_values=True)
                   if not (k.startswith("utm_") or k == "fbclid"))
    return urlunsplit((p.scheme.lower(), netloc, p.path or "/", urlencode(query), ""))


class PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.base: str | None = None
        self.hrefs: list[str] = []
        self.nofollow: list[str] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "base" and self.base is None and a.get("href"):
            self.base = a["href"]
        if tag == "a" and a.get("href"):
            self.hrefs.append(a["href"] or "")
            if "nofollow" in (a.get("rel") or ""):
                self.nofollow.append(a["href"] or "")
        if tag in ("script", "style"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def parse(url: str, body: bytes) -> tuple[list[str], list[str], str]:
    """(absolute links, raw hrefs, visible text) of an HTML page fetched from `url`."""
    parser = PageParser()
    parser.feed(body.decode("utf-8"))
    base = urljoin(url, parser.base) if parser.base else url
    return [urljoin(base, href) for href in parser.hrefs], parser.hrefs, " ".join(parser.text)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


OPENER = urllib.request.build_opener(NoRedirect)


def fetch(url: str) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, headers={"User-Agent": UA})
    try:
        with OPENER.open(request, timeout=20) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


@dataclass
class Crawled:
    pages: dict[str, bytes] = field(default_factory=dict)
    disallowed: set[str] = field(default_factory=set)
    errors: dict[str, int] = field(default_factory=dict)
    non_html: set[str] = field(default_factory=set)
    hops: dict[str, str] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)
    trap_urls: set[str] = field(default_factory=set)
    robots: dict[str, int] = field(default_factory=dict)
    hrefs: list[str] = field(default_factory=list)
    fetched: list[str] = field(default_factory=list)


def robots_for(origin: str) -> tuple[int, urllib.robotparser.RobotFileParser | None]:
    status, _, body = fetch(origin + "/robots.txt")
    if status >= 500:
        return status, None  # RFC 9309: unreachable -> disallow everything
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(body.decode().splitlines() if status == 200 else [])  # 4xx -> allow everything
    return status, rp


def brute_force_crawl(seeds: list[str], hosts: set[str], trap_regexes: list[str], limit: int = 3000) -> Crawled:
    out = Crawled()
    traps = [re.compile(r) for r in trap_regexes]
    rules: dict[str, urllib.robotparser.RobotFileParser | None] = {}
    queue, seen = deque(seeds), set(seeds)
    while queue:
        assert len(out.fetched) < limit, "the brute-force crawl did not end: a trap is not in the truth's regexes"
        url = queue.popleft()
        parts = urlsplit(url)
        if parts.netloc not in hosts:
            out.external.add(url)
            continue
        origin = f"{parts.scheme}://{parts.netloc}"
        if parts.netloc not in rules:
            out.robots[parts.netloc], rules[parts.netloc] = robots_for(origin)
        rp = rules[parts.netloc]
        if rp is None or not rp.can_fetch(UA, url):
            out.disallowed.add(url)
            continue
        if any(t.search(url) for t in traps):
            out.trap_urls.add(url)
            continue
        out.fetched.append(url)
        status, headers, body = fetch(url)
        found: list[str] = []
        if 300 <= status < 400:
            out.hops[url] = canon(urljoin(url, headers["location"]))
            found.append(out.hops[url])
        elif status >= 400:
            out.errors[url] = status
        elif not headers.get("content-type", "").lower().startswith("text/html") or len(body) > PAGE_LIMIT:
            out.non_html.add(url)
        else:
            out.pages[url] = body
            links, hrefs, _ = parse(url, body)
            out.hrefs += hrefs
            found += [canon(link) for link in links if urlsplit(link).scheme in ("http", "https")]
        for link in found:
            if link not in seen:
                seen.add(link)
                queue.append(link)
    return out


def finals(hops: dict[str, str]) -> tuple[dict[str, str], set[str]]:
    redirects, loops = {}, set()
    for start in hops:
        at, visited = start, {start}
        while at in hops:
            at = hops[at]
            if at in visited:
                loops.add(start)
                break
            visited.add(at)
        else:
            redirects[start] = at
    return redirects, loops


def simhash64(text: str, k: int) -> int:
    """A reference simhash: md5 of each k-word shingle, one vote per shingle per bit."""
    words = re.findall(r"[a-z0-9]+", text.lower())
    shingles = [" ".join(words[i:i + k]) for i in range(max(1, len(words) - k + 1))]
    digests = np.frombuffer(b"".join(hashlib.md5(s.encode()).digest()[:8] for s in shingles), dtype="<u8")
    bits = (digests[:, None] >> np.arange(64, dtype=np.uint64)) & np.uint64(1)
    votes = (bits.astype(np.int64) * 2 - 1).sum(axis=0)
    return sum(1 << bit for bit in range(64) if votes[bit] > 0)


# ---- the pure site -----------------------------------------------------------------------------------
@pytest.mark.unit
def test_same_spec_same_bytes_other_seed_other_site() -> None:
    a, b, c = build(SiteSpec()), build(SiteSpec()), build(SiteSpec(seed=8))
    truth = a.truth(8800)
    for url in sorted(truth.pages)[:40] + ["http://127.0.0.2:8800/robots.txt"]:
        p = urlsplit(url)
        target = p.path + (f"?{p.query}" if p.query else "")
        assert a.respond(p.netloc, target) == b.respond(p.netloc, target)
    assert a.respond("127.0.0.2:8800", "/") != c.respond("127.0.0.2:8800", "/")
    assert truth.to_json() == b.truth(8800).to_json()
    assert SiteTruth.from_json(truth.to_json()) == truth


@pytest.mark.unit
def test_truth_is_canonical_and_consistent() -> None:
    truth = build(SiteSpec()).truth(8800)
    every = (truth.pages | truth.disallowed | truth.non_html | set(truth.errors) | set(truth.redirects)
             | set(truth.redirects.values()) | truth.redirect_loops | set(truth.seeds))
    assert all(canon(u) == u for u in every)
    assert set(truth.redirects.values()) <= truth.pages
    assert not truth.pages & truth.disallowed
    assert not any(re.search(r, u) for r in truth.traps.values() for u in truth.pages)
    assert set(truth.traps) == {"calendar", "cyclic", "session_ids", "query_explosion", "deep", "long_url"}
    assert all(g <= truth.pages and len(g) >= 2 for g in truth.exact_duplicates + truth.near_duplicates)
    assert any(len(g) == 3 for g in truth.exact_duplicates)  # print copy and a mirror on another host
    assert sorted(truth.errors.values()) == [404, 404, 500, 503]
    assert truth.crawl_delay["127.0.0.3:8800"] == 0.2 and sum(truth.crawl_delay.values()) == 0.2
    assert truth.robots_status == {"127.0.0.2:8800": 200, "127.0.0.3:8800": 200, "127.0.0.4:8800": 200,
                                   "127.0.0.5:8800": 404, "127.0.0.6:8800": 500}
    assert "http://127.0.0.6:8800/" in truth.disallowed  # 5xx robots.txt: not even the root
    assert truth.nofollow <= truth.pages
    assert all(len(u) < 200 for u in truth.pages)
    quiet = build(SiteSpec(traps=False, crawl_delay_s=0)).truth(8800)
    assert quiet.traps == {} and set(quiet.crawl_delay.values()) == {0.0}
    assert quiet.pages == truth.pages


@pytest.mark.unit
def test_pages_use_every_link_form() -> None:
    site = build(SiteSpec())
    bodies = b"".join(site.respond(urlsplit(u).netloc, urlsplit(u).path + ("?" + urlsplit(u).query
                                                                          if urlsplit(u).query else ""))[2]
                      for u in site.truth(8800).pages).decode()
    for needle in ('href="HTTP://', 'href="../', 'href="./', 'href="/', 'href="?', "utm_source=", "fbclid=",
                   "#section-", 'href="#top"', "mailto:", "javascript:", "tel:", ".invalid/", '<base href="/',
                   '<base href="http://', 'rel="nofollow"', 'href="http://127.0.0.2:8800"', "year=2026&amp;page=",
                   "<title>", '<meta name="description"'):
        assert needle in bodies, needle


@pytest.mark.unit
def test_bad_spec_says_what_to_use() -> None:
    with pytest.raises(SiteSpecError, match="at least 12"):
        build(SiteSpec(pages_per_host=3))
    with pytest.raises(SiteSpecError, match="1..250"):
        build(SiteSpec(hosts=0))
    assert build(SiteSpec(hosts=1, traps=False)).truth(8800).seeds == ["http://127.0.0.2:8800/"]


# ---- the served site -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def running() -> RunningSite:
    with serve(SiteSpec()) as site:
        yield site


@pytest.fixture(scope="module")
def crawled(running: RunningSite) -> Crawled:
    truth = running.truth
    return brute_force_crawl(truth.seeds, set(truth.hosts), list(truth.traps.values()))


@pytest.mark.e2e
def test_an_independent_crawl_finds_exactly_the_truth(running: RunningSite, crawled: Crawled) -> None:
    truth = running.truth
    assert set(crawled.pages) == truth.pages
    assert crawled.disallowed == truth.disallowed
    assert crawled.errors == truth.errors
    assert crawled.non_html == truth.non_html
    assert crawled.external == truth.external
    redirects, loops = finals(crawled.hops)
    assert redirects == truth.redirects
    assert loops == truth.redirect_loops
    assert crawled.robots == truth.robots_status
    assert {u for u in crawled.trap_urls} and all(any(re.search(r, u) for r in truth.traps.values())
                                                  for u in crawled.trap_urls)
    assert len(crawled.fetched) == len(set(crawled.fetched))


@pytest.mark.e2e
def test_duplicates_are_what_the_truth_says(running: RunningSite, crawled: Crawled) -> None:
    truth = running.truth
    for group in truth.exact_duplicates:
        assert len({crawled.pages[u] for u in group}) == 1, group
    distinct = {hashlib.sha256(b).digest() for u, b in crawled.pages.items()
                if not any(u in g for g in truth.exact_duplicates)}
    assert len(distinct) == len(crawled.pages) - sum(len(g) for g in truth.exact_duplicates)
    for group in truth.near_duplicates:
        a, b = (crawled.pages[u] for u in sorted(group))
        assert a != b
        text_a, text_b = parse("http://x/", a)[2], parse("http://x/", b)[2]
        words_a, words_b = text_a.split(), text_b.split()
        assert len(words_a) == len(words_b) and 1 <= sum(x != y for x, y in zip(words_a, words_b)) <= 4
        for k in (1, 2, 3):
            assert (simhash64(text_a, k) ^ simhash64(text_b, k)).bit_count() <= 3, (group, k)


@pytest.mark.e2e
def test_traps_are_infinite(running: RunningSite) -> None:
    truth = running.truth
    root = truth.seeds[0]
    links = [canon(u) for u in parse(root, fetch(root)[2])[0]]
    for family, regex in truth.traps.items():
        trap = re.compile(regex)
        url = next(u for u in links if trap.search(u))
        seen = {url}
        for _ in range(50):
            status, headers, body = fetch(url)
            assert status == 200 and headers["content-type"].startswith("text/html"), (family, url)
            fresh = [u for u in (canon(x) for x in parse(url, body)[0]) if trap.search(u) and u not in seen]
            assert fresh, f"{family} ran dry at {url}"
            url = fresh[0]
            seen.add(url)
        assert len(seen) == 51
        if family == "long_url":
            assert len(url) > 2048
        if family == "cyclic":
            assert "/a/b/a/b/a/b/" in url


@pytest.mark.e2e
def test_robots_and_the_access_log(running: RunningSite, crawled: Crawled) -> None:
    truth = running.truth
    polite = next(h for h, r in truth.roles.items() if r == "polite")
    body = fetch(f"http://{polite}/robots.txt")[2].decode()
    delay = re.search(r"(?im)^crawl-delay:\s*([\d.]+)", body)
    assert delay and float(delay.group(1)) == truth.crawl_delay[polite] > 0
    main = truth.hosts[0]
    rp = urllib.robotparser.RobotFileParser()
    rp.parse(fetch(f"http://{main}/robots.txt")[2].decode().splitlines())
    assert not rp.can_fetch("BadBot", f"http://{main}/") and rp.can_fetch(UA, f"http://{main}/")
    assert f"http://{main}/private/press/kit.html" in truth.pages

    log = running.access_log()
    assert {"host", "target", "status", "t"} <= set(log[0])
    mine = [r for r in log if r["ua"] == UA]
    assert {r["host"] for r in mine if r["target"] == "/robots.txt"} == set(truth.hosts)
    fetched = {f"http://{r['host']}{r['target']}" for r in mine if r["target"] != "/robots.txt"}
    assert not fetched & truth.disallowed
    assert truth.pages <= fetched
    slow = next(h for h, r in truth.roles.items() if r == "slow")
    assert truth.latency_s[slow] > 0 and all(v == 0 for h, v in truth.latency_s.items() if h != slow)


@pytest.mark.e2e
def test_subprocess_server_and_the_cli(tmp_path: Path) -> None:
    env = {**os.environ, "SIXFOLD_HOME": str(tmp_path)}
    sixfold = Path(sys.executable).parent / "sixfold"
    proc = subprocess.Popen([str(sixfold), "crawl", "site", "--port", "0", "--hosts", "2", "--pages", "12",
                             "--no-delay", "--no-traps"], env=env, cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state = tmp_path / "var" / "crawl" / "site"
    try:
        spec = SiteSpec(hosts=2, pages_per_host=12, traps=False, crawl_delay_s=0)
        with serve(spec, in_process=False, state_dir=tmp_path / "sub") as site:
            assert fetch(site.seeds[1])[0] == 200
            assert SiteTruth.from_json((tmp_path / "sub" / "truth.json").read_text()) == site.truth
            deadline = time.monotonic() + 10
            while not site.access_log() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert site.access_log()[0]["host"] == f"127.0.0.3:{site.port}"

        deadline = time.monotonic() + 60
        while not (state / "ready").exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        seeds = (state / "seeds.txt").read_text().split()
        assert len(seeds) == 2 and fetch(seeds[0])[0] == 200
        truth = SiteTruth.from_json((state / "truth.json").read_text())
        assert truth.seeds == seeds and truth.crawl_delay[truth.hosts[1]] == 0.0 and truth.traps == {}
    finally:
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert seeds[0] in output
    assert '"target": "/"' in (state / "access.jsonl").read_text()
