"""Spark jobs on the cluster profile's standalone master equal the embedded (local[*]) run on the same input.

The master and worker are the ones `sixfold services up` starts on the cluster profile (the
`spark_cluster` fixture starts them when they are not running). Each job runs as users run it: the
typeahead aggregation and the timeline job through `spark_submit` (the CLI's and the demo's door,
client mode), the crawl dedup through the `crawl_cycle` DAG's own SparkSubmitOperator. The embedded
run of the same functions in this process is the comparison, and a brute force in plain Python (the
one each job's own test uses) is the oracle for both; the master's report says the app ran there.

Then item 6 of issue 15: a cluster setting pointing at nothing (the master, Kafka, Cassandra) stops
`sixfold feed timelines` with one line naming the service and the variable, no stack trace.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_crawl_spark_dedup import brute_force, synthetic_pages
from test_feed_timelines import T0 as FEED_T0
from test_feed_timelines import pushed_oracle
from test_typeahead_pipeline import HALF_LIFE, WINDOWS, W, events_for, oracle_state
from test_typeahead_pipeline import T0 as TYPEAHEAD_T0

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.platform.airflow_env import DAGS_FOLDER, airflow_env
from sixfold.platform.benchkit import free_port
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.lake import ArrowLake
from sixfold.platform.services.runner import SPARK_MASTER_UI_PORT
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_submit
from sixfold.platform.store import open_store

pytestmark = [pytest.mark.integration, pytest.mark.spark]

REPO = Path(__file__).resolve().parents[1]
SIXFOLD = str(Path(sys.executable).with_name("sixfold"))
KEYSPACE = "sixfold_cluster_spark"  # the timeline job's Cassandra rows; every run uses users of its own
TYPEAHEAD_ENV = {"SIXFOLD_TYPEAHEAD_HALF_LIFE_S": str(HALF_LIFE), "SIXFOLD_TYPEAHEAD_THRESHOLD": "2.5"}
FEED_ENV = {"SIXFOLD_FEED_CELEBRITY_THRESHOLD": "3", "SIXFOLD_CASSANDRA_KEYSPACE": KEYSPACE}


def homes(tmp_path: Path, env: dict[str, str]) -> tuple[Settings, Settings]:
    """(embedded, cluster) settings over two homes, each with `env` on top of the cluster fixture's."""
    embedded = Settings.from_env({"SIXFOLD_HOME": str(tmp_path / "embedded"), **env})
    cluster = Settings.from_env({"SIXFOLD_HOME": str(tmp_path / "cluster"), "SIXFOLD_PROFILE": "cluster", **env})
    return embedded, cluster


def apps_on_master() -> dict[str, str]:
    """Every application the standalone master knows, running or finished: id -> name."""
    state = httpx.get(f"http://127.0.0.1:{SPARK_MASTER_UI_PORT}/json/", timeout=5).json()
    return {app["id"]: app["name"] for app in state["activeapps"] + state["completedapps"]}


def ran_on_master(before: dict[str, str], name: str) -> bool:
    return name in [n for app_id, n in apps_on_master().items() if app_id not in before]


def rows(settings: Settings, table: str) -> list[dict[str, Any]]:
    """A lake table's rows in partition and file order (each job writes sorted files)."""
    return ArrowLake(settings).read(LAKE_TABLES[table]).to_pylist()


def submitted(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The JSON lines a job printed (its ledgers), after checking it succeeded."""
    assert done.returncode == 0, done.stderr[-4000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


# ---- the three jobs ----------------------------------------------------------------------------------------
def test_typeahead_aggregation_on_the_master_equals_the_embedded_run(spark, spark_cluster, tmp_path, monkeypatch):
    from sixfold.typeahead import pipeline

    for key, value in TYPEAHEAD_ENV.items():
        monkeypatch.setenv(key, value)
    embedded, cluster = homes(tmp_path, TYPEAHEAD_ENV)
    events = [e for w, spec in WINDOWS.items() for e in events_for(w, spec)]
    for settings in (embedded, cluster):
        ArrowLake(settings).overwrite_partitions(LAKE_TABLES["search_events"], events)
    end = TYPEAHEAD_T0 + 4 * W

    before = apps_on_master()
    ledgers = submitted(spark_submit(REPO / "jobs" / "typeahead_aggregate.py",
                                     ["--start", TYPEAHEAD_T0.isoformat(), "--end", end.isoformat()], cluster))
    assert ran_on_master(before, "typeahead_aggregate")
    local = [pipeline.aggregate_window(spark, embedded, TYPEAHEAD_T0 + w * W) for w in range(4)]

    assert ledgers == local
    for table in ("query_counts", "phrase_frequencies"):
        assert rows(cluster, table) == rows(embedded, table), table
    want = oracle_state(3, 2.5)
    got = pipeline.suggestion_scores(cluster, TYPEAHEAD_T0 + 3 * W)
    assert set(got) == set(want)
    for region in want:
        assert got[region] == pytest.approx(want[region], rel=1e-6)


def feed_lake(base: int) -> tuple[list[dict], list[dict], list[dict], set[tuple[int, int]]]:
    """Follow events (some undone), posts and one deletion among 12 users numbered from `base`, and the graph
    they leave."""
    rng = random.Random(15)
    users = [base + i for i in range(12)]
    events, graph = [], set()
    for minute, (a, b) in enumerate(rng.sample([(a, b) for a in users for b in users if a != b], 40)):
        at = FEED_T0 + timedelta(minutes=minute)
        events.append({"follower_id": a, "followee_id": b, "action": "follow", "at": at})
        if minute % 7 == 3:  # unfollowed later
            events.append({"follower_id": a, "followee_id": b, "action": "unfollow", "at": at + timedelta(hours=1)})
        else:
            graph.add((a, b))
    posts = [{"post_id": base * 1000 + i, "author_id": rng.choice(users), "created_at": FEED_T0 + timedelta(minutes=3 * i),
              "caption": f"post {i}", "media_ids": [], "hashtags": [], "lat": None, "lon": None} for i in range(60)]
    gone = posts[17]
    deletions = [{"post_id": gone["post_id"], "author_id": gone["author_id"],
                  "deleted_at": FEED_T0 + timedelta(hours=4), "media_ids": [], "hashtags": [], "lat": None, "lon": None}]
    return events, posts, deletions, graph


def served(settings: Settings, users: list[int]) -> dict[str, Any]:
    """What the timeline job leaves in a store for these users: timelines, follower counts, celebrities."""
    store = open_store(settings)
    try:
        ours = set(users)
        return {
            "timelines": {u: [(r["post_id"], r["author_id"]) for r in store.query(SERVING_TABLES["timelines"],
                                                                                 {"user_id": u})] for u in users},
            "followers": sorted((r["user_id"], r["followers"]) for r in store.scan(SERVING_TABLES["follower_counts"])
                                if r["user_id"] in ours and r["followers"]),
            "celebrities": sorted((r["user_id"], r["followers"]) for r in store.scan(SERVING_TABLES["celebrities"])
                                  if r["user_id"] in ours),
        }
    finally:
        store.close()


def test_timeline_job_on_the_master_equals_the_embedded_run(spark, services_running, spark_cluster, tmp_path,
                                                             monkeypatch):
    from sixfold.feed.timeline_job import generate_timelines

    for key, value in FEED_ENV.items():
        monkeypatch.setenv(key, value)
    embedded, cluster = homes(tmp_path, FEED_ENV)
    base = random.randrange(1, 2**30)  # users no earlier run left in the keyspace
    events, posts, deletions, graph = feed_lake(base)
    for settings in (embedded, cluster):
        lake = ArrowLake(settings)
        lake.overwrite_partitions(LAKE_TABLES["follow_events"], events)
        lake.overwrite_partitions(LAKE_TABLES["posts"], posts)
        lake.overwrite_partitions(LAKE_TABLES["post_deletions"], deletions)

    before = apps_on_master()
    done = spark_submit(REPO / "jobs" / "feed_timelines.py", [], cluster)
    assert done.returncode == 0, done.stderr[-4000:]
    assert ran_on_master(before, "feed_timelines")
    remote = json.loads(done.stdout.strip().splitlines()[-1])
    store = open_store(embedded)
    try:
        local = generate_timelines(spark, embedded, store)
    finally:
        store.close()

    users = sorted({e["follower_id"] for e in events} | {e["followee_id"] for e in events})
    keys = ("users", "entries", "written", "deleted")  # the keyspace's other users count in the rest
    assert {k: remote[k] for k in keys} == {k: local[k] for k in keys}
    on_cluster, on_embedded = served(cluster, users), served(embedded, users)
    assert on_cluster == on_embedded
    live = [(p["post_id"], p["author_id"]) for p in posts if p["post_id"] != deletions[0]["post_id"]]
    assert on_cluster["timelines"] == {u: pushed_oracle(graph, live, u, 3, 500) for u in users}
    assert on_cluster["celebrities"], "the fixture has celebrities (3 followers or more)"


def test_crawl_dedup_through_the_dags_operator_equals_the_embedded_run(spark, spark_cluster, tmp_path):
    from sixfold.crawler.spark_dedup import run_dedup

    embedded, cluster = homes(tmp_path, {})
    pages = synthetic_pages(9)
    for settings in (embedded, cluster):
        ArrowLake(settings).overwrite_partitions(LAKE_TABLES["crawl_pages"], pages)
    as_of = "2026-11-27T04:00:00Z"

    # The crawl_cycle DAG's own task, its data interval given, run the way a worker would: the environment
    # `sixfold airflow` gives Airflow (spark_default -> the master), no metadata database needed.
    run_task = """if True:
        import sys
        from airflow.models.dagbag import DagBag
        bag = DagBag(dag_folder=sys.argv[1], include_examples=False)
        assert not bag.import_errors, bag.import_errors
        task = bag.dags["crawl_cycle"].get_task("near_duplicates")
        task.application_args = ["--as-of", sys.argv[2]]
        task.execute({})
    """
    env = {**os.environ, **airflow_env(cluster), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    before = apps_on_master()
    done = subprocess.run([sys.executable, "-c", run_task, str(DAGS_FOLDER / "crawl_cycle.py"), as_of], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert ran_on_master(before, "crawl_dedup")
    run_dedup(spark, embedded, as_of)

    on_cluster = rows(cluster, "crawl_duplicates")
    assert on_cluster == rows(embedded, "crawl_duplicates")
    assert {(r["url"], r["duplicate_of"], r["kind"], r["distance"]) for r in on_cluster} == \
        brute_force(pages, cluster.crawler_simhash_distance)


# ---- a cluster setting pointing at nothing ---------------------------------------------------------------
def closed_port() -> int:
    """A port nothing listens on (bound and released at once)."""
    return free_port()


def timelines_command(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIXFOLD_")}
    return subprocess.run([SIXFOLD, "feed", "timelines", *args], capture_output=True, text=True, timeout=120,
                          env={**base, "SIXFOLD_PROFILE": "cluster", "SIXFOLD_CONNECT_TIMEOUT_S": "2", **env})


def assert_named(done: subprocess.CompletedProcess[str], service: str, variable: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == 2, out
    assert f"{service} at 127.0.0.1:" in out or f"{service} at spark://127.0.0.1:" in out, out
    assert variable in out, out
    for trace in ("Traceback", "Exception in thread", "\tat org.", "py4j", "JAVA_GATEWAY_EXITED"):
        assert trace not in out, out


def test_a_master_that_is_not_there_is_named_before_anything_starts(tmp_path):
    master = f"spark://127.0.0.1:{closed_port()}"
    done = timelines_command({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_SPARK_MASTER": master,
                              "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{closed_port()}"}, "--no-land")
    assert_named(done, "Spark master", "SIXFOLD_SPARK_MASTER")  # first: before the store is even opened
    assert not (tmp_path / "var").exists()
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_SPARK_MASTER": master})
    with pytest.raises(ServiceUnavailable, match="SIXFOLD_SPARK_MASTER"):  # the door of jobs, DAGs and the demo
        spark_submit(REPO / "jobs" / "crawl_dedup.py", [], settings)


def test_a_cassandra_that_is_not_there_is_named(spark_cluster, tmp_path):
    done = timelines_command({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_CASSANDRA_HOST": f"127.0.0.1:{closed_port()}",
                              "SIXFOLD_SPARK_MASTER": spark_cluster.spark_master}, "--no-land")
    assert_named(done, "Cassandra", "SIXFOLD_CASSANDRA_HOST")


def test_a_kafka_that_is_not_there_is_named(services_running, spark_cluster, tmp_path):
    done = timelines_command({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_KAFKA_BOOTSTRAP": f"127.0.0.1:{closed_port()}",
                              "SIXFOLD_CASSANDRA_KEYSPACE": KEYSPACE,
                              "SIXFOLD_SPARK_MASTER": spark_cluster.spark_master})
    assert_named(done, "Kafka", "SIXFOLD_KAFKA_BOOTSTRAP")


def test_services_know_spark_by_name_and_the_cluster_profile_starts_it(tmp_path):
    from sixfold.platform.services.runner import _pick, all_services

    embedded = Settings.from_env({"SIXFOLD_HOME": str(tmp_path)})
    cluster = replace(embedded, profile="cluster", spark_master="spark://127.0.0.1:7077",
                      shortener_memcached="127.0.0.1:11211")
    assert [s.name for s in all_services(embedded)] == ["kafka", "cassandra"]
    assert [s.name for s in all_services(cluster)] == ["kafka", "cassandra", "memcached", "spark-master",
                                                       "spark-worker"]
    remote = replace(cluster, spark_master="spark://spark-master:7077")  # compose's: nothing local to start
    assert "spark-master" not in [s.name for s in all_services(remote)]
    assert [s.name for s in _pick(embedded, ["spark-worker", "kafka", "spark"])] == ["kafka", "spark-master",
                                                                                  "spark-worker"]
    with pytest.raises(ValueError, match="sparky"):
        _pick(embedded, ["sparky"])
