"""The crawler's pieces on their own: canonical URLs, extraction, SimHash, the SSRF guard, traps,
robots.txt semantics, AutoThrottle, the revisit schedule, the fetcher registry, the DNS cache."""

from __future__ import annotations

import asyncio
import itertools
import random
import socket

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sixfold.crawler.dedup import (
    DuplicateEliminator,
    SimHashIndex,
    band_slices,
    hamming,
    simhash,
    to_signed,
    to_unsigned,
)
from sixfold.crawler.dns import DnsCache
from sixfold.crawler.extract import canonical_url, extract
from sixfold.crawler.fetcher import FetcherRegistry, FetchNotEnabled, FtpFetcher
from sixfold.crawler.frontier import next_interval
from sixfold.crawler.politeness import AutoThrottle, RobotsCache, politeness_delay, retry_after_s
from sixfold.crawler.ssrf import BlockedAddress, SsrfGuard
from sixfold.crawler.traps import TrapGuard
from sixfold.platform.settings import Settings, SettingsError
from sixfold.platform.store import SQLiteStore

pytestmark = pytest.mark.unit


# ---- canonical URLs: expected strings written by hand ------------------------------------------------
@pytest.mark.parametrize("raw, base, expected", [
    ("HTTP://Example.COM:80/a/../b?z=1&a=2#frag", None, "http://example.com/b?a=2&z=1"),
    ("https://x.org:443", None, "https://x.org/"),
    ("https://x.org:8443/p", None, "https://x.org:8443/p"),
    ("http://x.org/p?utm_source=mail&utm_medium=e&id=7&fbclid=IwAR1&gclid=9", None, "http://x.org/p?id=7"),
    ("http://x.org/cart;jsessionid=ABC123?item=4&PHPSESSID=f00", None, "http://x.org/cart?item=4"),
    ("http://EXAMPLE.com./%7Euser/", None, "http://example.com/~user/"),
    ("http://x.org/a b?q=a b", None, "http://x.org/a%20b?q=a+b"),
    ("../c.html?b=2&a=1#top", "http://h.org/s/x/p.html", "http://h.org/s/c.html?a=1&b=2"),
    ("?page=2", "http://h.org/archive?page=1", "http://h.org/archive?page=2"),
    ("/root.html", "http://h.org:8080/deep/er/", "http://h.org:8080/root.html"),
    ("#section", "http://h.org/doc", "http://h.org/doc"),
    ("//cdn.h.org/x", "https://h.org/", "https://cdn.h.org/x"),
    ("ftp://files.h.org:21/pub/", None, "ftp://files.h.org/pub/"),
    ("http://[::1]:80/x", None, "http://[::1]/x"),
    ("http://127.0.0.2:8800", None, "http://127.0.0.2:8800/"),
])
def test_canonical_url_known_vectors(raw: str, base: str | None, expected: str) -> None:
    assert canonical_url(raw, base) == expected


@pytest.mark.parametrize("raw", ["mailto:a@b.org", "javascript:void(0)", "tel:+15555550100", "data:text/html,hi",
                                 "http://user:pw@h.org/", "http://h.org:99999/", "", "   "])
def test_non_crawlable_links_have_no_canonical_form(raw: str) -> None:
    assert canonical_url(raw, "http://h.org/") is None


@given(st.lists(st.sampled_from(["a=1", "b=2", "c=", "utm_source=x", "z=9", "fbclid=q"]), max_size=6))
def test_canonical_url_is_idempotent_and_ignores_query_order(params: list[str]) -> None:
    url = "http://H.org/p?" + "&".join(params)
    once = canonical_url(url)
    assert once is not None and canonical_url(once) == once
    assert canonical_url("http://h.org/p?" + "&".join(reversed(params))) == once


def test_extract_title_description_text_links_base_and_nofollow() -> None:
    html = """<!doctype html><html><head><title>  The  Title </title>
    <meta name="description" content=" About   this page ">
    <base href="/docs/"><style>.x{}</style><script>var hidden = 1;</script></head>
    <body><h1>Hello</h1><p>Visible <b>text</b>.</p><noscript>no script</noscript>
    <a href="intro.html">intro</a> <a href="/abs.html#x">abs</a> <a href="intro.html">again</a>
    <a href="secret.html" rel="nofollow noopener">no</a> <a href="mailto:x@y.z">mail</a>
    <a href="javascript:go()">js</a> <a href="HTTP://Other.Host:80/?b=1&a=2&utm_campaign=z">other</a>
    </body></html>"""
    page = extract(html, "http://h.org/start/page.html")
    assert page.title == "The Title"
    assert page.description == "About this page"
    assert page.links == ["http://h.org/docs/intro.html", "http://h.org/abs.html", "http://other.host/?a=2&b=1"]
    assert "Visible text" in page.text and "hidden" not in page.text and "no script" not in page.text


def test_meta_robots_nofollow_follows_nothing() -> None:
    page = extract('<meta name="robots" content="noindex, NOFOLLOW"><a href="/x">x</a>', "http://h.org/")
    assert page.nofollow_page and page.links == []


# ---- SimHash -------------------------------------------------------------------------------------------
WORDS = [f"w{i}" for i in range(300)]


def random_text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def test_simhash_is_stable_and_small_edits_move_few_bits() -> None:
    rng = random.Random(3)
    text = random_text(rng, 1500)
    words = text.split()
    words[700] = "edited"
    assert simhash(text) == simhash(text) and simhash("") is None
    assert hamming(simhash(text), simhash(" ".join(words))) <= 3
    assert hamming(simhash(text), simhash(random_text(rng, 1500))) > 3
    assert to_unsigned(to_signed(2**64 - 1)) == 2**64 - 1 and to_signed(2**63) == -(2**63)


@pytest.mark.parametrize("distance", [0, 2, 3, 5])
def test_band_slices_cover_64_bits_in_ints(distance: int) -> None:
    slices = band_slices(distance)
    assert len(slices) >= distance + 1 and sum(w for _, w in slices) == 64 and max(w for _, w in slices) <= 31
    covered = sorted(bit for shift, width in slices for bit in range(shift, shift + width))
    assert covered == list(range(64))


def test_banded_index_finds_exactly_what_brute_force_finds() -> None:
    rng = random.Random(11)
    base = [rng.getrandbits(64) for _ in range(40)]
    stored = list(base)
    for b in base[:20]:  # neighbours at 1..5 bits
        flipped = b
        for bit in rng.sample(range(64), rng.randint(1, 5)):
            flipped ^= 1 << bit
        stored.append(flipped)
    index = SimHashIndex(3)
    for i, value in enumerate(stored):
        index.add(value, f"u{i}")
    for probe in stored + [rng.getrandbits(64) for _ in range(50)]:
        brute = {f"u{i}" for i, v in enumerate(stored) if hamming(v, probe) <= 3}
        found = index.near(probe)
        if not brute:
            assert found is None
        else:
            assert found is not None and found[0] in brute
            assert found[1] == min(hamming(v, probe) for v in stored if hamming(v, probe) <= 3)


@given(st.integers(0, 2**64 - 1), st.sets(st.integers(0, 63), max_size=6))
@hsettings(max_examples=200, deadline=None)
def test_banded_index_never_misses_within_the_distance(value: int, bits: set[int]) -> None:
    other = value
    for bit in bits:
        other ^= 1 << bit
    index = SimHashIndex(3)
    index.add(value, "orig")
    found = index.near(other)
    assert (found is not None) == (len(bits) <= 3)


def test_duplicate_eliminator_exact_near_and_persisted(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    dedup = DuplicateEliminator(store, 3)
    h = simhash(random_text(random.Random(5), 800))
    assert dedup.classify("http://h/a", "sha-a", h) is None
    assert dedup.classify("http://h/a", "sha-a", h) is None  # a revisit of the original is no duplicate
    assert dedup.classify("http://h/print-a", "sha-a", h) == ("exact", "http://h/a")
    assert dedup.classify("http://h/a2", "sha-a2", h ^ 0b101) == ("near", "http://h/a")
    assert dedup.classify("http://h/b", "sha-b", h ^ 0xFFFF_0000_FFFF) is None
    again = DuplicateEliminator(store, 3)  # a resumed crawl sees the same state
    assert again.classify("http://h/copy", "sha-b", None) == ("exact", "http://h/b")
    assert again.classify("http://h/a3", "sha-a3", h ^ 1) == ("near", "http://h/a")


# ---- SSRF guard ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("address, kind", [
    ("127.0.0.1", "loopback"), ("127.0.0.2", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "link-local"), ("224.0.0.1", "multicast"),
    ("0.0.0.0", "unspecified"), ("240.0.0.1", "reserved"), ("100.64.0.1", "shared (carrier-grade NAT)"),
    ("::1", "loopback"), ("fe80::1", "link-local"), ("fc00::1", "private"), ("::ffff:127.0.0.1", "loopback"),
    ("ff02::1", "multicast"),
])
def test_ssrf_guard_refuses_non_public_addresses(address: str, kind: str) -> None:
    guard = SsrfGuard()
    assert guard.reason("h.example", address) == kind
    with pytest.raises(BlockedAddress, match="--allow-host"):
        guard.choose("h.example", [address])


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"])
def test_ssrf_guard_lets_public_addresses_through(address: str) -> None:
    assert SsrfGuard().permits("h.example", address)


def test_ssrf_allow_list_by_address_network_and_host() -> None:
    assert SsrfGuard(["127.0.0.2"]).permits("a", "127.0.0.2")
    assert not SsrfGuard(["127.0.0.2"]).permits("a", "127.0.0.3")
    assert SsrfGuard(["127.0.0.0/8"]).permits("a", "127.0.0.3")
    assert not SsrfGuard(["127.0.0.0/8"]).permits("a", "10.0.0.1")
    assert SsrfGuard(["intranet.local"]).permits("Intranet.Local", "10.0.0.1")
    assert SsrfGuard().choose("a", ["10.0.0.1", "93.184.216.34"]) == "93.184.216.34"  # never the private one


# ---- traps ---------------------------------------------------------------------------------------------
def trap_settings(**over: str) -> Settings:
    env = {"SIXFOLD_CRAWLER_MAX_URL_LENGTH": "80", "SIXFOLD_CRAWLER_MAX_DEPTH": "3",
           "SIXFOLD_CRAWLER_HOST_BUDGET": "5", "SIXFOLD_CRAWLER_MAX_QUERY_VARIANTS": "2",
           "SIXFOLD_CRAWLER_MAX_REDIRECTS": "2", **over}
    return Settings.from_env(env)


def test_trap_guard_reasons() -> None:
    guard = TrapGuard(trap_settings())
    assert guard.check("http://h/" + "x" * 90, 0).reason == "url_length"
    assert guard.check("http://h/a/b/a/b/a/", 0).reason == "repeated_segment"
    assert guard.check("http://h/a/b/a/b/", 0) is None
    assert guard.check("http://h/shop?sessid=8f3a9c2b7d1e4f60aa", 0).reason == "session_id"
    assert guard.check("http://h/deep", 4).reason == "depth"
    assert guard.check("http://h/deep", 3) is None
    for q in ("a=1", "a=2"):
        assert guard.check(f"http://h/cal?{q}", 0) is None
        guard.admit(f"http://h/cal?{q}")
    assert guard.check("http://h/cal?a=3", 0).reason == "query_explosion"
    assert guard.check("http://h/cal?a=1", 0) is None  # a variant already counted
    for i in range(3):
        guard.admit(f"http://h/p{i}")
    assert guard.check("http://h/p9", 0).reason == "host_budget"
    assert guard.check("http://other/p9", 0) is None


def test_redirect_loop_and_limit() -> None:
    guard = TrapGuard(trap_settings())
    assert guard.check_redirect([], "http://h/a", "http://h/b") is None
    assert guard.check_redirect(["http://h/a"], "http://h/b", "http://h/a").reason == "redirect_loop"
    assert guard.check_redirect([], "http://h/self", "http://h/self").reason == "redirect_loop"
    assert guard.check_redirect(["http://h/1", "http://h/2"], "http://h/3", "http://h/4").reason == "redirect_limit"


# ---- politeness --------------------------------------------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_robots_rfc9309_statuses_ttl_and_crawl_delay() -> None:
    clock = Clock()
    settings = Settings.from_env({"SIXFOLD_CRAWLER_ROBOTS_TTL_S": "100", "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "5",
                                  "SIXFOLD_CRAWLER_ROBOTS_ATTEMPTS": "2"})
    robots = RobotsCache(settings, clock)
    assert robots.needs_fetch("a")
    robots.store("a", 200, "User-agent: *\nDisallow: /private/\nAllow: /private/press/\nCrawl-delay: 0.5\n"
                           "\nUser-agent: BadBot\nDisallow: /\n")
    assert robots.allows("a", "http://a/x") and not robots.allows("a", "http://a/private/s.html")
    assert robots.allows("a", "http://a/private/press/kit.html") and robots.crawl_delay("a") == 0.5
    robots.store("b", 404, "nothing")
    assert robots.allows("b", "http://b/anything") and robots.crawl_delay("b") is None
    robots.store("c", 503, None)
    assert not robots.allows("c", "http://c/") and not robots.gave_up("c")
    assert not robots.needs_fetch("c")
    clock.now += 5
    assert robots.needs_fetch("c") and not robots.needs_fetch("a")  # retry soon, re-read after the TTL
    robots.store("c", 500, None)
    assert robots.gave_up("c")
    clock.now += 100
    assert robots.needs_fetch("a")


def test_autothrottle_tends_to_latency_over_target_and_backs_off() -> None:
    throttle = AutoThrottle(Settings.from_env({"SIXFOLD_CRAWLER_AUTOTHROTTLE_TARGET": "2",
                                               "SIXFOLD_CRAWLER_MAX_DELAY_S": "3"}))
    assert throttle.delay("h", 1.0) == 1.0  # starts at the floor
    for _ in range(30):
        throttle.observe("h", 0.4, 200, 0.0)
    assert throttle.delay("h", 0.0) == pytest.approx(0.2, abs=1e-3)
    throttle.observe("h", 0.001, 404, 0.0)  # a fast error page does not speed the crawl up
    assert throttle.delay("h", 0.0) == pytest.approx(0.2, abs=1e-3)
    throttle.observe("h", 0.4, 503, 0.0)
    assert throttle.delay("h", 0.0) == pytest.approx(0.4, abs=1e-3)
    for _ in range(10):
        throttle.observe("h", 0.4, 0, 0.0)
    assert throttle.delay("h", 0.0) == 3.0
    assert politeness_delay(0.5, 1.0, 0.2) == 0.5 and politeness_delay(None, 1.0, 2.0) == 2.0
    assert politeness_delay(None, 0.0, None) == 0.0
    assert AutoThrottle(Settings.from_env({"SIXFOLD_CRAWLER_AUTOTHROTTLE": "0"})).delay("h", 1.0) is None


def test_revisit_interval_halves_on_change_and_grows_otherwise() -> None:
    settings = Settings.from_env({"SIXFOLD_CRAWLER_REVISIT_MIN_S": "100", "SIXFOLD_CRAWLER_REVISIT_MAX_S": "1000"})
    assert next_interval(400, True, settings) == 200
    assert next_interval(400, False, settings) == 600
    assert next_interval(150, True, settings) == 100
    assert next_interval(900, False, settings) == 1000


def test_crawler_settings_from_env_and_errors() -> None:
    s = Settings.from_env({"SIXFOLD_CRAWLER_USER_AGENT": "TestBot/1", "SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0",
                           "SIXFOLD_CRAWLER_ALLOW_HOSTS": "127.0.0.0/8, localhost", "SIXFOLD_CRAWLER_EXTERNAL_LINKS": "1"})
    assert s.crawler_user_agent == "TestBot/1" and s.crawler_default_delay_s == 0.0
    assert s.crawler_allow_hosts == ("127.0.0.0/8", "localhost") and s.crawler_external_links
    with pytest.raises(SettingsError, match="SIXFOLD_CRAWLER_CONCURRENCY"):
        Settings.from_env({"SIXFOLD_CRAWLER_CONCURRENCY": "2.5"})
    with pytest.raises(SettingsError, match="SIXFOLD_CRAWLER_TIMEOUT_S"):
        Settings.from_env({"SIXFOLD_CRAWLER_TIMEOUT_S": "0"})


# ---- fetchers and DNS ---------------------------------------------------------------------------------------
def test_ftp_fetcher_says_it_is_not_enabled() -> None:
    registry = FetcherRegistry([FtpFetcher()])
    with pytest.raises(FetchNotEnabled, match=r"ftp:// is not enabled in this build"):
        asyncio.run(registry.fetch("ftp://files.example/pub/x.txt"))
    with pytest.raises(FetchNotEnabled, match="gopher"):
        registry.for_url("gopher://old.example/")


def test_dns_cache_resolves_once_per_ttl(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    asked: list[str] = []

    async def fake_getaddrinfo(self, host, port, *, type=0, **kw):
        asked.append(host)
        await asyncio.sleep(0.01)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", 0))]

    monkeypatch.setattr(asyncio.BaseEventLoop, "getaddrinfo", fake_getaddrinfo)
    dns = DnsCache(ttl_s=60, clock=clock)

    async def scenario() -> list[list[str]]:
        first = await asyncio.gather(*(dns.resolve("h.example") for _ in range(5)))  # concurrent: one query
        clock.now += 30
        second = await dns.resolve("h.example")
        clock.now += 31
        third = await dns.resolve("h.example")
        return [*first, second, third]

    answers = asyncio.run(scenario())
    assert all(a == ["93.184.216.34"] for a in answers)
    assert asked == ["h.example", "h.example"] and dns.lookups == 2


def test_every_pair_of_hosts_gets_its_own_band_key() -> None:
    index = SimHashIndex(3)
    keys = [tuple(index.bands(v)) for v in (0, 2**64 - 1, 0x0123_4567_89AB_CDEF)]
    assert all(a != b for a, b in itertools.combinations(keys, 2))


def test_an_ftp_link_is_recorded_as_a_page_with_the_error(tmp_path) -> None:
    from schemas.records import LAKE_TABLES
    from sixfold.crawler.run import crawl
    from sixfold.platform.lake import ArrowLake

    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path)})
    report = crawl(settings, ["ftp://files.example/pub/readme.txt"], max_pages=5)
    assert report.pages == 1 and report.errors == 1
    (row,) = ArrowLake(settings).read(LAKE_TABLES["crawl_pages"]).to_pylist()
    assert row["status"] == 0 and "ftp:// is not enabled in this build" in row["error"]


def test_retry_after_reads_seconds_and_http_dates() -> None:
    from datetime import UTC, datetime

    now = datetime(2015, 10, 21, 7, 27, 0, tzinfo=UTC)
    assert retry_after_s("120", now) == 120.0
    assert retry_after_s(" 0 ", now) == 0.0
    assert retry_after_s("Wed, 21 Oct 2015 07:28:00 GMT", now) == 60.0  # RFC 9110's own example date
    assert retry_after_s("Wed, 21 Oct 2015 07:00:00 GMT", now) == 0.0  # already past
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_s(unreadable, now) is None


def test_robots_answers_outlive_the_process_within_their_ttl(tmp_path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CRAWLER_ROBOTS_TTL_S": "100"})
    store = SQLiteStore(tmp_path / "s.sqlite3")
    wall, mono = [1_000_000.0], [50.0]
    first = RobotsCache(settings, clock=lambda: mono[0], store=store, wall=lambda: wall[0])
    first.store("a.test", 200, "User-agent: *\nDisallow: /private\nCrawl-delay: 3\n")
    first.store("b.test", 404, None)
    first.store("c.test", 503, None)
    wall[0] += 60
    mono[0] = 7.0  # a new process: its monotonic clock starts elsewhere
    second = RobotsCache(settings, clock=lambda: mono[0], store=store, wall=lambda: wall[0])
    assert not second.needs_fetch("a.test") and not second.needs_fetch("b.test")
    assert second.allows("a.test", "http://a.test/page") and not second.allows("a.test", "http://a.test/private/x")
    assert second.crawl_delay("a.test") == 3.0 and second.allows("b.test", "http://b.test/private/x")
    assert second.needs_fetch("c.test")  # an unreachable answer is asked again, not kept
    mono[0] += 40.01  # the stored answer's age counts: 60 s old when loaded, 100 s TTL
    assert second.needs_fetch("a.test")
    wall[0] += 41
    assert RobotsCache(settings, store=store, wall=lambda: wall[0]).needs_fetch("a.test")  # too old to reuse
