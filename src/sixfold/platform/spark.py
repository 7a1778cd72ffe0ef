"""Spark sessions and spark-submit for every job, sized for one small machine by default.

`get_session` is what a job (or a test) calls in-process; `spark_submit` launches a job file
with the venv's own `spark-submit` (client mode), the same way Airflow's SparkSubmitOperator does.
On a `spark://` master both first check that the master answers (`require_master`), so a master
that is not there is one line naming SIXFOLD_SPARK_MASTER, not a JVM's stack trace.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from pyspark.sql import SparkSession

from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.settings import Settings, _parse_hostport

# Engine defaults, not user configuration: a laptop or a CI runner has a few cores and a few GB.
# One shuffle partition per core: more only adds tasks that queue for the same cores (and AQE
# coalesces small shuffles further).
CORES = max(2, os.cpu_count() or 2)
SMALL_MACHINE_CONF: dict[str, str] = {
    "spark.sql.shuffle.partitions": str(CORES),
    "spark.default.parallelism": str(CORES),
    "spark.sql.adaptive.enabled": "true",
    "spark.sql.adaptive.coalescePartitions.enabled": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    # Arrow and Spark must read each other's files: micros with isAdjustedToUTC, not legacy INT96.
    "spark.sql.parquet.outputTimestampType": "TIMESTAMP_MICROS",
    "spark.sql.parquet.compression.codec": "snappy",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.driver.memory": "1g",
    "spark.driver.extraJavaOptions": "-Duser.timezone=UTC",
    "spark.executor.extraJavaOptions": "-Duser.timezone=UTC",
    # The lake holds one small file per hour, thousands of them: list them from the driver (past 32
    # paths Spark lists with a distributed job, ~8 ms a path here) and pack them into tasks by size,
    # not by a 4 MB cost each.
    "spark.sql.sources.parallelPartitionDiscovery.threshold": "100000",
    "spark.sql.files.openCostInBytes": str(64 * 1024),
}
DRIVER_MEMORY = SMALL_MACHINE_CONF["spark.driver.memory"]


def spark_bin_dir() -> Path:
    """Where the installed pyspark keeps `spark-submit` (pip does not put it on the venv's bin)."""
    import pyspark

    return Path(pyspark.__file__).resolve().parent / "bin"


def spark_submit_path() -> Path:
    """The venv's `spark-submit`: from pyspark's bin, or `bin/spark-submit` next to sys.executable."""
    for candidate in (spark_bin_dir() / "spark-submit", Path(sys.executable).parent / "spark-submit"):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        "spark-submit not found next to the installed pyspark; reinstall the full `pyspark` "
        "package (the `pyspark-client` package has no spark-submit and no local Spark)"
    )


LOG4J2 = Path(__file__).with_name("spark-log4j2.properties")


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def master_address(master: str) -> tuple[str, int] | None:
    """(host, port) of a `spark://HOST[:PORT]` master URL; None for local[...] masters."""
    if not master.startswith("spark://"):
        return None
    return _parse_hostport("SIXFOLD_SPARK_MASTER", master.removeprefix("spark://"), 7077)


def on_this_machine(master: str) -> bool:
    """Whether the driver's executors run on this machine: in its JVM, or under a master on loopback."""
    address = master_address(master)
    return address is None or address[0] in LOOPBACK


def require_master(settings: Settings) -> None:
    """Raise ServiceUnavailable, naming SIXFOLD_SPARK_MASTER, unless a `spark://` master accepts a connection."""
    address = master_address(settings.spark_master)
    if address is None:
        return
    try:
        socket.create_connection(address, timeout=settings.connect_timeout_s).close()
    except OSError as exc:
        raise ServiceUnavailable(
            "Spark master", settings.spark_master, exc.strerror or str(exc) or type(exc).__name__,
            "set SIXFOLD_SPARK_MASTER=spark://HOST:PORT to a running master, or start the local one with "
            "`SIXFOLD_PROFILE=cluster sixfold services up`",
        ) from None


def session_conf(settings: Settings) -> dict[str, str]:
    """Every Spark setting a Sixfold session gets for this profile."""
    conf = dict(SMALL_MACHINE_CONF)
    conf["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={LOG4J2}"
    if on_this_machine(settings.spark_master):
        # Executors live in this JVM or on this machine's worker; never bind to (or resolve) a public interface.
        conf["spark.driver.host"] = conf["spark.driver.bindAddress"] = "127.0.0.1"
    return conf


def get_session(settings: Settings, app_name: str = "sixfold") -> SparkSession:
    """A SparkSession on `settings.spark_master` (an existing one in this process is reused)."""
    require_master(settings)
    if on_this_machine(settings.spark_master):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # what executors' Python workers run
    builder = SparkSession.builder.master(settings.spark_master).appName(app_name)
    for key, value in session_conf(settings).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


def submit_env(settings: Settings) -> dict[str, str]:
    """Environment for a spark-submit child: this venv's Python on both sides, this SIXFOLD_HOME."""
    return {
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SIXFOLD_HOME": str(settings.home),
        "SIXFOLD_PROFILE": settings.profile,
        "SIXFOLD_SPARK_MASTER": settings.spark_master,
        "TZ": "UTC",
        **({"SPARK_LOCAL_IP": "127.0.0.1"} if on_this_machine(settings.spark_master) else {}),
    }


def submit_command(job_path: str | Path, args: Sequence[str], settings: Settings) -> list[str]:
    """spark-submit in client mode: the driver runs here, executors wherever the master puts them."""
    cmd = [str(spark_submit_path()), "--master", settings.spark_master, "--driver-memory", DRIVER_MEMORY]
    return [*cmd, str(job_path), *args]


def spark_submit(
    job_path: str | Path, args: Sequence[str], settings: Settings, timeout_s: float = 600.0
) -> subprocess.CompletedProcess[str]:
    """Run a job file with spark-submit; the caller inspects returncode, stdout and stderr. A `spark://`
    master that does not answer raises ServiceUnavailable before any JVM starts."""
    require_master(settings)
    env = {**os.environ, **submit_env(settings)}
    return subprocess.run(
        submit_command(job_path, args, settings),
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
