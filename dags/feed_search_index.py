"""Hourly: re-index the last hour's posts for hashtag and geo search, the repair path.

Live indexing happens as posts are fanned out (the post-created consumer); this rewrite from the
lake restores any index row a crash or a bug lost. Idempotent: a rerun writes the same rows.

index (spark-submit, the data interval's posts)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "feed_search_index.py"

with DAG(
    dag_id="feed_search_index",
    schedule=CronDataIntervalTimetable("5 * * * *", timezone="UTC"),  # after the hour's posts have landed
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(minutes=30)},
    tags=["feed"],
):
    SparkSubmitOperator(
        task_id="index",
        conn_id="spark_default",
        application=str(JOB),
        name="feed_search_index",
        driver_memory="1g",
        application_args=["--start", "{{ data_interval_start | ts }}", "--end", "{{ data_interval_end | ts }}"],
    )
