"""Daily: fold every document's update log into a Loro snapshot (shallow past the retained history).

compact
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="docs_compaction",
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=60)},
    tags=["docs"],
):

    @task
    def compact(data_interval_end=None) -> dict:
        from sixfold.docs.compaction import compact_all
        from sixfold.platform.settings import load_settings

        return compact_all(load_settings(), data_interval_end, say=print)

    compact()
