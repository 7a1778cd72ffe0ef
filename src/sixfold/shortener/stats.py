"""A short link's click statistics, read from the hourly counts the `url_clicks` job serves.

One partition read (the key's rows of `url_click_counts`) folded three ways: the total, the
hourly series, and the clicks by referrer host and by browser family.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.platform.store import ServingStore

SERVING_COUNTS = SERVING_TABLES["url_click_counts"]


def _iso(hour: datetime) -> str:
    return hour.isoformat().replace("+00:00", "Z")


def _ranked(counts: Counter[str], name: str) -> list[dict[str, Any]]:
    """Most clicks first, ties by name, so the answer is the same on every read."""
    return [{name: value, "clicks": n} for value, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))]


def click_stats(store: ServingStore, key: str) -> dict[str, Any]:
    """{"key", "total", "hourly": [{"hour", "clicks"}] oldest first, "referrers": [{"host", "clicks"}],
    "browsers": [{"family", "clicks"}]} for one short key; zeros and empty lists before any count."""
    hourly: Counter[datetime] = Counter()
    referrers: Counter[str] = Counter()
    browsers: Counter[str] = Counter()
    columns = ("hour", "referrer_host", "ua_family", "clicks")
    for row in store.query(SERVING_COUNTS, {"key": key}, columns=columns):
        hourly[row["hour"]] += row["clicks"]
        referrers[row["referrer_host"]] += row["clicks"]
        browsers[row["ua_family"]] += row["clicks"]
    return {
        "key": key,
        "total": sum(hourly.values()),
        "hourly": [{"hour": _iso(hour), "clicks": n} for hour, n in sorted(hourly.items())],
        "referrers": _ranked(referrers, "host"),
        "browsers": _ranked(browsers, "family"),
    }
