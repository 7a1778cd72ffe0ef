"""Daily: count each document's views of the day (jobs/docs_views.py), and of the day before, so views
landed after the previous run count too.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "docs_views.py"

with DAG(
    dag_id="docs_views",
    schedule=CronDataIntervalTimetable("15 0 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # consecutive runs share a day: one at a time
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=30)},
    tags=["docs"],
):
    SparkSubmitOperator(
        task_id="daily_counts",
        conn_id="spark_default",
        application=str(JOB),
        application_args=["--start", "{{ (data_interval_start - macros.timedelta(days=1)).isoformat() }}",
                          "--end", "{{ data_interval_end.isoformat() }}"],
        name="docs_views",
        driver_memory="1g",
    )
