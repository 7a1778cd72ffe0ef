"""The feed_search_index DAG: the repair path indexes exactly its data interval's posts from the lake."""

from __future__ import annotations

from datetime import timedelta

import pytest
from test_feed_search import START, TAGS, expected_tag, hand_made_posts

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

pytestmark = [pytest.mark.airflow, pytest.mark.spark]


def test_search_index_dag_indexes_one_interval(airflow: Settings, spark) -> None:
    from airflow.models.dagbag import DagBag

    from sixfold.feed.search import search_hashtag
    from sixfold.platform.airflow_env import DAGS_FOLDER

    posts = hand_made_posts()  # six hours of posts from START, none indexed yet
    ArrowLake(airflow).overwrite_partitions(LAKE_TABLES["posts"], posts)
    store = SQLiteStore(airflow.sqlite_path)
    store.upsert_many(SERVING_TABLES["posts"], posts)
    dag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False).dags["feed_search_index"]
    assert [t.task_id for t in dag.tasks] == ["index"]
    run = dag.test(logical_date=START + timedelta(hours=2, minutes=5))  # the cron runs at :05
    assert run.state == "success"
    lo, hi = run.data_interval_start, run.data_interval_end  # Airflow 3: the hour before the logical date
    assert hi - lo == timedelta(hours=1) and lo.minute == 5
    inside = [p for p in posts if lo <= p["created_at"] < hi]
    assert 0 < len(inside) < len(posts)
    for tag in TAGS:
        found = search_hashtag(store, tag, limit=100)["posts"]
        assert [p["post_id"] for p in found] == expected_tag(inside, tag), tag
    store.close()
