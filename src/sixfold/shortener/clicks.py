"""Click landing: the `url-clicks` events the redirects emit, landed in the lake by hour.

The landing consumer checks each event against its record, resolves what analytics count by
(the browser family of the User-Agent with ua-parser, the referrer host lower-cased or
'(direct)'), and writes whole hourly partitions of `url_clicks`; bad events go to
`url-clicks.dlq` with the reason. A replayed event resolves to the same row and collapses in
the landing's merge; two clicks are never one because each carries its own `click_id`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from schemas.records import EVENTS, LAKE_TABLES
from sixfold.platform.bus import EventBus, open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import LandingReport, land
from sixfold.platform.settings import Settings

TOPIC = "url-clicks"
EVENT = EVENTS[TOPIC]
LAKE_TABLE = LAKE_TABLES["url_clicks"]
LANDING_GROUP = "url-clicks-landing"
DIRECT = "(direct)"  # no Referer: typed, bookmarked, or a client that sends none
OTHER_FAMILY = "Other"  # ua-parser's own name for a User-Agent it does not recognise


def ua_family(user_agent: str | None) -> str:
    """The browser family ua-parser gives the User-Agent (Chrome, Firefox, curl, ...), or 'Other'."""
    from ua_parser import parse_user_agent

    if not user_agent or not user_agent.strip():
        return OTHER_FAMILY
    parsed = parse_user_agent(user_agent)
    return parsed.family if parsed is not None and parsed.family else OTHER_FAMILY


def host_of(referrer: str | None, bare_host: bool = True) -> str | None:
    """The host a referrer names, lower-cased without a trailing dot (at most 255 characters), or None
    when there is none to tell. A whole URL or a host with a port give the host; so does a bare host
    unless `bare_host` is False (a Referer header is a URL: 'not a url' names no site)."""
    text = (referrer or "").strip()
    if not text:
        return None
    if "//" not in text and not bare_host:
        return None
    try:
        host = urlsplit(text if "//" in text else f"//{text}").hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket: keep what was sent rather than lose the click
        host = text
    return (host or text).lower().rstrip(".")[:255] or None


def referrer_host(referrer: str | None) -> str:
    """The referrer's host as the lake counts it (`host_of`), or '(direct)' when there is none.

    The API sends a host; a port, or a whole URL from a producer that did not cut it, is reduced
    to the host, so one site counts as one referrer.
    """
    return host_of(referrer) or DIRECT


def landed_click(event: dict[str, Any]) -> dict[str, Any]:
    """A validated `url_click_event` as the lake's `url_click` row, or ValueError with the reason."""
    problems = [f"{name}: empty" for name in ("click_id", "key") if not event[name].strip()]
    if problems:
        raise ValueError(f"{EVENT.record.name}: " + "; ".join(problems))
    return {"click_id": event["click_id"], "key": event["key"], "ts": event["ts"],
            "referrer_host": referrer_host(event["referrer_host"]), "ua_family": ua_family(event["user_agent"])}


def land_clicks(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    lake: ArrowLake | None = None,
    group: str = LANDING_GROUP,
    idle_timeout_s: float = 1.0,
    max_batches: int | None = None,
    on_batch: Callable[[LandingReport], None] | None = None,
) -> LandingReport:
    """Land every pending click into the lake by hour; returns received/landed/rejected.

    Each batch: check and resolve every event (bad ones to `url-clicks.dlq`), merge into whole
    hourly partitions, and only then commit the offsets.
    """
    own_bus = bus is None
    bus = open_bus(settings) if bus is None else bus
    lake = ArrowLake(settings) if lake is None else lake
    try:
        return land(bus, lake, EVENT, LAKE_TABLE, group, idle_timeout_s=idle_timeout_s, max_batches=max_batches,
                    prepare=landed_click, on_batch=on_batch)
    finally:
        if own_bus:
            bus.close()


def landing_work(settings: Settings, group: str, idle_s: float, _resources: Any,
                 on_batch: Callable[[LandingReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): land `url-clicks` into the lake."""

    def one_pass() -> dict[str, int]:
        report = land_clicks(settings, group=group, idle_timeout_s=idle_s, on_batch=on_batch)
        return {"received": report.received, "landed": report.landed, "rejected": report.rejected}

    return one_pass


def consumers() -> list[Any]:
    """The shortener's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("url-clicks-landing", LANDING_GROUP, landing_work)]
