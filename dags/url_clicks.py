"""Hourly: count the shortener's clicks per key, hour, referrer and browser (jobs/url_clicks.py).

Each run counts its own hour and the hour before, so clicks landed after the previous run count too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "url_clicks.py"

with DAG(
    dag_id="url_clicks",
    schedule=CronDataIntervalTimetable("0 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # consecutive runs share an hour: one at a time
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=20)},
    tags=["shortener"],
):
    SparkSubmitOperator(
        task_id="hourly_counts",
        conn_id="spark_default",
        application=str(JOB),
        application_args=["--start", "{{ (data_interval_start - macros.timedelta(hours=1)).isoformat() }}",
                          "--end", "{{ data_interval_end.isoformat() }}"],
        name="url_clicks",
        driver_memory="1g",
    )
