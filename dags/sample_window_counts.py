"""Every 15 minutes: count the window's search events per region and query (jobs/sample_window_counts.py)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "sample_window_counts.py"

with DAG(
    dag_id="sample_window_counts",
    # A data-interval timetable: each run covers [previous tick, tick). A plain cron string would
    # be a CronTriggerTimetable in Airflow 3, whose runs have an empty data interval.
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=4,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=20)},
    tags=["sample", "typeahead"],
):
    SparkSubmitOperator(
        task_id="window_counts",
        conn_id="spark_default",
        application=str(JOB),
        application_args=["--start", "{{ data_interval_start.isoformat() }}", "--end", "{{ data_interval_end.isoformat() }}"],
        name="sample_window_counts",
        driver_memory="1g",
    )
