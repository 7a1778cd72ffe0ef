"""Hourly: regenerate the pushed timelines from the lake, then check a sample against a brute force.

generate (spark-submit) >> dq
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "feed_timelines.py"

with DAG(
    dag_id="timelines",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(minutes=45)},
    tags=["feed"],
):
    generate = SparkSubmitOperator(
        task_id="generate",
        conn_id="spark_default",
        application=str(JOB),
        name="feed_timelines",
        driver_memory="1g",
    )

    @task
    def dq() -> dict:
        from sixfold.feed.timeline_job import check_sample
        from sixfold.platform.settings import Settings

        return check_sample(Settings.from_env())

    generate >> dq()
