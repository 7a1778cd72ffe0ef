"""Helpers of the fault-injection suite: stream consumers as subprocesses, a Kafka broker that is only
reached through a proxy, the environment of a cluster-profile process, and a record of the figures measured."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sixfold.platform.services.runner import Kafka
from sixfold.platform.settings import Settings

REPO = Path(__file__).resolve().parents[2]
KEYSPACE = "sixfold_faults"  # every run writes rows of its own ids; nothing else uses this keyspace


class ProxiedKafka(Kafka):
    """A broker that advertises the proxy's port: clients bootstrap through the proxy and are told to
    reach the broker there too, so every Kafka connection crosses it (a proxy in front of a broker that
    advertises itself would only carry the first metadata request)."""

    def __init__(self, settings: Settings, advertised_port: int) -> None:
        super().__init__(settings)
        self.advertised_port = advertised_port

    def prepare(self) -> list[str]:
        jvm = super().prepare()
        props = self.root / "server.properties"
        port = self.settings.kafka_bootstrap[1]
        props.write_text(props.read_text().replace(f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
                                                   f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.advertised_port}"))
        return jvm


def cluster_env(home: Path, kafka: Any, cassandra: str, **extra: str) -> dict[str, str]:
    """The variables of a cluster-profile process on `home` whose Kafka is `kafka` and Cassandra `cassandra`."""
    return {"SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "cluster", "SIXFOLD_KAFKA_BOOTSTRAP": kafka.address,
            "SIXFOLD_CASSANDRA_HOST": cassandra, "SIXFOLD_CASSANDRA_KEYSPACE": KEYSPACE,
            "SIXFOLD_CONNECT_TIMEOUT_S": "3", "SIXFOLD_SHORTENER_MEMCACHED": "", **extra}


class Stream:
    """A streams/*.py consumer as a subprocess (its own process group), with its output kept in a log file."""

    def __init__(self, script: str, env: dict[str, str], log: Path, *args: str) -> None:
        self.script, self.env, self.log_path, self.args = script, env, log, args
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self, *extra: str) -> Stream:
        log = open(self.log_path, "a")
        log.write(f"\n==== start {self.starts} {' '.join(extra)} at {time.strftime('%H:%M:%S')}\n")
        log.flush()
        self.proc = subprocess.Popen([sys.executable, str(REPO / "streams" / self.script), *self.args, *extra],
                                     env={**os.environ, **self.env}, cwd=self.env["SIXFOLD_HOME"], stdout=log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        self.starts += 1
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (it stops between passes), SIGKILL if it does not within 30 s; its exit status."""
        if self.alive():
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()
        return None if self.proc is None else self.proc.returncode

    def run_once(self, timeout_s: float = 120) -> str:
        """A `--once` run to the end; its output (asserting it exited 0)."""
        self.start("--once")
        self.proc.wait(timeout_s)
        assert self.proc.returncode == 0, self.log()[-3000:]
        return self.log()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def wait_for(probe: Callable[[], object], timeout_s: float, what: str, poll_s: float = 0.05) -> float:
    """Seconds until `probe()` is truthy; fails after `timeout_s` (a bound on a loaded machine, not a target)."""
    started = time.monotonic()
    while not probe():
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        time.sleep(poll_s)
    return time.monotonic() - started


RESULTS: list[str] = []


def record(line: str) -> None:
    """A measured figure for the README's failure table: printed at once and again at the end of the run."""
    RESULTS.append(line)
    print(f"\n[faults] {line}", flush=True)




class Supervisor:
    """Keeps a Stream running as compose's `restart: unless-stopped` does: started again `backoff_s` after it
    exits, each exit counted (with the last lines it printed)."""

    def __init__(self, stream: Stream, backoff_s: float = 1.0) -> None:
        import threading

        self.stream, self.backoff_s = stream, backoff_s
        self.exits: list[tuple[float, int | None]] = []  # (monotonic time, status)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> Supervisor:
        self.stream.start()
        self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._stopping.wait(0.05):
            if not self.stream.alive() and not self._stopping.is_set():
                self.exits.append((time.monotonic(), self.stream.proc.returncode))
                if self._stopping.wait(self.backoff_s):
                    return
                self.stream.start()

    def stop(self) -> int | None:
        self._stopping.set()
        self._thread.join(10)
        return self.stream.stop()


def close_app(app: Any) -> None:
    """Close what an app opened on first use (its store and bus): a test's app has no server to do it."""
    for name in ("store", "bus"):
        opened = getattr(app.state, name, None)
        if opened is not None:
            opened.close()
