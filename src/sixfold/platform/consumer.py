"""The run loop every stream consumer shares: as its own process (`streams/`) or inside `sixfold serve`.

A consumer names its default consumer group and gives `work`, which opens what it needs (closed
on exit through the ExitStack it is handed) and returns one pass: consume until idle, land or
apply, commit, and say how many events it handled. `run_consumer` repeats passes until Ctrl-C or
SIGTERM (between passes, never inside a batch), or once with `--once`; when a backing service fails
(Kafka, Cassandra: a ServiceUnavailable) it says so in one line and tries again after 1, 2, 4 ... up
to 5 s with everything reopened (`--once` exits 1 instead); `ConsumerThreads` runs
every system's consumers in threads of one process (the embedded profile's live server), each
stopped between passes and restarted after a failure (offsets were not committed, so the batch
is consumed again).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.settings import Settings, SettingsError

Pass = Callable[[], dict[str, int]]  # one pass; its counts include "received"
Work = Callable[[Settings, str, float, ExitStack], Pass]
log = logging.getLogger("sixfold.consumers")


@dataclass(frozen=True)
class Consumer:
    """A stream consumer as a system declares it: its name, default group and work."""

    name: str
    group: str
    work: Work


def run_consumer(doc: str, default_group: str, work: Work, argv: list[str] | None = None,
                 idle_sleep_s: float = 0.5) -> int:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--once", action="store_true", help="process what is pending, then exit")
    parser.add_argument("--group", default=default_group, help="consumer group (offsets are per group)")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds without events before a pass ends")
    args = parser.parse_args(argv)
    from sixfold.platform.configuration import startup_settings

    try:
        settings = startup_settings()
    except SettingsError as exc:
        for _var, reason in exc.problems:
            print(f"configuration error: {reason}", file=sys.stderr)
        return 2
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    total: Counter[str] = Counter()
    failures = 0  # in a row: the wait before the next try doubles, up to RETRY_CAP_S
    try:
        while not stopping:
            try:
                with ExitStack() as resources:
                    one_pass = work(settings, args.group, args.idle, resources)
                    while not stopping:
                        counts = one_pass()
                        failures = 0
                        total.update(counts)
                        if args.once:
                            stopping = True
                        elif not counts.get("received"):
                            time.sleep(idle_sleep_s)
            except Exception as exc:  # noqa: BLE001 - a consumer outlives its dependencies' outages
                # Kafka, Cassandra, the blob store failing is one line; anything else (a driver's own error, a
                # bug) keeps its traceback for whoever reads the log. Either way the batch was not committed.
                if isinstance(exc, ServiceUnavailable):
                    print(f"error: {exc}", file=sys.stderr, flush=True)
                else:
                    traceback.print_exc()
                if args.once:
                    return 1
                failures += 1
                wait = min(RETRY_CAP_S, RETRY_BASE_S * 2 ** (failures - 1))
                print(f"retrying in {wait:.0f} s (offsets not committed: the batch is consumed again)",
                      file=sys.stderr, flush=True)
                _sleep_unless(lambda: stopping, wait)
    except KeyboardInterrupt:
        pass
    print("done: " + ", ".join(f"{k} {v:,}" for k, v in total.items()), flush=True)
    return 0


RETRY_BASE_S, RETRY_CAP_S = 1.0, 5.0  # a supervisor would restart it after about a second


def _sleep_unless(stopped: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not stopped() and time.monotonic() < deadline:
        time.sleep(min(0.2, deadline - time.monotonic()))


class ConsumerThreads:
    """Every consumer in a daemon thread of this process, polling with `idle_s` (short: live latency)."""

    def __init__(self, settings: Settings, consumers: list[Consumer], idle_s: float = 0.2,
                 retry_s: float = 2.0) -> None:
        self.settings, self.consumers, self.idle_s, self.retry_s = settings, consumers, idle_s, retry_s
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.totals: dict[str, Counter[str]] = {c.name: Counter() for c in consumers}
        self.failures: dict[str, str] = {}
        self._lag_bus: Any = None

    def start(self) -> "ConsumerThreads":
        for consumer in self.consumers:
            thread = threading.Thread(target=self._run, args=(consumer,), name=f"consumer-{consumer.name}",
                                      daemon=True)
            thread.start()
            self.threads.append(thread)
        return self

    def _run(self, consumer: Consumer) -> None:
        while not self.stopping.is_set():
            try:
                with ExitStack() as resources:
                    one_pass = consumer.work(self.settings, consumer.group, self.idle_s, resources)
                    while not self.stopping.is_set():
                        counts = one_pass()
                        self.totals[consumer.name].update(counts)
                        self._record_lag(consumer.group)
                        if not counts.get("received"):
                            self.stopping.wait(self.idle_s)
            except Exception as exc:  # noqa: BLE001 - a consumer must not take the server down
                self.failures[consumer.name] = f"{type(exc).__name__}: {exc}"
                log.exception("consumer %s failed; retrying in %.0f s", consumer.name, self.retry_s)
                self.stopping.wait(self.retry_s)

    def _record_lag(self, group: str) -> None:
        """The group's lag gauge (`sixfold_consumer_lag_messages`), when the bus can tell it (the spool can)."""
        from sixfold.platform.metrics import record_lag

        if self.settings.profile != "embedded":  # Kafka keeps lag itself (kafka-consumer-groups.sh --describe)
            return
        try:
            if self._lag_bus is None:
                from sixfold.platform.bus import SpoolBus

                self._lag_bus = SpoolBus(self.settings.spool_dir)
            record_lag(group, self._lag_bus.lag(group))
        except Exception:  # noqa: BLE001 - a gauge must never stop a consumer
            log.debug("lag of group %s not measured", group, exc_info=True)

    def stop(self, timeout_s: float = 30.0) -> None:
        """Stop between passes (a batch in flight finishes and commits) and wait for every thread."""
        self.stopping.set()
        deadline = time.monotonic() + timeout_s
        for thread in self.threads:
            thread.join(max(0.0, deadline - time.monotonic()))
