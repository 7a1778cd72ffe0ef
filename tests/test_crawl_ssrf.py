"""The crawler's SSRF guard against IPv6 addresses that smuggle an IPv4 (6to4, Teredo, NAT64,
IPv4-compatible, IPv4-mapped) and against site-local, and a whole small crawl whose allowed host
redirects to a private address.

The vectors are built here by integer arithmetic from their IPv4, never by the code under test,
so a wrong bit offset in the guard cannot agree with itself.

Decided (and pinned below): an address that only carries an IPv4 (6to4, Teredo, the NAT64
well-known prefix) gets that IPv4's verdict. A public one is permitted: the packets end at that
public IPv4, which the guard lets through directly, so refusing the wrapper protects nothing. The
verdict is the guard's own, not Python's `is_global`, whose tables for 2002::/16 and 2001::/23
changed between patch releases. The deprecated IPv4-compatible ::a.b.c.d and the local-use NAT64
prefix 64:ff9b:1::/48 are refused whatever they carry.
"""

from __future__ import annotations

import http.server
import ipaddress
import threading
from collections.abc import Iterator
from typing import Any

import httpcore
import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler.run import crawl
from sixfold.crawler.ssrf import BlockedAddress, SsrfGuard, refusal_reason
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

PAGES = LAKE_TABLES["crawl_pages"]
DROPS = SERVING_TABLES["crawl_drops"]


# ---- vectors by hand ------------------------------------------------------------------------------------
def v4(dotted: str) -> int:
    a, b, c, d = (int(part) for part in dotted.split("."))
    return a << 24 | b << 16 | c << 8 | d


def ipv6_text(value: int) -> str:
    """Eight uncompressed hextets: the form every IPv6 parser accepts."""
    return ":".join(f"{(value >> shift) & 0xFFFF:x}" for shift in range(112, -1, -16))


def six_to_four(ipv4: str) -> str:
    """RFC 3056: 2002:V4ADDR::/48, here with subnet 0 and interface id 1."""
    return ipv6_text(0x2002 << 112 | v4(ipv4) << 80 | 1)


def teredo(server: str, client: str, port: int = 40000) -> str:
    """RFC 4380 §4: 2001:0000:server:flags:~port:~client (port and client bit-inverted)."""
    return ipv6_text(0x2001_0000 << 96 | v4(server) << 64 | 0x8000 << 48 | (port ^ 0xFFFF) << 32
                     | (v4(client) ^ 0xFFFF_FFFF))


def nat64(ipv4: str) -> str:
    """RFC 6052 well-known prefix 64:ff9b::/96, the IPv4 in the low 32 bits."""
    return ipv6_text(0x0064_FF9B << 96 | v4(ipv4))


def nat64_local(ipv4: str) -> str:
    """RFC 8215 local-use prefix 64:ff9b:1::/48 (a /96 inside it)."""
    return ipv6_text(0x0064_FF9B_0001 << 80 | v4(ipv4))


def compatible(ipv4: str) -> str:
    return ipv6_text(v4(ipv4))  # ::a.b.c.d, RFC 4291 §2.5.5.1 (deprecated)


def mapped(ipv4: str) -> str:
    return ipv6_text(0xFFFF << 32 | v4(ipv4))  # ::ffff:a.b.c.d


MICROSOFT_TEREDO_SERVER = "65.54.227.120"  # public


@pytest.mark.unit
def test_hand_built_vectors_match_their_written_form() -> None:
    """The builders agree with the textbook spellings (the Teredo one is RFC 4380's example shape)."""
    same = [(six_to_four("10.0.0.1"), "2002:0a00:0001::1"),
            (teredo(MICROSOFT_TEREDO_SERVER, "192.168.1.1"), "2001:0:4136:e378:8000:63bf:3f57:fefe"),
            (nat64("10.0.0.1"), "64:ff9b::a00:1"), (nat64_local("10.0.0.1"), "64:ff9b:1::a00:1"),
            (compatible("10.0.0.1"), "::a00:1"), (mapped("127.0.0.1"), "::ffff:7f00:1")]
    for built, written in same:
        assert ipaddress.IPv6Address(built) == ipaddress.IPv6Address(written), (built, written)


# ---- refused, with the reason naming the carried IPv4 ---------------------------------------------------
REFUSED = [
    (six_to_four("10.0.0.1"), "6to4 address embedding a private IPv4 (10.0.0.1)"),
    (six_to_four("192.168.1.1"), "6to4 address embedding a private IPv4 (192.168.1.1)"),
    (six_to_four("127.0.0.1"), "6to4 address embedding a loopback IPv4 (127.0.0.1)"),
    (six_to_four("169.254.169.254"), "6to4 address embedding a link-local IPv4 (169.254.169.254)"),
    (six_to_four("100.64.0.1"), "6to4 address embedding a shared (carrier-grade NAT) IPv4 (100.64.0.1)"),
    (six_to_four("0.0.0.0"), "6to4 address embedding an unspecified IPv4 (0.0.0.0)"),
    (six_to_four("224.0.0.1"), "6to4 address embedding a multicast IPv4 (224.0.0.1)"),
    (teredo(MICROSOFT_TEREDO_SERVER, "192.168.1.1"),
     "Teredo address embedding a private IPv4 (192.168.1.1) as its client"),
    (teredo(MICROSOFT_TEREDO_SERVER, "127.0.0.1"),
     "Teredo address embedding a loopback IPv4 (127.0.0.1) as its client"),
    (teredo("10.0.0.1", "8.8.8.8"), "Teredo address embedding a private IPv4 (10.0.0.1) as its server"),
    (teredo("10.0.0.1", "172.16.0.1"), "Teredo address embedding a private IPv4 (172.16.0.1) as its client"),
    (nat64("10.0.0.1"), "NAT64 address embedding a private IPv4 (10.0.0.1)"),
    (nat64("127.0.0.1"), "NAT64 address embedding a loopback IPv4 (127.0.0.1)"),
    (nat64("169.254.169.254"), "NAT64 address embedding a link-local IPv4 (169.254.169.254)"),
    ("64:ff9b::a00:1", "NAT64 address embedding a private IPv4 (10.0.0.1)"),
    (nat64_local("10.0.0.1"), "local-use NAT64 address (64:ff9b:1::/48)"),
    (nat64_local("8.8.8.8"), "local-use NAT64 address (64:ff9b:1::/48)"),  # the site picks where it leads
    (compatible("10.0.0.1"), "IPv4-compatible address embedding a private IPv4 (10.0.0.1)"),
    (compatible("127.0.0.1"), "IPv4-compatible address embedding a loopback IPv4 (127.0.0.1)"),
    (compatible("8.8.8.8"), "deprecated IPv4-compatible address (::8.8.8.8)"),
    ("fec0::1", "site-local"), ("feff:ffff::1", "site-local"),
    (mapped("127.0.0.1"), "loopback"), ("::ffff:127.0.0.1", "loopback"), (mapped("10.0.0.1"), "private"),
    ("::1", "loopback"), ("::", "unspecified"),  # inside ::/96, yet not IPv4-compatible addresses
]


@pytest.mark.unit
@pytest.mark.parametrize("address, reason", REFUSED)
def test_addresses_carrying_a_non_public_ipv4_are_refused_with_their_reason(address: str, reason: str) -> None:
    assert refusal_reason(ipaddress.IPv6Address(address)) == reason
    guard = SsrfGuard()
    assert guard.reason("h.example", address) == reason
    with pytest.raises(BlockedAddress) as refused:
        guard.choose("h.example", [address])
    message = str(refused.value)
    assert reason in message and "(SSRF)" in message and f"--allow-host {address}" in message


# ---- their public counterparts --------------------------------------------------------------------------
PERMITTED = [six_to_four("8.8.8.8"), six_to_four("93.184.216.34"),
             teredo(MICROSOFT_TEREDO_SERVER, "8.8.8.8"), nat64("8.8.8.8"), nat64("93.184.216.34")]


@pytest.mark.unit
@pytest.mark.parametrize("address", PERMITTED)
def test_tunnels_to_a_public_ipv4_are_permitted(address: str) -> None:
    """The packets end at a public IPv4 the guard would let through directly (see the module docstring)."""
    assert refusal_reason(ipaddress.IPv6Address(address)) is None
    assert SsrfGuard().permits("h.example", address)


@pytest.mark.unit
@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
def test_a_tunnel_gets_the_verdict_of_the_ipv4_it_carries(first: int, second: int) -> None:
    ipv4 = str(ipaddress.IPv4Address(first))
    other = str(ipaddress.IPv4Address(second))
    public = refusal_reason(ipaddress.IPv4Address(first)) is None
    for address in (six_to_four(ipv4), nat64(ipv4), teredo(MICROSOFT_TEREDO_SERVER, ipv4)):
        why = refusal_reason(ipaddress.IPv6Address(address))
        assert (why is None) == public, (address, why)
        assert why is None or f"({ipv4})" in why
    both_public = public and refusal_reason(ipaddress.IPv4Address(second)) is None
    assert (refusal_reason(ipaddress.IPv6Address(teredo(other, ipv4))) is None) == both_public


@pytest.mark.unit
def test_allowing_an_ipv4_does_not_allow_the_tunnels_that_carry_it() -> None:
    """The wrapper is a different destination (a relay or a translator): it must be allowed by itself."""
    loopback_6to4 = six_to_four("127.0.0.1")
    assert not SsrfGuard(["127.0.0.0/8"]).permits("h", loopback_6to4)
    assert not SsrfGuard(["127.0.0.1"]).permits("h", nat64("127.0.0.1"))
    assert SsrfGuard([loopback_6to4]).permits("h", loopback_6to4)
    assert SsrfGuard(["2002::/16"]).permits("h", loopback_6to4)
    assert SsrfGuard().choose("h", [six_to_four("10.0.0.1"), six_to_four("8.8.8.8")]) == six_to_four("8.8.8.8")


# ---- end to end: an allowed host redirects to a private address ----------------------------------------
class RedirectingSite:
    """127.0.0.1:<port>: no robots.txt, `/start` answers 302 to `target`; every request path is logged."""

    def __init__(self, target: str) -> None:
        site = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.requests.append(self.path)
                if self.path == "/start":
                    self.send_response(302)
                    self.send_header("Location", target)
                else:
                    self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:  # keep pytest's output for failures
                return None

        self.requests: list[str] = []
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RedirectingSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every address a socket was opened to: the guard sits in front of this call, so a refused
    address never reaches it."""
    opened: list[str] = []
    connect = httpcore.AnyIOBackend.connect_tcp

    async def recording(self: httpcore.AnyIOBackend, host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        opened.append(host)
        return await connect(self, host, port, *args, **kwargs)

    monkeypatch.setattr(httpcore.AnyIOBackend, "connect_tcp", recording)
    yield opened


def crawl_settings(home: str, **env: str) -> Settings:
    return Settings.from_env({"SIXFOLD_HOME": home, "SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0", **env})


@pytest.mark.e2e
@pytest.mark.parametrize("target, reason", [
    ("http://10.255.255.1/secret", "not a public address: private"),
    ("http://[2002:7f00:1::1]/", "not a public address: 6to4 address embedding a loopback IPv4 (127.0.0.1)"),
])
def test_a_redirect_from_an_allowed_host_to_a_private_address_is_refused(
        tmp_path, connections: list[str], target: str, reason: str) -> None:
    # external links on: with the default (seed hosts only) the hop would be dropped before the guard is asked
    settings = crawl_settings(str(tmp_path), SIXFOLD_CRAWLER_EXTERNAL_LINKS="1")
    with RedirectingSite(target) as site:
        start = f"http://127.0.0.1:{site.port}/start"
        report = crawl(settings, [start], max_pages=10, allow_hosts=["127.0.0.1"])
    assert site.requests == ["/robots.txt", "/start"]  # the allowed first hop was fetched ...
    assert connections and set(connections) == {"127.0.0.1"}  # ... and no socket ever went elsewhere
    assert report.errors == 1 and report.dropped == {}
    assert reason in report.error_samples[target] and "(SSRF)" in report.error_samples[target]
    rows = {r["url"]: r for r in ArrowLake(settings).read(PAGES).to_pylist()}
    assert rows[start]["status"] == 302 and rows[start]["final_url"] == target
    assert rows[target]["status"] == 0 and reason in rows[target]["error"]


@pytest.mark.e2e
def test_by_default_a_redirect_off_the_seed_hosts_is_dropped_before_any_lookup(tmp_path, connections) -> None:
    settings = crawl_settings(str(tmp_path))
    target = "http://10.255.255.1/secret"
    with RedirectingSite(target) as site:
        report = crawl(settings, [f"http://127.0.0.1:{site.port}/start"], max_pages=10, allow_hosts=["127.0.0.1"])
    assert site.requests == ["/robots.txt", "/start"] and set(connections) == {"127.0.0.1"}
    assert report.dropped == {"external": 1}
    assert [r["url"] for r in SQLiteStore(settings.sqlite_path).query(DROPS, {"reason": "external"})] == [target]
