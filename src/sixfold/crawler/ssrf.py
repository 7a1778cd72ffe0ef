"""The SSRF guard: after DNS resolution, refuse addresses a public crawler has no business reaching.

Private (RFC 1918, unique-local), loopback, link-local, site-local, multicast, reserved,
unspecified and shared (CGNAT) addresses are refused unless an allow-list entry covers them: a
host name (`localhost`), an address (`127.0.0.2`) or a network (`127.0.0.0/8`). The check runs on
the address the fetcher then connects to, so a name that resolves somewhere else later (DNS
rebinding) cannot slip through.

IPv6 addresses that carry an IPv4 (6to4 2002::/16, Teredo 2001::/32, NAT64 64:ff9b::/96) are
judged by the IPv4 they carry: refused, naming it, when it is not public; permitted when it is,
since the packets end at that public IPv4, which the guard lets through anyway. The deprecated
IPv4-compatible ::a.b.c.d and the local-use NAT64 prefix 64:ff9b:1::/48 are always refused.
These verdicts are decided here, not read from `is_global`/`is_private`, whose tables for exactly
these blocks differ between Python releases (CVE-2024-4032 moved 2002::/16 and 2001::/23).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

SHARED_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: the IPv4 in the low 32 bits
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215: a site's own translators
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated


class BlockedAddress(PermissionError):
    """A URL's host resolved to an address the guard refuses; the message says how to allow it."""


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address is not public (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # ::ffff:a.b.c.d is how a dual-stack socket spells the IPv4 itself: same verdict, same words
            return refusal_reason(address.ipv4_mapped)
        if address in NAT64_LOCAL_USE:  # its translators map into whatever IPv4 network the site chose
            return f"local-use NAT64 address ({NAT64_LOCAL_USE})"
        carried = _carried_ipv4(address)
        if carried is not None:
            family, parts = carried
            for role, ipv4 in parts:
                why = refusal_reason(ipv4)
                if why is not None:
                    return f"{family} address embedding {_article(why)} {why} IPv4 ({ipv4}){role}"
            if family == "IPv4-compatible":  # no stack routes these any more; nothing legitimate lives there
                return f"deprecated IPv4-compatible address (::{parts[0][1]})"
            return None  # the tunnel ends at a public IPv4: refusing it would protect nothing
    checks = [("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("site-local", isinstance(address, ipaddress.IPv6Address) and address.is_site_local),
              ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
              ("reserved", address.is_reserved), ("private", address.is_private),
              ("shared (carrier-grade NAT)", address in SHARED_CGNAT),
              ("non-global", not address.is_global)]
    for name, hit in checks:
        if hit:
            return name
    return None


def _carried_ipv4(address: ipaddress.IPv6Address) -> tuple[str, list[tuple[str, ipaddress.IPv4Address]]] | None:
    """The tunnelling family of an IPv6 address and the IPv4 addresses it carries (None: not a tunnel)."""
    if address.sixtofour is not None:
        return "6to4", [("", address.sixtofour)]
    if address.teredo is not None:
        server, client = address.teredo  # the stdlib has already undone the client's bit inversion
        # the client is where the relay delivers the packets, so a refusal names it first
        return "Teredo", [(" as its client", client), (" as its server", server)]
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFF_FFFF)
    if address in NAT64_WELL_KNOWN:
        return "NAT64", [("", low32)]
    if address in IPV4_COMPATIBLE and int(address) > 1:  # :: and ::1 are the unspecified and loopback addresses
        return "IPv4-compatible", [("", low32)]
    return None


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


class SsrfGuard:
    """`refusal_reason` plus the operator's allow-list (host names, addresses, networks)."""

    def __init__(self, allow: Iterable[str] = ()) -> None:
        self.hosts: set[str] = set()
        self.networks: list[IPNetwork] = []
        for entry in allow:
            entry = entry.strip()
            if not entry:
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.hosts.add(entry.lower().rstrip("."))

    def permits(self, host: str, address: str) -> bool:
        return self.reason(host, address) is None

    def reason(self, host: str, address: str) -> str | None:
        ip = ipaddress.ip_address(address.split("%")[0])
        why = refusal_reason(ip)
        if why is None or host.lower().rstrip(".") in self.hosts or any(ip in net for net in self.networks):
            return None
        return why

    def choose(self, host: str, addresses: list[str]) -> str:
        """The first permitted address of a host, or BlockedAddress naming the fix."""
        for address in addresses:
            if self.permits(host, address):
                return address
        if not addresses:
            raise BlockedAddress(f"{host} resolved to no address")
        first = addresses[0]
        raise BlockedAddress(
            f"refused to connect to {host} ({first}), not a public address: {self.reason(host, first)}; "
            f"crawling it could reach internal services (SSRF). To allow it, pass --allow-host {first} "
            f"(or a network such as {_network_hint(first)}) or set SIXFOLD_CRAWLER_ALLOW_HOSTS"
        )


def _network_hint(address: str) -> str:
    ip = ipaddress.ip_address(address.split("%")[0])  # a scoped link-local (fe80::1%eth0) names its interface
    prefix = 8 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
