"""The environment Airflow needs to run Sixfold's DAGs (its home, our dags folder, the Spark connection,
the API on 127.0.0.1), and `standalone`: every Airflow component for local use under one Ctrl-C.

`airflow_env(settings)` returns variables to add to a shell (or a test) before starting Airflow;
nothing here imports Airflow.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from sixfold.platform.processes import supervise
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_bin_dir, submit_env

REPO = Path(__file__).resolve().parents[3]
DAGS_FOLDER = REPO / "dags"
LOOPBACK = "127.0.0.1"
DEFAULT_PORT = 8080
EVERY_INTERFACE = ("0.0.0.0", "::", "")


def spark_connection(settings: Settings) -> str:
    """`spark_default` in Airflow's JSON form; host carries the whole master URL (local[*] or spark://)."""
    return json.dumps({"conn_type": "spark", "host": settings.spark_master, "extra": {"spark-binary": "spark-submit"}})


def api_address(environ: Mapping[str, str] | None = None) -> tuple[str, int]:
    """Where the API server listens: AIRFLOW__API__HOST (default 127.0.0.1, Airflow's own is every
    interface) and AIRFLOW__API__PORT (default 8080)."""
    environ = os.environ if environ is None else environ
    port = environ.get("AIRFLOW__API__PORT", str(DEFAULT_PORT))
    if not port.isdigit():
        raise ValueError(f"AIRFLOW__API__PORT={port!r} is not a port number; set it to e.g. {DEFAULT_PORT}")
    return environ.get("AIRFLOW__API__HOST", LOOPBACK), int(port)


def airflow_env(settings: Settings) -> dict[str, str]:
    """Variables for Airflow processes; PATH puts the venv's bin and pyspark's spark-submit first."""
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(spark_bin_dir()), os.environ.get("PATH", os.defpath)]
    )
    host, port = api_address()
    # Task processes report to the execution API; Airflow's default URL assumes localhost:8080,
    # which misses a server on another port (and may resolve to ::1 while the server is on IPv4).
    reach = LOOPBACK if host in EVERY_INTERFACE else host
    return {
        **submit_env(settings),
        "AIRFLOW_HOME": str(settings.var / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": os.environ.get(
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL", f"http://{reach}:{port}/execution/"),
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(settings),
        "PATH": path,
    }


def airflow_exe() -> str:
    return os.path.join(os.path.dirname(sys.executable), "airflow")


def standalone_commands(exe: str, host: str, port: int) -> list[list[str]]:
    """The components `airflow standalone` runs, without the log servers: those listen on every
    interface (on ports 8793 and 8794, with no setting to change it), and on one machine the API
    server reads finished tasks' logs from AIRFLOW_HOME anyway."""
    return [
        [exe, "api-server", "--host", host, "--port", str(port)],
        [exe, "scheduler", "--skip-serve-logs"],
        [exe, "dag-processor"],
        [exe, "triggerer", "--skip-serve-logs"],
    ]


def standalone(settings: Settings, say: Callable[[str], None] = print) -> int:
    """Migrate the metadata database, then run api-server, scheduler, dag-processor and triggerer
    until Ctrl-C (or SIGTERM), which stops each of them and everything they started.

    Stands in for `airflow standalone`, whose API server and log servers listen on every interface
    and which, sharing the terminal's process group, could hang after Ctrl-C or leave components
    behind. Returns the exit code for the shell (130 after Ctrl-C).
    """
    env = {**os.environ, **airflow_env(settings)}
    host, port = api_address(env)
    exe = airflow_exe()
    code = supervise([[exe, "db", "migrate"]], env, say=say)
    if code:
        if code <= 128:  # above: stopped by Ctrl-C or SIGTERM, which supervise has reported
            say(f"`airflow db migrate` failed with {code}; see its output above (AIRFLOW_HOME={env['AIRFLOW_HOME']})")
        return code
    passwords = Path(env["AIRFLOW_HOME"]) / "simple_auth_manager_passwords.json.generated"
    say(f"Airflow UI on http://{host}:{port} as admin (the password is printed on first start and kept in "
        f"{passwords}); Ctrl-C stops every Airflow process")
    return supervise(standalone_commands(exe, host, port), env, say=say)
