"""Crawler traps: the limits that keep an endless URL space finite, each drop with its reason.

A trap is a URL space with no end: calendars (`?month=` forever), cyclic directories
(`/a/b/a/b/...`), session ids minted per request, ever-deeper generated links, redirect loops.
`TrapGuard.check` looks at a candidate URL before it is admitted to the frontier and answers
a `Drop` (reason + detail) or None; `admit` counts an admitted URL against its host's budget and
its path's query variants. Limits come from `Settings.crawler_*`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlsplit

from sixfold.platform.settings import Settings

_SESSIONISH_NAME = re.compile(r"sess|sid|token|auth", re.IGNORECASE)
_RANDOM_VALUE = re.compile(r"^[A-Za-z0-9_\-]{16,}$")

REASONS = ("external", "url_length", "repeated_segment", "session_id", "depth", "query_explosion", "host_budget",
           "redirect_loop", "redirect_limit", "robots")


@dataclass(frozen=True)
class Drop:
    reason: str
    detail: str


class TrapGuard:
    def __init__(self, settings: Settings) -> None:
        self.max_length = settings.crawler_max_url_length
        self.max_repeats = settings.crawler_max_segment_repeats
        self.max_depth = settings.crawler_max_depth
        self.budget = settings.crawler_host_budget
        self.max_variants = settings.crawler_max_query_variants
        self.max_redirects = settings.crawler_max_redirects
        self._admitted: Counter[str] = Counter()
        self._variants: dict[tuple[str, str], set[str]] = {}

    def check(self, url: str, host_depth: int) -> Drop | None:
        if len(url) > self.max_length:
            return Drop("url_length", f"{len(url)} characters > {self.max_length}")
        parts = urlsplit(url)
        segments = Counter(s for s in parts.path.split("/") if s)
        if segments:
            segment, times = segments.most_common(1)[0]
            if times > self.max_repeats:
                return Drop("repeated_segment", f"{segment!r} appears {times} times > {self.max_repeats}")
        for name, value in parse_qsl(parts.query, keep_blank_values=True):
            if _SESSIONISH_NAME.search(name) and _RANDOM_VALUE.match(value):
                return Drop("session_id", f"parameter {name!r} carries a session-like token")
        if host_depth > self.max_depth:
            return Drop("depth", f"{host_depth} hops into the host > {self.max_depth}")
        if parts.query:
            variants = self._variants.get((parts.netloc, parts.path), set())
            if parts.query not in variants and len(variants) >= self.max_variants:
                return Drop("query_explosion",
                            f"{parts.path} already has {len(variants)} query variants (limit {self.max_variants})")
        if self._admitted[parts.netloc] >= self.budget:
            return Drop("host_budget", f"{parts.netloc} already has {self.budget} URLs this crawl")
        return None

    def admit(self, url: str) -> None:
        parts = urlsplit(url)
        self._admitted[parts.netloc] += 1
        if parts.query:
            self._variants.setdefault((parts.netloc, parts.path), set()).add(parts.query)

    def check_redirect(self, chain: list[str], source: str, target: str) -> Drop | None:
        """A redirect hop source -> target, `chain` being the URLs that led to source."""
        hops = [*chain, source]
        if target in hops:
            return Drop("redirect_loop", " -> ".join([*hops, target]))
        if len(hops) > self.max_redirects:
            return Drop("redirect_limit", f"{len(hops)} redirects > {self.max_redirects}")
        return None
