"""Typed settings for the whole platform, read once from `SIXFOLD_*` environment variables.

The embedded profile needs no server; the cluster profile points at Kafka, Cassandra and a
Spark master. Every value has an embedded default, and a bad value fails at start-up with a
message that says which variable to change.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Mapping

Profile = Literal["embedded", "cluster"]
PROFILES: tuple[str, ...] = ("embedded", "cluster")


class SettingsError(ValueError):
    """A configuration value is missing or wrong; the message names the variable to fix.

    `problems` holds every bad value found, as (variable, reason): `from_env` reports all of them
    at once, not only the first, so one round of fixes is enough.
    """

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.problems: list[tuple[str, str]] = problems if problems is not None else [(_named_var(message), message)]


_VAR = re.compile(r"SIXFOLD_[A-Z0-9_]*[A-Z0-9]")


def _named_var(message: str, env: Mapping[str, str] | None = None) -> str:
    """The variable a message names (the first one set in `env`, when given)."""
    names = _VAR.findall(message)
    if env is not None:
        names = [n for n in names if n in env] or names
    return names[0] if names else "SIXFOLD_*"


def _summary(problems: list[tuple[str, str]]) -> str:
    if len(problems) == 1:
        return problems[0][1]
    return f"{len(problems)} bad configuration values:\n" + "\n".join(f"  - {reason}" for _var, reason in problems)


def _parse_hostport(var: str, value: str, default_port: int) -> tuple[str, int]:
    host, sep, port = value.strip().rpartition(":")
    if not sep:
        host, port = value.strip(), str(default_port)
    if not host:
        raise SettingsError(f"{var}={value!r} has no host; expected HOST or HOST:PORT, e.g. 127.0.0.1:{default_port}")
    try:
        number = int(port)
    except ValueError:
        raise SettingsError(f"{var}={value!r} has a port that is not a number; expected HOST:PORT") from None
    if not 0 < number < 65536:
        raise SettingsError(f"{var}={value!r} has port {number} outside 1..65535")
    return host, number


@dataclass(frozen=True)
class Settings:
    """Everything configurable, with the embedded profile's defaults."""

    profile: Profile = "embedded"
    home: Path = field(default_factory=Path.cwd)
    kafka_bootstrap: tuple[str, int] = ("127.0.0.1", 9092)
    kafka_controller_port: int = 9093
    cassandra_contact: tuple[str, int] = ("127.0.0.1", 9042)
    cassandra_keyspace: str = "sixfold"
    spark_master: str = "local[*]"
    kafka_version: str = "4.1.1"
    cassandra_version: str = "5.0.9"
    connect_timeout_s: float = 10.0
    readiness_timeout_s: float = 1.0  # /readyz gives each dependency this long before calling it degraded
    # load shedding and bulkheads (sixfold.platform.resilience): HTTP requests in flight per server process, past
    # which the next is answered 503 at once; calls in flight per dependency, and how many more may wait for one
    max_in_flight: int = 256
    dependency_concurrency: int = 32
    dependency_queue: int = 64
    # typeahead
    typeahead_half_life_s: float = 7 * 86_400.0
    typeahead_threshold: float = 2.0
    typeahead_shards: int = 4
    typeahead_owned_shards: frozenset[int] | None = None  # None: this server owns every shard
    typeahead_response_cache: bool = True  # keep anonymous suggestion answers per trie version (0: look up every time)
    # this server's base URL as its peers reach it: registered as the owner of its shards (typeahead/sharding.py);
    # empty: not registered (`sixfold serve` sets it from --host/--port)
    typeahead_url: str = ""
    # feed
    feed_celebrity_threshold: int = 100_000  # authors with at least this many followers are pulled, not pushed
    # how long a server may reuse an author's follower count and newest post ids on the read path;
    # writes through the same server show at once, other servers' within this (0: no reuse)
    feed_read_cache_s: float = 2.0
    # how long a server may answer a timeline page again from memory; every reuse is first checked
    # against the follower's follow stamp, their newest pushed entry and their celebrities' newest
    # posts, so this bounds only what those miss (the offline job's repairs). 0: build every page
    feed_page_cache_s: float = 30.0
    # uploads: an image claiming more pixels is refused (413) from its header, before decoding; at most
    # this many uploads per server process hold a decoded bitmap (4 bytes a pixel) at once
    media_max_pixels: int = 50_000_000  # a 48 MP phone photo (8000 x 6000) passes
    media_decode_concurrency: int = 2
    typeahead_recent_ttl_s: int = 30 * 86_400  # how long a user's own searches stay for personalisation
    # identity and abuse limits (every system)
    auth_cache_s: float = 60.0  # a verified token is trusted this long without a store read (0: read every time)
    # `limits` storage: memory:// is per process (embedded); several API processes share redis://HOST:PORT
    rate_limit_storage: str = "memory://"
    # `limits` strings ("N per minute", several joined by ';'); an empty string turns a limit off
    limit_signup_per_client: str = "20/minute;200/day"
    limit_writes_per_user: str = "300/minute"
    limit_writes_per_client: str = "1200/minute"
    # shortener
    shortener_cache_entries: int = 100_000  # hot keys kept in this process's LRU (0: every redirect reads the store)
    shortener_cache_ttl_s: float = 30.0  # another server's delete shows here within this (this server's at once)
    shortener_memcached: str = ""  # HOST:PORT of Memcached, shared by every API process (cluster default 127.0.0.1:11211)
    shortener_limit_per_key: str = "1000/minute;20000/day"  # fixed windows per API key (a full batch fits one minute; empty: off)
    shortener_default_expiry_days: int = 730  # two years
    shortener_max_expiry_days: int = 1826  # five years
    shortener_allow_private: bool = False  # let long URLs point at private, loopback or link-local addresses
    shortener_key_block: int = 10_000  # generated-key counters leased from the store at a time
    shortener_datacentre: str = "x"  # this server's letter in /x/{key} short URLs
    shortener_public_url: str = ""  # base of short_url answers (empty: the scheme and host the request came to)
    shortener_click_flush_s: float = 0.25  # clicks wait at most this long in memory before they are published
    # docs
    docs_cache_docs: int = 1000  # documents kept in memory (a LoroDoc each) per serving process, least recently used out
    docs_retain_days: float = 30.0  # compaction keeps this much history restorable; older folds into a shallow snapshot
    docs_vocabulary: int = 50_000  # English words (wordfreq's most frequent) that completion and spelling know
    docs_view_flush_s: float = 0.25  # doc-viewed events wait at most this long in memory before they are published
    # crawler
    crawler_user_agent: str = "SixfoldBot/0.1 (+https://github.com/sixfold/sixfold)"
    crawler_concurrency: int = 16  # fetches in flight at once (never more than one per host)
    crawler_default_delay_s: float = 1.0  # per-host delay when robots.txt sets no Crawl-delay
    crawler_max_delay_s: float = 60.0  # AutoThrottle never waits longer than this between fetches to a host
    crawler_autothrottle: bool = True
    crawler_external_links: bool = False  # follow links to hosts no seed is on (off: the crawl stays on its seeds' hosts)
    crawler_autothrottle_target: float = 1.0  # Scrapy's AUTOTHROTTLE_TARGET_CONCURRENCY: delay -> latency / target
    crawler_robots_ttl_s: float = 3600.0  # re-read robots.txt after this
    crawler_robots_retry_s: float = 30.0  # robots.txt answered 5xx: wait this long, then ask again
    crawler_robots_attempts: int = 3  # 5xx answers before the host is deferred to a later crawl
    crawler_dns_ttl_s: float = 300.0
    crawler_timeout_s: float = 10.0
    crawler_max_body_bytes: int = 5_000_000
    crawler_max_redirects: int = 5
    crawler_max_depth: int = 16  # link hops within one host
    crawler_host_budget: int = 1000  # URLs admitted per host per crawl
    crawler_max_url_length: int = 512
    crawler_max_segment_repeats: int = 2  # a path segment seen more often than this is a cyclic directory
    crawler_max_query_variants: int = 30  # distinct query strings per host and path
    crawler_revisit_s: float = 86_400.0  # first revisit interval; halves on change, grows 1.5x otherwise
    crawler_revisit_min_s: float = 3_600.0
    crawler_revisit_max_s: float = 30 * 86_400.0
    crawler_simhash_distance: int = 3  # Hamming distance at or under which two pages are near duplicates
    crawler_allow_hosts: tuple[str, ...] = ()  # hosts, addresses or CIDRs the SSRF guard lets through
    crawler_flush_pages: int = 200  # land fetched pages in the lake every this many pages ...
    crawler_flush_s: float = 2.0  # ... or this often
    crawler_partitions: int = 1  # fetch workers of the crawl_cycle DAG (`crawl run --partition i/N` names its own)
    crawler_partition_poll_s: float = 0.2  # a partitioned worker checks its inbox and its peers this often

    @property
    def var(self) -> Path:
        return self.home / "var"

    @property
    def spool_dir(self) -> Path:
        return self.var / "spool"

    @property
    def lake_dir(self) -> Path:
        return self.var / "lake"

    @property
    def sqlite_path(self) -> Path:
        return self.var / "store.sqlite3"

    @property
    def blob_dir(self) -> Path:
        return self.var / "blobs"

    @property
    def services_dir(self) -> Path:
        return self.var / "services"

    @property
    def kafka_bootstrap_str(self) -> str:
        return f"{self.kafka_bootstrap[0]}:{self.kafka_bootstrap[1]}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        """The settings `env` (default: this process's environment) describes; a SettingsError names every bad
        value, each found by setting its variable aside and reading the rest again."""
        env = os.environ if env is None else env
        try:
            return cls._read_env(env)
        except SettingsError as first:
            problems, rest = [], dict(env)
            error: SettingsError | None = first
            while error is not None:
                var = _named_var(str(error), rest)
                problems.append((var, str(error)))
                if var not in rest:  # nothing left to set aside: report what was found
                    break
                del rest[var]
                try:
                    cls._read_env(rest)
                    error = None
                except SettingsError as exc:
                    error = exc
            raise SettingsError(_summary(problems), problems) from None

    @classmethod
    def _read_env(cls, env: Mapping[str, str]) -> "Settings":
        profile = env.get("SIXFOLD_PROFILE", "embedded").strip().lower()
        if profile not in PROFILES:
            raise SettingsError(
                f"SIXFOLD_PROFILE={env.get('SIXFOLD_PROFILE')!r} is not a profile; "
                f"set it to one of {', '.join(PROFILES)} (or unset it for embedded)"
            )
        home = Path(env.get("SIXFOLD_HOME") or Path.cwd()).expanduser().resolve()
        defaults = cls()
        kafka = _parse_hostport("SIXFOLD_KAFKA_BOOTSTRAP", env.get("SIXFOLD_KAFKA_BOOTSTRAP", defaults.kafka_bootstrap_str), 9092)
        cassandra = _parse_hostport(
            "SIXFOLD_CASSANDRA_HOST", env.get("SIXFOLD_CASSANDRA_HOST", "%s:%d" % defaults.cassandra_contact), 9042
        )
        keyspace = env.get("SIXFOLD_CASSANDRA_KEYSPACE", defaults.cassandra_keyspace)
        if not keyspace.isidentifier():
            raise SettingsError(f"SIXFOLD_CASSANDRA_KEYSPACE={keyspace!r} must be a plain identifier (letters, digits, _)")
        master = env.get("SIXFOLD_SPARK_MASTER", "local[*]" if profile == "embedded" else "spark://127.0.0.1:7077")
        if master.startswith("spark://"):
            _parse_hostport("SIXFOLD_SPARK_MASTER", master.removeprefix("spark://"), 7077)
        elif not re.fullmatch(r"local(\[(\*|[1-9][0-9]*)(,[0-9]+)?\])?|local-cluster\[[0-9]+(,[0-9]+){2}\]", master):
            raise SettingsError(f"SIXFOLD_SPARK_MASTER={master!r}; expected local[N|*] or spark://HOST:PORT")
        timeout = _positive(env, "SIXFOLD_CONNECT_TIMEOUT_S", defaults.connect_timeout_s)
        readiness_timeout = _positive(env, "SIXFOLD_READINESS_TIMEOUT_S", defaults.readiness_timeout_s)
        controller_port = int(_number(env, "SIXFOLD_KAFKA_CONTROLLER_PORT", defaults.kafka_controller_port,
                                      whole=True, positive=True))
        local_broker = kafka[0] in ("127.0.0.1", "localhost", "::1")  # `sixfold services up` runs both ports
        if controller_port > 65535 or (local_broker and controller_port == kafka[1]):
            raise SettingsError(f"SIXFOLD_KAFKA_CONTROLLER_PORT={controller_port} must be a port in 1..65535 other "
                                f"than the local broker's ({kafka[1]}, SIXFOLD_KAFKA_BOOTSTRAP)")
        versions = {}
        for name in ("kafka_version", "cassandra_version"):
            var = f"SIXFOLD_{name.upper()}"
            versions[name] = env.get(var, getattr(defaults, name)).strip()
            if not re.fullmatch(r"[0-9]+(\.[0-9]+){1,3}", versions[name]):
                raise SettingsError(f"{var}={versions[name]!r}; expected a release number like "
                                    f"{getattr(defaults, name)}")
        typeahead = _typeahead_settings(env, defaults)
        celebrity = _positive(env, "SIXFOLD_FEED_CELEBRITY_THRESHOLD", defaults.feed_celebrity_threshold)
        if celebrity != int(celebrity):
            raise SettingsError("SIXFOLD_FEED_CELEBRITY_THRESHOLD must be a whole number of followers")
        return cls(
            **typeahead,
            **_identity_settings(env, defaults),
            **_crawler_settings(env, defaults),
            **_shortener_settings(env, defaults, profile),
            **_docs_settings(env, defaults),
            feed_celebrity_threshold=int(celebrity),
            feed_read_cache_s=_non_negative(env, "SIXFOLD_FEED_READ_CACHE_S", defaults.feed_read_cache_s),
            feed_page_cache_s=_non_negative(env, "SIXFOLD_FEED_PAGE_CACHE_S", defaults.feed_page_cache_s),
            media_max_pixels=int(_number(env, "SIXFOLD_MEDIA_MAX_PIXELS", defaults.media_max_pixels,
                                         whole=True, positive=True)),
            media_decode_concurrency=int(_number(env, "SIXFOLD_MEDIA_DECODE_CONCURRENCY",
                                                 defaults.media_decode_concurrency, whole=True, positive=True)),
            profile=profile,  # type: ignore[arg-type]
            home=home,
            kafka_bootstrap=kafka,
            cassandra_contact=cassandra,
            cassandra_keyspace=keyspace,
            spark_master=master,
            kafka_controller_port=controller_port,
            **versions,
            connect_timeout_s=timeout,
            readiness_timeout_s=readiness_timeout,
            **_load_settings(env, defaults),
        )


def _load_settings(env: Mapping[str, str], d: "Settings") -> dict:
    """SIXFOLD_MAX_IN_FLIGHT and SIXFOLD_DEPENDENCY_CONCURRENCY (whole, above 0), SIXFOLD_DEPENDENCY_QUEUE (0: no wait)."""
    return {name: int(_number(env, f"SIXFOLD_{name.upper()}", getattr(d, name), whole=True,
                              positive=name != "dependency_queue"))
            for name in ("max_in_flight", "dependency_concurrency", "dependency_queue")}


def _identity_settings(env: Mapping[str, str], d: "Settings") -> dict:
    """SIXFOLD_AUTH_CACHE_S, SIXFOLD_RATE_LIMIT_STORAGE and SIXFOLD_LIMIT_*: checked here, not at the first request."""
    from limits import parse_many

    out: dict = {"auth_cache_s": _non_negative(env, "SIXFOLD_AUTH_CACHE_S", d.auth_cache_s)}
    storage = env.get("SIXFOLD_RATE_LIMIT_STORAGE", d.rate_limit_storage).strip()
    if not storage.startswith(("memory://", "redis://", "rediss://")):
        raise SettingsError(f"SIXFOLD_RATE_LIMIT_STORAGE={_masked_url(storage)!r}; expected memory:// or "
                            "redis://HOST:PORT")
    if storage.startswith(("redis://", "rediss://")):
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(storage)
            usable = bool(parts.hostname) and (parts.port is None or parts.port > 0)
        except ValueError:  # `.port` of a port that is not a number or outside 0..65535
            usable = False
        if not usable:
            raise SettingsError(f"SIXFOLD_RATE_LIMIT_STORAGE={_masked_url(storage)!r} has no usable HOST[:PORT]; "
                                "expected redis://HOST:PORT")
    out["rate_limit_storage"] = storage
    for name in ("signup_per_client", "writes_per_user", "writes_per_client"):
        var, value = f"SIXFOLD_LIMIT_{name.upper()}", env.get(f"SIXFOLD_LIMIT_{name.upper()}")
        value = getattr(d, f"limit_{name}") if value is None else value.strip()
        if value:
            try:
                parse_many(value)
            except ValueError:
                raise SettingsError(f"{var}={value!r} is not a rate; write e.g. '20/minute' or "
                                    "'20 per minute;200 per day' (empty: no limit)") from None
        out[f"limit_{name}"] = value
    return out


def _non_negative(env: Mapping[str, str], var: str, default: float) -> float:
    return _number(env, var, default)


def _positive(env: Mapping[str, str], var: str, default: float) -> float:
    return _number(env, var, default, positive=True)


def _typeahead_settings(env: Mapping[str, str], defaults: "Settings") -> dict:
    shards = _positive(env, "SIXFOLD_TYPEAHEAD_SHARDS", defaults.typeahead_shards)
    if shards != int(shards):
        raise SettingsError("SIXFOLD_TYPEAHEAD_SHARDS must be a whole number of shards")
    owned_raw = env.get("SIXFOLD_TYPEAHEAD_OWNED_SHARDS", "all").strip().lower()
    owned: frozenset[int] | None = None
    if owned_raw not in ("", "all"):
        try:
            owned = frozenset(int(x) for x in owned_raw.split(","))
        except ValueError:
            raise SettingsError(
                f"SIXFOLD_TYPEAHEAD_OWNED_SHARDS={owned_raw!r}; expected 'all' or shard ids like 0,2"
            ) from None
        outside = sorted(i for i in owned if not 0 <= i < shards)
        if outside:
            raise SettingsError(f"SIXFOLD_TYPEAHEAD_OWNED_SHARDS={owned_raw!r} names shards {outside} outside "
                                f"0..{int(shards) - 1} (SIXFOLD_TYPEAHEAD_SHARDS={int(shards)})")
    recent_ttl = _positive(env, "SIXFOLD_TYPEAHEAD_RECENT_TTL_S", defaults.typeahead_recent_ttl_s)
    if recent_ttl != int(recent_ttl):
        raise SettingsError("SIXFOLD_TYPEAHEAD_RECENT_TTL_S must be a whole number of seconds")
    return {
        "typeahead_recent_ttl_s": int(recent_ttl),
        "typeahead_half_life_s": _positive(env, "SIXFOLD_TYPEAHEAD_HALF_LIFE_S", defaults.typeahead_half_life_s),
        "typeahead_threshold": _positive(env, "SIXFOLD_TYPEAHEAD_THRESHOLD", defaults.typeahead_threshold),
        "typeahead_shards": int(shards),
        "typeahead_owned_shards": owned,
        "typeahead_response_cache": _flag(env, "SIXFOLD_TYPEAHEAD_RESPONSE_CACHE", defaults.typeahead_response_cache),
        "typeahead_url": _typeahead_url(env, defaults.typeahead_url),
    }


def _typeahead_url(env: Mapping[str, str], default: str) -> str:
    from urllib.parse import urlsplit

    raw = env.get("SIXFOLD_TYPEAHEAD_URL", default).strip()
    url = raw.rstrip("/")
    try:
        parts = urlsplit(url)
        usable = not url or (parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
                             and parts.path == "" and not parts.query)
    except ValueError:  # a port that is not a number or outside 0..65535
        usable = False
    if not usable:
        raise SettingsError(f"SIXFOLD_TYPEAHEAD_URL={raw!r}; expected this server's base URL as its peers reach "
                            "it, like http://10.0.0.5:8000 (empty: not registered as a shard owner)")
    return url


def _number(env: Mapping[str, str], var: str, default: float, *, whole: bool = False,
            positive: bool = False) -> float:
    raw = env.get(var)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{var}={raw!r} must be a number") from None
    if not math.isfinite(value) or value < 0 or (positive and value == 0) or (whole and value != int(value)):
        kind = "a whole number" if whole else "a number"
        raise SettingsError(f"{var}={raw!r} must be {kind} {'above' if positive else 'of at least'} 0")
    return int(value) if whole else value


def _flag(env: Mapping[str, str], var: str, default: bool) -> bool:
    raw = env.get(var, "1" if default else "0").strip().lower()
    if raw not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
        raise SettingsError(f"{var}={raw!r}; expected 1 or 0 (true/false)")
    return raw in ("1", "true", "yes", "on")


def _crawler_settings(env: Mapping[str, str], d: "Settings") -> dict:
    """SIXFOLD_CRAWLER_*: every crawler_* field, by its upper-cased name."""
    whole = {"concurrency", "robots_attempts", "max_body_bytes", "max_redirects", "max_depth", "host_budget",
             "max_url_length", "max_segment_repeats", "max_query_variants", "simhash_distance", "flush_pages",
             "partitions"}
    positive = {"concurrency", "robots_attempts", "max_body_bytes", "timeout_s", "autothrottle_target",
                "host_budget", "max_url_length", "max_query_variants", "flush_pages", "flush_s", "dns_ttl_s",
                "robots_ttl_s", "revisit_s", "revisit_min_s", "revisit_max_s", "max_segment_repeats", "partitions",
                "partition_poll_s"}
    out: dict = {}
    for name in (f.removeprefix("crawler_") for f in d.__dataclass_fields__ if f.startswith("crawler_")):
        var, default = f"SIXFOLD_CRAWLER_{name.upper()}", getattr(d, f"crawler_{name}")
        if name == "user_agent":
            out["crawler_user_agent"] = env.get(var, default).strip() or default
        elif isinstance(default, bool):
            out[f"crawler_{name}"] = _flag(env, var, default)
        elif name == "allow_hosts":
            raw = env.get(var, "")
            out["crawler_allow_hosts"] = tuple(h.strip() for h in raw.split(",") if h.strip()) or default
        else:
            value = _number(env, var, default, whole=name in whole, positive=name in positive)
            out[f"crawler_{name}"] = value
    if out["crawler_revisit_min_s"] > out["crawler_revisit_max_s"]:
        raise SettingsError("SIXFOLD_CRAWLER_REVISIT_MIN_S must not exceed SIXFOLD_CRAWLER_REVISIT_MAX_S")
    return out


def _shortener_settings(env: Mapping[str, str], d: "Settings", profile: str) -> dict:
    """SIXFOLD_SHORTENER_*: every shortener_* field, by its upper-cased name."""
    out: dict = {}
    for name in (f.removeprefix("shortener_") for f in d.__dataclass_fields__ if f.startswith("shortener_")):
        var, default = f"SIXFOLD_SHORTENER_{name.upper()}", getattr(d, f"shortener_{name}")
        if isinstance(default, bool):
            out[f"shortener_{name}"] = _flag(env, var, default)
        elif isinstance(default, str):
            out[f"shortener_{name}"] = env.get(var, default).strip()
        else:
            whole = isinstance(default, int)
            positive = name in ("default_expiry_days", "max_expiry_days", "key_block", "click_flush_s")
            out[f"shortener_{name}"] = _number(env, var, default, whole=whole, positive=positive)
    if "SIXFOLD_SHORTENER_MEMCACHED" not in env and profile == "cluster":
        out["shortener_memcached"] = "127.0.0.1:11211"
    if out["shortener_memcached"]:
        _parse_hostport("SIXFOLD_SHORTENER_MEMCACHED", out["shortener_memcached"], 11211)
    if out["shortener_default_expiry_days"] > out["shortener_max_expiry_days"]:
        raise SettingsError("SIXFOLD_SHORTENER_DEFAULT_EXPIRY_DAYS must not exceed SIXFOLD_SHORTENER_MAX_EXPIRY_DAYS")
    dc = out["shortener_datacentre"]
    if not (len(dc) == 1 and dc.isascii() and dc.islower() and dc.isalpha()):
        raise SettingsError(f"SIXFOLD_SHORTENER_DATACENTRE={dc!r}; expected one lower-case letter, e.g. x")
    public = out["shortener_public_url"]
    if public and not public.startswith(("http://", "https://")):
        raise SettingsError(f"SIXFOLD_SHORTENER_PUBLIC_URL={public!r}; expected http(s)://HOST[:PORT] or empty")
    out["shortener_public_url"] = public.rstrip("/")
    from sixfold.shortener.quota import parse_windows

    try:
        parse_windows(out["shortener_limit_per_key"])
    except ValueError as exc:
        raise SettingsError(f"SIXFOLD_SHORTENER_LIMIT_PER_KEY: {exc}") from None
    return out


def _docs_settings(env: Mapping[str, str], d: "Settings") -> dict:
    """SIXFOLD_DOCS_*: every docs_* field, by its upper-cased name (all positive numbers)."""
    out: dict = {}
    for name in (f.removeprefix("docs_") for f in d.__dataclass_fields__ if f.startswith("docs_")):
        default = getattr(d, f"docs_{name}")
        out[f"docs_{name}"] = _number(env, f"SIXFOLD_DOCS_{name.upper()}", default, whole=isinstance(default, int),
                                      positive=True)
    return out


def _masked_url(url: str) -> str:
    """`url` with any password in it replaced by ***."""
    return re.sub(r"(://[^:/@]*:)[^@/]*@", r"\1***@", url)


def load_settings() -> Settings:
    """Settings of this process (read from the environment each call, so tests can change it)."""
    return Settings.from_env()
