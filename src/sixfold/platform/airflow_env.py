"""The environment Airflow needs to run Sixfold's DAGs: its home, our dags folder, the Spark connection.

`airflow_env(settings)` returns variables to add to a shell (or a test) before starting Airflow;
nothing here imports Airflow.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_bin_dir, submit_env

REPO = Path(__file__).resolve().parents[3]
DAGS_FOLDER = REPO / "dags"


def spark_connection(settings: Settings) -> str:
    """`spark_default` in Airflow's JSON form; host carries the whole master URL (local[*] or spark://)."""
    return json.dumps({"conn_type": "spark", "host": settings.spark_master, "extra": {"spark-binary": "spark-submit"}})


def airflow_env(settings: Settings) -> dict[str, str]:
    """Variables for Airflow processes; PATH puts the venv's bin and pyspark's spark-submit first."""
    path = os.pathsep.join(
        [str(Path(sys.executable).parent), str(spark_bin_dir()), os.environ.get("PATH", os.defpath)]
    )
    return {
        **submit_env(settings),
        "AIRFLOW_HOME": str(settings.var / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DEFAULT_TIMEZONE": "utc",
        "AIRFLOW_CONN_SPARK_DEFAULT": spark_connection(settings),
        "PATH": path,
    }
