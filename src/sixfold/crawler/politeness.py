"""Politeness: robots.txt per host (protego, cached with a TTL) and the per-host delay.

robots.txt follows RFC 9309: a 2xx body is parsed; a 4xx means no rules (allow all); a 5xx or
no answer means disallow all for now: the host is retried after `crawler_robots_retry_s`, and
after `crawler_robots_attempts` such answers in a row it is deferred to a later crawl.

The delay between two fetches of one host is `politeness_delay`: the robots.txt Crawl-delay
(or `crawler_default_delay_s` without one) is the floor; above it AutoThrottle (Scrapy's
algorithm) moves the delay toward latency / target concurrency, never lowers it on a non-200
answer (error pages are fast and would speed the crawl up exactly when it should slow down),
and doubles it on a 429, 5xx or transport error, up to `crawler_max_delay_s`. A 429 or 503 with
Retry-After (seconds or an HTTP date, RFC 9110) holds the host at least that long, also capped by
`crawler_max_delay_s`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

from protego import Protego

from schemas.records import SERVING_TABLES
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

ROBOTS = SERVING_TABLES["crawl_robots"]


@dataclass
class RobotsRules:
    """What one host's robots.txt says, as of `fetched_at`."""

    kind: str  # "parsed", "allow_all" (4xx), "unreachable" (5xx / no answer: disallow all)
    fetched_at: float
    parser: Protego | None = None
    failures: int = 0  # consecutive unreachable answers

    def allows(self, url: str, user_agent: str) -> bool:
        if self.kind == "allow_all":
            return True
        if self.kind == "unreachable" or self.parser is None:
            return False
        return bool(self.parser.can_fetch(url, user_agent))

    def crawl_delay(self, user_agent: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(user_agent)
        if delay is None:
            rate = self.parser.request_rate(user_agent)
            if rate is not None and rate.requests:
                return rate.seconds / rate.requests
            return None
        return float(delay)


def rules_from_response(status: int, body: str | None, now: float, previous: RobotsRules | None) -> RobotsRules:
    """RFC 9309 section 2.3.1: 2xx parse, 4xx allow all, 5xx (or status 0: no answer) disallow all."""
    if 200 <= status < 300:
        return RobotsRules("parsed", now, Protego.parse(body or ""))
    if 400 <= status < 500:
        return RobotsRules("allow_all", now)
    failures = (previous.failures if previous is not None and previous.kind == "unreachable" else 0) + 1
    return RobotsRules("unreachable", now, failures=failures)


class RobotsCache:
    """Rules per host; `needs_fetch` says when to (re)read a host's robots.txt.

    With a serving store, each readable answer (2xx or 4xx) is also kept in `crawl_robots`, and a
    host this process has not asked yet starts from the stored answer while it is younger than
    `crawler_robots_ttl_s`: a resumed or next crawl run does not ask every host again. Unreachable
    answers are not kept (they are retried within seconds anyway)."""

    def __init__(self, settings: Settings, clock: Callable[[], float] = time.monotonic,
                 store: ServingStore | None = None, wall: Callable[[], float] = time.time) -> None:
        self.ttl_s = settings.crawler_robots_ttl_s
        self.retry_s = settings.crawler_robots_retry_s
        self.attempts = settings.crawler_robots_attempts
        self.user_agent = settings.crawler_user_agent
        self.clock = clock
        self.wall = wall
        self.db = store
        self.rules: dict[str, RobotsRules] = {}

    def needs_fetch(self, host: str) -> bool:
        rules = self.rules.get(host)
        if rules is None:
            rules = self._stored(host)
            if rules is None:
                return True
        age = self.clock() - rules.fetched_at
        return age >= (self.retry_s if rules.kind == "unreachable" else self.ttl_s)

    def _stored(self, host: str) -> RobotsRules | None:
        if self.db is None:
            return None
        row = self.db.get(ROBOTS, {"host": host})
        if row is None:
            return None
        age = self.wall() - row["fetched_at"].timestamp()
        if not 0 <= age < self.ttl_s:
            return None
        rules = rules_from_response(row["status"], row["body"], self.clock() - age, None)
        self.rules[host] = rules
        return rules

    def store(self, host: str, status: int, body: str | None) -> RobotsRules:
        rules = rules_from_response(status, body, self.clock(), self.rules.get(host))
        self.rules[host] = rules
        if self.db is not None and rules.kind != "unreachable":
            self.db.upsert(ROBOTS, {"host": host, "status": status, "body": body if rules.kind == "parsed" else None,
                                    "fetched_at": datetime.fromtimestamp(self.wall(), UTC)})
        return rules

    def gave_up(self, host: str) -> bool:
        """robots.txt stayed unreachable for every attempt: defer the host to a later crawl."""
        rules = self.rules.get(host)
        return rules is not None and rules.kind == "unreachable" and rules.failures >= self.attempts

    def allows(self, host: str, url: str) -> bool:
        return self.rules[host].allows(url, self.user_agent)

    def crawl_delay(self, host: str) -> float | None:
        rules = self.rules.get(host)
        return None if rules is None else rules.crawl_delay(self.user_agent)


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP date), None when absent or
    unreadable; a date in the past asks for 0."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def politeness_delay(crawl_delay: float | None, default_delay: float, throttled: float | None) -> float:
    """Seconds to wait between two fetches of one host."""
    floor = default_delay if crawl_delay is None else crawl_delay
    return floor if throttled is None else max(floor, throttled)


class AutoThrottle:
    """Per-host delay from observed latency (Scrapy's AutoThrottle), with back-off on errors."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.crawler_autothrottle
        self.target = settings.crawler_autothrottle_target
        self.max_delay = settings.crawler_max_delay_s
        self.delays: dict[str, float] = {}

    def delay(self, host: str, floor: float) -> float | None:
        """The host's throttled delay; a host starts at its floor (Crawl-delay or the default)."""
        return self.delays.get(host, floor) if self.enabled else None

    def observe(self, host: str, latency_s: float, status: int, floor: float) -> float | None:
        """Adjust a host's delay after a response (status 0: no response at all)."""
        if not self.enabled:
            return None
        current = self.delays.get(host, floor)
        if status == 0 or status == 429 or status >= 500:
            new = min(max(current * 2, 0.1), self.max_delay)
        else:
            target_delay = latency_s / self.target
            new = min(max(target_delay, (current + target_delay) / 2), self.max_delay)
            if status != 200 and new <= current:
                return current
        self.delays[host] = new
        return new
