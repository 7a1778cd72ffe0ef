"""SIGKILL of a Spark job mid-write, then a rerun: jobs/typeahead_aggregate.py over a prepared lake.

The same landed search events in two homes. In the clean one the job's function aggregates each window
in the suite's Spark session.
In the other the job is SIGKILLed (its whole process group: spark-submit, the driver JVM, the Python
workers) as soon as its first window's output lands, while later windows are still to be written,
then rerun to the end. Every output file (query counts and decayed phrase frequencies, one per window)
must then hold the clean run's bytes: a job's write replaces each partition whole and atomically, so
what a killed run left is either replaced or the same.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from datetime import timedelta
from pathlib import Path

import pytest

from faults.harness import REPO, record, wait_for
from faults.workloads import T0
from schemas.records import LAKE_TABLES
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_submit, submit_command, submit_env
from sixfold.typeahead.pipeline import aggregate_window

pytestmark = [pytest.mark.faults, pytest.mark.spark]
JOB = REPO / "jobs" / "typeahead_aggregate.py"
WINDOWS = 4
W = timedelta(minutes=15)
OUTPUTS = ("typeahead/query_counts", "typeahead/phrase_frequencies")


def searches() -> list[dict]:
    """A few hundred searches in each of WINDOWS windows, phrases repeating so they pass the threshold."""
    return [{"user_id": f"u{i % 31}", "query": f"{('new', 'news', 'netflix', 'nasa', 'nederland')[i % 5]} {i % 7}",
             "region": ("us", "eu")[i % 2], "ts": T0 + w * W + timedelta(seconds=i)}
            for w in range(WINDOWS) for i in range(300)]


def outputs(settings: Settings) -> dict[str, bytes]:
    """Every data file of the job's output tables (what readers read), by path under the lake, with its bytes."""
    found = {}
    for table in OUTPUTS:
        base = settings.lake_dir / table
        found.update({str(p.relative_to(settings.lake_dir)): p.read_bytes() for p in sorted(base.glob("dt=*/*=*/*"))})
    return found


def leftovers(settings: Settings) -> list[str]:
    """Files in the output tables that are no partition's data (a killed write's scratch; readers skip them)."""
    return sorted(str(p.relative_to(settings.lake_dir)) for table in OUTPUTS
                  for p in (settings.lake_dir / table).rglob("*") if p.is_file() and not p.match("dt=*/*=*/*"))


def test_sigkill_of_a_spark_job_mid_write_then_rerun_equals_the_clean_run(tmp_path: Path, spark) -> None:
    homes = [tmp_path / "clean", tmp_path / "killed"]
    clean, killed = (Settings.from_env({"SIXFOLD_HOME": str(h), "SIXFOLD_PROFILE": "embedded"}) for h in homes)
    for settings in (clean, killed):
        ArrowLake(settings).overwrite_partitions(LAKE_TABLES["search_events"], searches())
    args = ["--start", T0.isoformat(), "--end", (T0 + WINDOWS * W).isoformat()]

    # the clean run: the job's own function over the same windows, in the suite's Spark session (shared with
    # the other Spark tests: a second spark-submit would cost a JVM start for nothing)
    for w in range(WINDOWS):
        aggregate_window(spark, clean, T0 + w * W)
    reference = outputs(clean)
    assert len(reference) == 2 * WINDOWS  # one file per window and table

    log = open(tmp_path / "killed.log", "w")
    proc = subprocess.Popen(submit_command(JOB, args, killed), env={**os.environ, **submit_env(killed)},
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    try:
        wait_for(lambda: outputs(killed) or proc.poll() is not None, 180, "the job's first window written", 0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    left = outputs(killed)
    assert 0 < len(left) < len(reference), "the kill came before the first or after the last write"

    started = time.monotonic()
    rerun = spark_submit(JOB, args, killed)
    took = time.monotonic() - started
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    got = outputs(killed)
    assert sorted(got) == sorted(reference)
    assert got == reference  # byte for byte
    scratch = leftovers(killed)
    record(f"SIGKILL spark-submit {JOB.name} mid-write: {len(left)}/{len(reference)} output files written at the "
           f"kill; rerun in {took:.1f} s; all {len(got)} files byte-identical to the clean run's; the killed write "
           f"left {len(scratch)} scratch file(s) readers skip: {scratch}")
