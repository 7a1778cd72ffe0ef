"""SIGKILL of each stream consumer in streams/ mid-batch, then a restart with --once (embedded profile).

For each consumer: the same deterministic input in two homes. A clean `--once` run in the first is the
reference. In the second the consumer runs continuously and is SIGKILLed the moment its first write
shows (a landed file or a store row: the batch is being written, its offsets not yet committed;
search_events_recent writes its one batch in one transaction, so its kill lands just after), then
restarted with `--once` to drain. Its output (lake rows as readers see them, store rows) must equal
the clean run's, checksum and count, and the counts must be the brute force's over the input: nothing
lost, nothing duplicated.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from pathlib import Path

import orjson
import pytest

from faults.harness import Stream, record, wait_for
from faults.workloads import Workload, summary, workloads
from sixfold.platform.bus import SpoolBus
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

pytestmark = pytest.mark.faults
ENV = {"SIXFOLD_PROFILE": "embedded", "SIXFOLD_FEED_CELEBRITY_THRESHOLD": "1000000"}


def prepared(home: Path, workload: Workload) -> Settings:
    settings = Settings.from_env({"SIXFOLD_HOME": str(home), **ENV})
    store = open_store(settings)
    try:
        workload.seed(settings, SpoolBus(settings.spool_dir, fsync=False), store)
    finally:
        store.close()
    return settings


def output_of(settings: Settings, workload: Workload) -> dict[str, list[tuple]]:
    store = open_store(settings)
    try:
        return workload.output(settings, store)
    finally:
        store.close()


def visible(settings: Settings, workload: Workload) -> bool:
    """Whether some of the consumer's output can be seen: a landed batch file, or a row in a store table it
    writes (read-only; cheap enough to poll every few milliseconds)."""
    if next(settings.lake_dir.rglob("batch-*.parquet"), None) is not None:
        return True
    if not workload.store_tables or not settings.sqlite_path.exists():
        return False
    with contextlib.closing(sqlite3.connect(f"file:{settings.sqlite_path}?mode=ro", uri=True, timeout=1)) as db:
        try:
            return any(db.execute(f'SELECT 1 FROM "{t}" LIMIT 1').fetchone() for t in workload.store_tables)
        except sqlite3.OperationalError:  # not made yet, or locked a moment
            return False


def committed(settings: Settings, workload: Workload) -> int:
    """Messages the consumer's groups have committed, over its topics (the spool's offset files)."""
    total = 0
    for topic in workload.topics:
        for group in workload.groups:
            path = settings.spool_dir / topic / "_groups" / f"{group}.json"
            if path.exists():
                total += int(orjson.loads(path.read_bytes())["offset"])
    return total


@pytest.mark.parametrize("workload", workloads(), ids=lambda w: w.script.removesuffix(".py"))
def test_sigkill_mid_batch_then_restart_equals_the_clean_run(workload: Workload, tmp_path: Path) -> None:
    clean_home, killed_home = tmp_path / "clean", tmp_path / "killed"
    clean = prepared(clean_home, workload)
    Stream(workload.script, {"SIXFOLD_HOME": str(clean_home), **ENV}, tmp_path / "clean.log",
           "--idle", "0.3").run_once()
    reference = output_of(clean, workload)
    assert {name: len(rows) for name, rows in reference.items()} == workload.expected()  # the clean run is right

    killed = prepared(killed_home, workload)
    total = sum(killed.spool_dir.joinpath(t).exists() and SpoolBus(killed.spool_dir).end_offset(t) or 0
                for t in workload.topics)
    stream = Stream(workload.script, {"SIXFOLD_HOME": str(killed_home), **ENV}, tmp_path / "killed.log",
                    "--idle", "0.3").start()
    wait_for(lambda: visible(killed, workload) or not stream.alive(), 60, "the consumer's first output", 0.005)
    assert stream.alive(), stream.log()[-3000:]  # killed mid-work, not after it finished
    stream.kill()
    at_kill = committed(killed, workload)
    partial = {name: len(rows) for name, rows in output_of(killed, workload).items()}

    started = time.monotonic()
    stream.run_once()
    recovery = time.monotonic() - started
    got = output_of(killed, workload)

    assert summary(got) == summary(reference), (summary(got), summary(reference))
    assert got == reference
    record(f"SIGKILL {workload.script}: killed with {at_kill}/{total} messages committed, output then "
           f"{partial}; restart --once drained in {recovery:.2f} s; output {summary(got)} = clean run's")
