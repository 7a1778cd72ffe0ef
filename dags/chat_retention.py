"""Daily: delete chat messages, and their receipts, sent more than 30 days before the end of the interval.

purge
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

with DAG(
    dag_id="chat_retention",
    schedule=CronDataIntervalTimetable("0 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=30)},
    tags=["chat"],
):

    @task
    def purge(data_interval_end=None) -> dict:
        from sixfold.chat.retention import purge_chat
        from sixfold.platform.settings import load_settings

        return purge_chat(load_settings(), data_interval_end)

    purge()
