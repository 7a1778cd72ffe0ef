"""The SSRF guard: after DNS resolution, refuse addresses a public crawler has no business reaching.

Private (RFC 1918, unique-local), loopback, link-local, multicast, reserved, unspecified and
shared (CGNAT) addresses are refused unless an allow-list entry covers them: a host name
(`localhost`), an address (`127.0.0.2`) or a network (`127.0.0.0/8`). The check runs on the
address the fetcher then connects to, so a name that resolves somewhere else later (DNS
rebinding) cannot slip through.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class BlockedAddress(PermissionError):
    """A URL's host resolved to an address the guard refuses; the message says how to allow it."""


def refusal_reason(address: IPAddress) -> str | None:
    """Why an address is not public (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    checks = (("loopback", address.is_loopback), ("link-local", address.is_link_local),
              ("multicast", address.is_multicast), ("unspecified", address.is_unspecified),
              ("reserved", address.is_reserved), ("private", address.is_private),
              ("shared (carrier-grade NAT)", address in ipaddress.ip_network("100.64.0.0/10")),
              ("non-global", not address.is_global))
    for name, hit in checks:
        if hit:
            return name
    return None


class SsrfGuard:
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
            f"refused to connect to {host} ({first}): a {self.reason(host, first)} address; crawling it could "
            f"reach internal services (SSRF). To allow it, pass --allow-host {first} (or a network such as "
            f"{_network_hint(first)}) or set SIXFOLD_CRAWLER_ALLOW_HOSTS"
        )


def _network_hint(address: str) -> str:
    ip = ipaddress.ip_address(address)
    prefix = 8 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))
