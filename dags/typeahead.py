"""Every 15 minutes: land the window's searches, compact them, aggregate, check, build the trie, validate, swap.

wait_for_window >> land >> compact >> aggregate (spark-submit) >> check >> build >> validate >> swap
wait_for_window >> remember (users' recent queries, a consumer group of its own, beside land)
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, task
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "typeahead_aggregate.py"

with DAG(
    dag_id="typeahead",
    schedule=CronDataIntervalTimetable("*/15 * * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # windows fold into the state in order
    default_args={"retries": 2, "retry_delay": timedelta(minutes=1), "execution_timeout": timedelta(minutes=20)},
    tags=["typeahead"],
):

    @task.sensor(poke_interval=30, timeout=600, mode="reschedule")
    def wait_for_window(data_interval_end=None) -> bool:
        from sixfold.typeahead.dag_tasks import window_closed

        return window_closed(data_interval_end)

    @task
    def land() -> dict:
        from sixfold.typeahead.dag_tasks import land_pending

        return land_pending()

    @task
    def remember() -> dict:
        from sixfold.typeahead.dag_tasks import remember_pending

        return remember_pending()

    @task
    def compact(data_interval_start=None, data_interval_end=None) -> dict:
        from sixfold.typeahead.dag_tasks import compact

        return compact(data_interval_start, data_interval_end)

    aggregate = SparkSubmitOperator(
        task_id="aggregate",
        conn_id="spark_default",
        application=str(JOB),
        application_args=["--start", "{{ data_interval_start.isoformat() }}", "--end", "{{ data_interval_end.isoformat() }}"],
        name="typeahead_aggregate",
        driver_memory="1g",
    )

    @task
    def check(data_interval_start=None) -> dict:
        from sixfold.typeahead.dag_tasks import check

        return check(data_interval_start)

    @task
    def build(data_interval_start=None) -> str:
        from sixfold.typeahead.dag_tasks import build

        return build(data_interval_start)

    @task
    def validate(version: str, data_interval_start=None) -> str:
        from sixfold.typeahead.dag_tasks import validate

        return validate(version, data_interval_start)

    @task
    def swap(version: str) -> dict:
        from sixfold.typeahead.dag_tasks import swap

        return swap(version)

    built = build()
    waited = wait_for_window()
    waited >> land() >> compact() >> aggregate >> check() >> built
    waited >> remember()
    swap(validate(built))
