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
# The live consumer waits this long after a partial batch: under load, a file of ~5,000 clicks a second
# instead of one per emitter flush (each worker's, every 0.25 s); clicks are counted hourly
LINGER_S = 1.0
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


def check_click(payload: Any) -> dict[str, Any]:
    """One message's `url_click` row (`landed_click` of the validated event), or ValueError with the reason."""
    from sixfold.platform import schema

    return landed_click(schema.validate_event(EVENT, payload))


# Ids and keys every redirect emits: printable ASCII without spaces (`strip` leaves them, never empty).
_PLAIN_ID = r"^[!-~]+$"
_NAMES = tuple(f.name for f in EVENT.record.fields)


def _mapped(column: Any, resolve: Callable[[str | None], str]) -> Any:
    """`resolve` of each value of a string column, called once per distinct value (a batch of clicks holds
    a few dozen user agents and referrers, not thousands)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    encoded = pc.dictionary_encode(column).combine_chunks()
    values = pa.array([resolve(v) for v in encoded.dictionary.to_pylist()], pa.string())
    indices = encoded.indices
    if column.null_count:  # a null (no header) has no dictionary entry: resolve(None) stands for it
        values = pa.concat_arrays([values, pa.array([resolve(None)], pa.string())])
        indices = pc.fill_null(indices, len(values) - 1)
    return values.take(indices)


def check_click_batch(raws: list[bytes]) -> Any:
    """`check_click` of a whole batch of raw messages at once (a `landing.CheckedBatch` of `url_click` rows).

    Clicks in the form the redirects emit are read by Arrow's JSON reader and checked by its kernels, and
    the referrer host and browser family are resolved once per distinct value; any other message (a bad
    event, another spelling of the time, an id with a space) takes `check_click` itself, so the rows and
    the reasons are exactly what checking one message at a time gives (tests/test_shortener_clicks.py
    compares the two on generated batches)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from sixfold.platform import schema
    from sixfold.platform.landing import CANONICAL_TS, canonical_times, merge_checked, read_string_objects

    arrow = schema.arrow_schema(LAKE_TABLE.record)
    fast, fast_positions, slow = arrow.empty_table(), pa.array([], pa.uint64()), range(len(raws))
    table = read_string_objects(raws, _NAMES)
    if table is not None:
        record = EVENT.record
        ok = pc.match_substring_regex(table["ts"], CANONICAL_TS)
        for name in ("click_id", "key"):
            ok = pc.and_kleene(ok, pc.and_kleene(
                pc.match_substring_regex(table[name], _PLAIN_ID),
                pc.less_equal(pc.utf8_length(table[name]), record.field(name).max_length)))
        for name in ("referrer_host", "user_agent"):  # absent, or within its length
            ok = pc.and_kleene(ok, pc.fill_null(
                pc.less_equal(pc.utf8_length(table[name]), record.field(name).max_length), True))
        ok = pc.fill_null(ok, False)
        good = table.filter(ok)
        ts = canonical_times(good["ts"], arrow.field("ts").type)
        if ts is not None:  # else a date that is no date (month 13): the whole batch one message at a time
            fast = pa.Table.from_arrays([good["click_id"], good["key"], ts,
                                         _mapped(good["referrer_host"], referrer_host),
                                         _mapped(good["user_agent"], ua_family)], schema=arrow)
            fast_positions = pc.indices_nonzero(ok)
            slow = pc.indices_nonzero(pc.invert(ok)).to_pylist()
    return merge_checked(raws, fast, fast_positions, slow, check_click, LAKE_TABLE.record)


def land_clicks(
    settings: Settings,
    *,
    bus: EventBus | None = None,
    lake: ArrowLake | None = None,
    group: str = LANDING_GROUP,
    idle_timeout_s: float = 1.0,
    max_batches: int | None = None,
    on_batch: Callable[[LandingReport], None] | None = None,
    linger_s: float = 0.0,
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
                    prepare=landed_click, on_batch=on_batch, check_batch=check_click_batch, linger_s=linger_s)
    finally:
        if own_bus:
            bus.close()


def landing_work(settings: Settings, group: str, idle_s: float, _resources: Any,
                 on_batch: Callable[[LandingReport], None] | None = None) -> Callable[[], dict[str, int]]:
    """One consumer's work (`sixfold.platform.consumer`): land `url-clicks` into the lake."""

    def one_pass() -> dict[str, int]:
        report = land_clicks(settings, group=group, idle_timeout_s=idle_s, on_batch=on_batch, linger_s=LINGER_S)
        return {"received": report.received, "landed": report.landed, "rejected": report.rejected}

    return one_pass


def consumers() -> list[Any]:
    """The shortener's stream consumers, for `sixfold serve` (each also runs alone from `streams/`)."""
    from sixfold.platform.consumer import Consumer

    return [Consumer("url-clicks-landing", LANDING_GROUP, landing_work)]
