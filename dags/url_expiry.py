"""Daily: delete the short links expired by the end of the interval; their keys stay tombstoned, never reissued.

purge
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="url_expiry",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=30)},
    tags=["shortener"],
):

    @task
    def purge(data_interval_end=None) -> dict:
        from sixfold.platform.settings import load_settings
        from sixfold.shortener.links import purge_expired

        return purge_expired(load_settings(), data_interval_end)

    purge()
