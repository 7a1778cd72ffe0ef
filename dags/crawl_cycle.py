"""Every 6 hours: one crawl cycle over the persisted frontier, as Apache Nutch runs it.

generate >> fetch >> parse >> dedup >> update_frontier (each idempotent for the run's cycle id),
then near_duplicates: the Spark job (spark-submit) grouping exact and near duplicates over the whole crawl.
fetch is mapped over host partitions ("0/N" .. "N-1/N"; N the `partitions` param, 0: the
SIXFOLD_CRAWLER_PARTITIONS setting, 1 by default): each host is fetched by one task at its delay.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, Param, task
from airflow.timetables.interval import CronDataIntervalTimetable

JOB = Path(__file__).resolve().parents[1] / "jobs" / "crawl_dedup.py"

with DAG(
    dag_id="crawl_cycle",
    schedule=CronDataIntervalTimetable("0 */6 * * *", timezone="UTC"),
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,  # cycles share one frontier
    default_args={"retries": 2, "retry_delay": timedelta(minutes=2), "execution_timeout": timedelta(hours=2)},
    params={"seeds_file": Param("", type="string", description="seed URLs, one a line (optional)"),
            "max_pages": Param(1000, type="integer", minimum=1),
            "allow_hosts": Param([], type="array", description="hosts or CIDRs the SSRF guard lets through"),
            "partitions": Param(0, type="integer", minimum=0,
                                description="fetch tasks, one per host partition (0: SIXFOLD_CRAWLER_PARTITIONS)")},
    tags=["crawler"],
):

    @task
    def generate(data_interval_start=None, params=None) -> dict:
        from sixfold.crawler.cycle import dag_generate

        return dag_generate(data_interval_start, params)

    @task
    def partitions(params=None) -> list[str]:
        from sixfold.crawler.cycle import dag_partitions

        return dag_partitions(params)

    @task
    def fetch(partition: str, data_interval_start=None, params=None) -> dict:
        from sixfold.crawler.cycle import dag_fetch

        return dag_fetch(data_interval_start, params, partition)

    @task
    def parse(data_interval_start=None) -> dict:
        from sixfold.crawler.cycle import dag_parse

        return dag_parse(data_interval_start)

    @task
    def dedup(data_interval_start=None) -> dict:
        from sixfold.crawler.cycle import dag_dedup

        return dag_dedup(data_interval_start)

    @task
    def update_frontier(data_interval_start=None) -> dict:
        from sixfold.crawler.cycle import dag_update_frontier

        return dag_update_frontier(data_interval_start)

    near_duplicates = SparkSubmitOperator(
        task_id="near_duplicates",
        conn_id="spark_default",
        application=str(JOB),
        application_args=["--as-of", "{{ data_interval_end.isoformat() }}"],
        name="crawl_dedup",
        driver_memory="1g",
    )

    generate() >> fetch.expand(partition=partitions()) >> parse() >> dedup() >> update_frontier() >> near_duplicates
