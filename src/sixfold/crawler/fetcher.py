"""Fetchers: one per URL scheme behind the `Fetcher` protocol; HTTP(S) on httpx, FTP a clear stub.

Why httpx and not aiohttp: httpx is a declared dependency (aiohttp only arrives with Scrapy in the
bench extra), and httpcore's network-backend hook lets our DNS cache and SSRF guard sit exactly
where the socket is opened, so the address checked is the address connected to.

`HttpFetcher.fetch` makes one request and never follows a redirect itself: a 3xx comes back
with its `location`, and the crawl routes the target through the frontier so every hop obeys
robots.txt, the host's delay and the seen-set (and the trap guard counts hops and loops). Bodies
are read only for HTML, and only up to `crawler_max_body_bytes`: a larger one is aborted.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urljoin, urlsplit

import httpcore
import httpx

from sixfold.crawler.dns import DnsCache, ResolutionFailed
from sixfold.crawler.ssrf import BlockedAddress, SsrfGuard
from sixfold.platform.settings import Settings

HTML_TYPES = ("text/html", "application/xhtml+xml")


class FetchError(Exception):
    """No usable response; the message is recorded as the page's error."""

    status = 0  # the HTTP status when a response did arrive


class BodyTooLarge(FetchError):
    """The server answered, with a body over the size limit: the download was aborted."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class FetchNotEnabled(FetchError):
    """The URL's scheme has a fetcher slot but no implementation in this build."""


class HostUnreachable(FetchError):
    """The host has no usable address (no DNS answer, or the SSRF guard refused it): final for this crawl."""


@dataclass
class FetchResult:
    url: str
    status: int
    content_type: str | None = None
    body: bytes | None = None  # HTML only; None for other types, errors and redirects
    location: str | None = None  # absolute redirect target of a 3xx
    headers: dict[str, str] = field(default_factory=dict)
    elapsed_s: float = 0.0
    bytes_read: int = 0

    @property
    def is_html(self) -> bool:
        return self.body is not None


class Fetcher(Protocol):
    schemes: tuple[str, ...]

    async def fetch(self, url: str, *, read_any: bool = False) -> FetchResult:
        """One request; `read_any` reads a body of any type (robots.txt), else only HTML bodies."""
        ...

    async def aclose(self) -> None: ...


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """httpcore's socket opener with our resolver cache and the SSRF guard in front of it."""

    def __init__(self, dns: DnsCache, guard: SsrfGuard) -> None:
        self.dns = dns
        self.guard = guard
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                          local_address: str | None = None, socket_options: Iterable | None = None
                          ) -> httpcore.AsyncNetworkStream:
        address = self.guard.choose(host, await self.dns.resolve(host))
        return await self._inner.connect_tcp(address, port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable | None = None) -> httpcore.AsyncNetworkStream:
        raise FetchError("the crawler does not connect to unix sockets")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def media_type(content_type: str | None) -> str | None:
    return content_type.split(";")[0].strip().lower() if content_type else None


class HttpFetcher:
    schemes = ("http", "https")

    def __init__(self, settings: Settings, dns: DnsCache, guard: SsrfGuard) -> None:
        self.max_body = settings.crawler_max_body_bytes
        self.timeout_s = settings.crawler_timeout_s
        transport = httpx.AsyncHTTPTransport(retries=0)
        # The transport builds its pool without a backend argument; swap in one that has ours.
        transport._pool = httpcore.AsyncConnectionPool(
            max_connections=max(settings.crawler_concurrency * 2, 10), max_keepalive_connections=None,
            keepalive_expiry=30.0, network_backend=ResolvingBackend(dns, guard),
        )
        self.client = httpx.AsyncClient(
            transport=transport, follow_redirects=False, timeout=httpx.Timeout(settings.crawler_timeout_s),
            headers={"User-Agent": settings.crawler_user_agent, "Accept": "text/html,application/xhtml+xml;q=0.9,*/*;q=0.5"},
        )

    async def fetch(self, url: str, *, read_any: bool = False) -> FetchResult:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout_s * 2):  # a whole-request deadline over httpx's per-phase ones
                return await self._fetch(url, started, read_any)
        except (BlockedAddress, ResolutionFailed) as exc:
            raise HostUnreachable(str(exc)) from exc
        except TimeoutError as exc:
            raise FetchError(f"no complete response within {self.timeout_s * 2:g}s (SIXFOLD_CRAWLER_TIMEOUT_S)") from exc
        except httpx.TimeoutException as exc:
            raise FetchError(f"timed out after {self.timeout_s:g}s ({type(exc).__name__})") from exc
        except httpx.HTTPError as exc:
            raise FetchError(f"{type(exc).__name__}: {exc}") from exc

    async def _fetch(self, url: str, started: float, read_any: bool) -> FetchResult:
        async with self.client.stream("GET", url) as response:
            ctype = response.headers.get("content-type")
            result = FetchResult(url=url, status=response.status_code, content_type=ctype,
                                 headers=dict(response.headers))
            if response.is_redirect and "location" in response.headers:
                result.location = urljoin(url, response.headers["location"])
            elif read_any or media_type(ctype) in (*HTML_TYPES, None):
                declared = response.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > self.max_body:
                    raise BodyTooLarge(f"body of {declared} bytes exceeds the {self.max_body}-byte limit "
                                       "(SIXFOLD_CRAWLER_MAX_BODY_BYTES)", response.status_code)
                chunks, size = [], 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self.max_body:
                        raise BodyTooLarge(f"body exceeds the {self.max_body}-byte limit; download aborted "
                                           "(SIXFOLD_CRAWLER_MAX_BODY_BYTES)", response.status_code)
                    chunks.append(chunk)
                result.body = b"".join(chunks)
                result.bytes_read = size
            result.elapsed_s = time.monotonic() - started
            return result

    async def aclose(self) -> None:
        await self.client.aclose()


class FtpFetcher:
    """The FTP slot of the fetcher registry: present so ftp:// links are recorded, not fetched."""

    schemes = ("ftp",)

    async def fetch(self, url: str, *, read_any: bool = False) -> FetchResult:
        raise FetchNotEnabled(f"ftp:// is not enabled in this build: {url} was not fetched; "
                              "only http:// and https:// are, add an FTP Fetcher to crawl it")

    async def aclose(self) -> None:
        return None


class FetcherRegistry:
    """scheme -> Fetcher; new protocols plug in here (the course's extensibility point)."""

    def __init__(self, fetchers: Iterable[Fetcher]) -> None:
        self.by_scheme: dict[str, Fetcher] = {}
        for fetcher in fetchers:
            for scheme in fetcher.schemes:
                self.by_scheme[scheme] = fetcher

    def for_url(self, url: str) -> Fetcher:
        scheme = urlsplit(url).scheme
        try:
            return self.by_scheme[scheme]
        except KeyError:
            raise FetchNotEnabled(f"{scheme}:// has no fetcher; known: {sorted(self.by_scheme)}") from None

    async def fetch(self, url: str, *, read_any: bool = False) -> FetchResult:
        return await self.for_url(url).fetch(url, read_any=read_any)

    async def aclose(self) -> None:
        for fetcher in set(self.by_scheme.values()):
            await fetcher.aclose()


def default_fetchers(settings: Settings, dns: DnsCache, guard: SsrfGuard) -> FetcherRegistry:
    return FetcherRegistry([HttpFetcher(settings, dns, guard), FtpFetcher()])
