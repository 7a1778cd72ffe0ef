"""The platform's Prometheus metrics: HTTP requests per route, consumer lag, dead letters, data quality,
circuit breakers.

Counters and histograms are prometheus-client's. `sixfold serve` sets PROMETHEUS_MULTIPROC_DIR
(var/metrics/<host>-<port>, one per server, emptied at start) before anything imports this module, so
every uvicorn worker and the consumer threads of the serving process write their own files there and
any worker's `/metrics` answers for all of them, and for no other server on the same SIXFOLD_HOME.
Without it (tests, a single process) each process counts for itself. Data-quality results are not
counted here: they are read from where the DAG tasks record them (`sixfold.platform.quality`) at
each scrape.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"  # a request no route took (a 404 or 405): one label, whatever its path

REQUESTS = Counter("sixfold_http_requests", "HTTP requests answered, per route template and status class",
                   ["method", "route", "status"])
LATENCY = Histogram("sixfold_http_request_duration_seconds",
                    "Time from the request to the end of the response, per route template and status class",
                    ["method", "route", "status"],
                    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0))
DEAD_LETTERS = Counter("sixfold_dead_letters", "Messages sent to a dead-letter topic, per dead-letter topic",
                       ["topic"])
CONSUMER_LAG = Gauge("sixfold_consumer_lag_messages",
                     "Messages in a topic past a consumer group's committed offset (updated by the consumer threads)",
                     ["group", "topic"], multiprocess_mode="mostrecent")
# 0 closed, 1 half-open, 2 open (sixfold.platform.resilience): the worst of the live processes under `sixfold serve`
BREAKER_STATE = Gauge("sixfold_circuit_breaker_state",
                      "Circuit breaker of a dependency in this server: 0 closed, 1 half-open (probing), 2 open "
                      "(failing fast)", ["dependency", "target"], multiprocess_mode="livemax")

_children: dict[tuple[str, str, int], tuple[object, object]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request under its route template (never its raw path)."""
    key = (method, route, status // 100)
    pair = _children.get(key)
    if pair is None:
        labels = (method if method in _METHODS else "OTHER", route, f"{status // 100}xx")
        pair = _children.setdefault(key, (REQUESTS.labels(*labels), LATENCY.labels(*labels)))
    pair[0].inc()  # type: ignore[attr-defined]
    pair[1].observe(seconds)  # type: ignore[attr-defined]


def dead_lettered(topic: str) -> None:
    DEAD_LETTERS.labels(topic).inc()


def record_lag(group: str, lag_by_topic: dict[str, int]) -> None:
    for topic, behind in lag_by_topic.items():
        CONSUMER_LAG.labels(group, topic).set(behind)


def record_breaker(dependency: str, target: str, state: int) -> None:
    BREAKER_STATE.labels(dependency, target).set(state)


class _QualityCollector:
    """The latest result of each data-quality check, read from where the checks record them."""

    def __init__(self, var: Path) -> None:
        self.var = var

    def collect(self):  # type: ignore[no-untyped-def]
        from sixfold.platform.quality import latest_results

        passed = GaugeMetricFamily("sixfold_data_quality_passed",
                                   "1 if the latest run of a data-quality check passed, 0 if it failed",
                                   labels=["check"])
        when = GaugeMetricFamily("sixfold_data_quality_checked_timestamp_seconds",
                                 "When the latest run of a data-quality check finished (Unix time)", labels=["check"])
        for result in latest_results(self.var):
            passed.add_metric([result.check], 1.0 if result.passed else 0.0)
            when.add_metric([result.check], result.at)
        yield passed
        yield when


def exposition(var: Path) -> tuple[bytes, str]:
    """The text exposition of every metric: (body, content type)."""
    directory = os.environ.get(MULTIPROC_ENV)
    if directory:
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
        body = generate_latest(registry)
    else:
        body = generate_latest(REGISTRY)
    quality = CollectorRegistry()
    quality.register(_QualityCollector(var))  # type: ignore[arg-type]
    return body + generate_latest(quality), CONTENT_TYPE_LATEST
