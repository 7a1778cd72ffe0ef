"""DAG integrity for everything in dags/, and one real run of the sample DAG with `dag.test()`.

Airflow reads AIRFLOW_HOME and its database URL when `airflow` is first imported, so the
metadata database is migrated once per session in a subprocess, and each test sets the
environment with monkeypatch (restored afterwards) before importing anything from Airflow.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from schemas.records import LAKE_TABLES
from sixfold.platform.airflow_env import DAGS_FOLDER
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.airflow

T0 = datetime(2026, 3, 1, 10, 0, tzinfo=timezone.utc)


def load_dagbag() -> Any:
    from airflow.models.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)


def test_every_dag_imports_and_is_well_formed(airflow: Settings) -> None:
    from airflow.utils.dag_cycle_tester import check_cycle

    bag = load_dagbag()
    assert bag.import_errors == {}
    assert bag.dags, f"no DAG found in {DAGS_FOLDER}"
    for dag_id, dag in bag.dags.items():
        check_cycle(dag)  # raises on a cycle
        assert dag.timetable.can_be_scheduled, f"{dag_id} has no schedule"
        assert dag.catchup is False, f"{dag_id}: catchup would backfill every interval since start_date"
        for task in dag.tasks:
            assert task.retries >= 1, f"{dag_id}.{task.task_id} needs retries >= 1"
            assert task.execution_timeout is not None, f"{dag_id}.{task.task_id} needs an execution_timeout"


def search_events() -> list[dict[str, Any]]:
    return [
        {"user_id": f"u{i % 4}", "query": f"q{i % 3}", "region": ("eu", "us")[i % 2],
         "ts": T0 + timedelta(seconds=97 * i, milliseconds=3 * i)}
        for i in range(40)  # 10:00 .. about 11:03
    ]


def test_sample_dag_counts_exactly_its_data_interval(airflow: Settings) -> None:
    settings = airflow
    lake = ArrowLake(settings)
    rows = search_events()
    lake.overwrite_partitions(LAKE_TABLES["search_events"], rows)

    dag = load_dagbag().dags["sample_window_counts"]
    run = dag.test(logical_date=T0 + timedelta(minutes=30))
    assert run.state == "success"
    start, end = run.data_interval_start, run.data_interval_end
    assert (start, end) == (T0 + timedelta(minutes=15), T0 + timedelta(minutes=30))

    counts = LAKE_TABLES["sample_window_counts"]
    assert lake.partitions(counts) == ["dt=2026-03-01/window=1015"]
    got = Counter(
        {(r["region"], r["window_start"], r["query"]): r["count"] for r in lake.read(counts).to_pylist()}
    )
    expected = Counter((r["region"], start, r["query"]) for r in rows if start <= r["ts"] < end)
    assert got == expected
