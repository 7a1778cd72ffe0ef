"""Docs offline halves: compaction (same content and version on reload, the state's size before and after
on a heavy-deletion document, shallow past the retained history, a rerun changes nothing), the view
counts (landing, the Spark job against a brute force count), and both DAGs with `dag.test()`."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient

from schemas.records import DOC_VIEW_EVENT, SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.docs.compaction import compact_all, compact_doc
from sixfold.docs.service import SNAPSHOTS, UPDATES, DocService
from sixfold.docs.views import TOPIC, land_views
from sixfold.platform import schema
from sixfold.platform.airflow_env import DAGS_FOLDER
from sixfold.platform.bus import open_bus
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

T0 = datetime(2026, 3, 4, tzinfo=UTC)


def heavy_deletion_doc(client: TestClient, rounds: int = 40) -> tuple[str, Authed, list[str]]:
    """A document typed and mostly deleted again, round after round (what compaction is for)."""
    _, token = signup(client, f"writer{random.randrange(10**6)}")
    me = Authed(client, token)
    doc = me.post("/v1/docs", json={}).json()["doc_id"]
    rng = random.Random(1)
    contents = []
    for i in range(rounds):
        text = me.get(f"/v1/docs/{doc}").json()["content"]
        paragraph = " ".join(rng.choice(["lorem", "ipsum", "dolor", "sit", "amet"]) for _ in range(60))
        me.post(f"/v1/docs/{doc}/edits", json=[[len(text), 0, paragraph]])
        text += paragraph
        me.post(f"/v1/docs/{doc}/edits", json=[[0, len(text) - 40, f"[{i}]"]])  # keep only the tail
        contents.append(me.get(f"/v1/docs/{doc}").json()["content"])
    return doc, me, contents


def reload(settings: Settings, doc_id: str) -> tuple[str, int]:
    store = open_store(settings)
    try:
        fresh = DocService(store, None, None, "check")
        live = fresh.live(doc_id)
        return live.doc.get_text("content").to_string(), live.version
    finally:
        store.close()


@pytest.mark.unit
def test_compaction_folds_the_log_into_a_snapshot_with_the_same_content_and_version(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        doc, me, contents = heavy_deletion_doc(client)
        expected = me.get(f"/v1/docs/{doc}").json()
    store = open_store(settings)
    try:
        report = compact_doc(store, doc, datetime.now(UTC), retain_days=30)
        assert report["folded"] == 80 and not report["shallow"]
        print(f"\nheavy-deletion document, 80 updates: {report['bytes_before']:,} bytes of updates -> "
              f"{report['bytes_after']:,} bytes of snapshot")
        assert store.query(UPDATES, {"doc_id": doc}) == []
        snapshot = store.get(SNAPSHOTS, {"doc_id": doc})["snapshot"]
        assert compact_doc(store, doc, datetime.now(UTC), retain_days=30)["folded"] == 0  # a rerun: nothing
        assert store.get(SNAPSHOTS, {"doc_id": doc})["snapshot"] == snapshot
    finally:
        store.close()
    assert reload(settings, doc) == (expected["content"], expected["version"])
    with TestClient(create_app(settings)) as client:  # history and restore still work across the snapshot
        me = Authed(client, me.token)
        assert [v["version"] for v in me.get(f"/v1/docs/{doc}/history", params={"limit": 1000}).json()["versions"]] \
            == list(range(80, 0, -1))
        assert me.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "after "]]).json() == {"version": 81}
        restored = me.post(f"/v1/docs/{doc}/restore", json={"version": 10}).json()["version"]
        assert me.get(f"/v1/docs/{doc}").json()["content"] == contents[4] and restored == 82


@pytest.mark.unit
def test_history_past_the_retained_window_folds_into_a_shallow_snapshot(settings: Settings) -> None:
    with TestClient(create_app(settings)) as client:
        doc, me, contents = heavy_deletion_doc(client)
        expected = me.get(f"/v1/docs/{doc}").json()
    store = open_store(settings)
    try:
        rows = store.query(UPDATES, {"doc_id": doc})
        for row in rows[:60]:  # the first 60 versions are old
            store.upsert(UPDATES, {**row, "at": row["at"] - timedelta(days=45)})
        full = len(open_store(settings).get(UPDATES, {"doc_id": doc, "version": 1})["update"])
        assert full
        report = compact_doc(store, doc, datetime.now(UTC), retain_days=30)
        assert report["shallow"] and report["restorable_from"] == 60
        print(f"\nshallow: {report['bytes_before']:,} bytes of updates -> {report['bytes_after']:,} bytes")
    finally:
        store.close()
    assert reload(settings, doc) == (expected["content"], expected["version"])
    with TestClient(create_app(settings)) as client:
        me = Authed(client, me.token)
        assert me.post(f"/v1/docs/{doc}/restore", json={"version": 59}).status_code == 410
        me.post(f"/v1/docs/{doc}/restore", json={"version": 70})
        assert me.get(f"/v1/docs/{doc}").json()["content"] == contents[34]
        from loro import LoroDoc

        fresh = LoroDoc()  # a client with nothing gets the (shallow) snapshot and the update since
        fresh.import_(me.get(f"/v1/docs/{doc}/updates").content)
        assert fresh.get_text("content").to_string() == contents[34]


# ---- view counts --------------------------------------------------------------------------------------
def view_events(n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{"view_id": f"v{seed}-{i}", "doc_id": rng.choice(["101", "202", "303"]), "user_id": rng.choice([None, 7, 8]),
             "source": rng.choice(["http", "ws"]), "ts": T0 + timedelta(minutes=rng.randrange(3 * 24 * 60))}
            for i in range(n)]


def brute(events: list[dict[str, Any]], start: datetime, end: datetime) -> Counter:
    seen: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: e["ts"]):
        seen.setdefault(e["view_id"], e)
    return Counter((e["doc_id"], e["ts"].replace(hour=0, minute=0)) for e in seen.values() if start <= e["ts"] < end)


def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    bus = open_bus(settings)
    bus.produce_many(TOPIC, [(e["doc_id"], schema.to_json_row(DOC_VIEW_EVENT, e)) for e in events])
    bus.close()


def served(settings: Settings) -> Counter:
    store = open_store(settings)
    try:
        return Counter({(r["doc_id"], r["day"]): r["views"] for r in store.scan(SERVING_TABLES["doc_view_counts"])})
    finally:
        store.close()


@pytest.mark.spark
def test_daily_view_counts_equal_the_brute_force(spark: Any, settings: Settings) -> None:
    from sixfold.docs.views import count_views, daily_view_counts

    events = view_events(300, 1)
    rows = events + events[:30]  # replays landed twice
    frame = spark.createDataFrame([tuple(r[n] for n in DOC_VIEW_EVENT.names) for r in rows],
                                  schema.spark_struct(DOC_VIEW_EVENT))
    got = Counter({(r["doc_id"], r["day"]): r["views"] for r in daily_view_counts(frame).toArrow().to_pylist()})
    assert got == brute(events, T0, T0 + timedelta(days=3)) and sum(got.values()) == 300

    publish(settings, events + events[:20])
    assert land_views(settings, idle_timeout_s=0.1).landed == 320
    store = open_store(settings)
    try:
        ledger = count_views(spark, settings, store, T0 + timedelta(days=1), T0 + timedelta(days=2))
    finally:
        store.close()
    expected = brute(events, T0 + timedelta(days=1), T0 + timedelta(days=2))
    assert served(settings) == expected and ledger["distinct_views"] == sum(expected.values())
    from sixfold.docs.views import served_counts

    store = open_store(settings)
    try:
        answer = served_counts(store, "101")
    finally:
        store.close()
    assert answer["total"] == expected[("101", T0 + timedelta(days=1))]


# ---- the DAGs -----------------------------------------------------------------------------------------
def load_dag(dag_id: str) -> Any:
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@pytest.mark.airflow
def test_docs_views_dag_counts_its_day_and_the_one_before(airflow: Settings) -> None:
    settings = airflow
    events = view_events(120, 2)
    publish(settings, events)
    land_views(settings, idle_timeout_s=0.1)
    dag = load_dag("docs_views")
    assert set(dag.tags) == {"docs"}
    run = dag.test(logical_date=T0 + timedelta(days=2, minutes=15))
    assert run.state == "success"
    start, end = run.data_interval_start, run.data_interval_end
    assert (start, end) == (T0 + timedelta(days=1, minutes=15), T0 + timedelta(days=2, minutes=15))
    # the job counts whole days: from the day before the interval's start through the day of its end
    assert served(settings) == brute(events, T0, T0 + timedelta(days=3))


@pytest.mark.airflow
def test_docs_compaction_dag_folds_every_document(airflow: Settings) -> None:
    settings = airflow
    with TestClient(create_app(settings)) as client:
        doc, me, _ = heavy_deletion_doc(client, rounds=5)
        expected = me.get(f"/v1/docs/{doc}").json()
    dag = load_dag("docs_compaction")
    run = dag.test(logical_date=datetime.now(UTC) - timedelta(days=1))
    assert run.state == "success"
    store = open_store(settings)
    try:
        assert store.query(UPDATES, {"doc_id": doc}) == [] and store.get(SNAPSHOTS, {"doc_id": doc})["version"] == 10
    finally:
        store.close()
    assert reload(settings, doc) == (expected["content"], expected["version"])
    assert compact_all(settings)["compacted"] == 0  # a rerun: nothing new to fold
