"""Every 15 minutes: delete the stories expired by the end of the interval, and the blobs they alone used.

purge
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="story_expiry",
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=10)},
    tags=["feed"],
):

    @task
    def purge(data_interval_end=None) -> dict:
        from sixfold.feed.stories import purge_expired
        from sixfold.platform.settings import load_settings

        return purge_expired(load_settings(), data_interval_end)

    purge()
