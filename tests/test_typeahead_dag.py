"""The `typeahead` DAG for two consecutive windows with `dag.test()`: the second run reflects the new window."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta, timezone

import pytest

from sixfold.platform.bus import open_bus
from sixfold.platform.settings import Settings

pytestmark = [pytest.mark.airflow, pytest.mark.spark]

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
W = timedelta(minutes=15)


def event(query: str, region: str, at: datetime, user: str = "u1") -> dict:
    return {"user_id": user, "query": query, "region": region, "ts": at.isoformat().replace("+00:00", "Z")}


def oracle(windows: list[list[dict]], half_life_s: float, threshold: float) -> dict[str, list[str]]:
    """Global top phrases (by decayed frequency, then phrase) after folding the windows in order."""
    state: dict[str, float] = {}
    for i, events in enumerate(windows):
        factor = 0.5 ** (W.total_seconds() / half_life_s) if i else 1.0
        state = {q: f * factor for q, f in state.items()}
        for q, n in Counter(" ".join(e["query"].lower().split()) for e in events).items():
            state[q] = state.get(q, 0.0) + n
    ranked = sorted((q for q, f in state.items() if f >= threshold), key=lambda q: (-state[q], q))
    return {"ra": [q for q in ranked if q.startswith("ra")]}


def test_two_consecutive_windows(airflow: Settings, monkeypatch) -> None:
    from sixfold.typeahead.serving import Suggester

    monkeypatch.setenv("SIXFOLD_TYPEAHEAD_THRESHOLD", "2")
    settings = Settings.from_env()
    first = [event("rain", "eu", T0 + timedelta(minutes=m)) for m in (1, 2, 3)] + \
            [event("radio", "us", T0 + timedelta(minutes=m)) for m in (4, 5)] + \
            [event("Random  Words", "us", T0 + timedelta(minutes=6))]  # once: below the threshold
    second = [event("radar", "eu", T0 + W + timedelta(minutes=m)) for m in (1, 2, 3, 4, 5)] + \
             [event("random words", "in", T0 + W + timedelta(minutes=m)) for m in (7, 8)]  # now over it
    bus = open_bus(settings)
    bus.produce_many("search-events", [(e["user_id"], e) for e in first + second])
    bus.produce_raw("search-events", b'{"user_id": "u1", "query": "   ", "region": "eu", "ts": "2026-03-02T09:01:00Z"}')

    from airflow.models.dagbag import DagBag

    from sixfold.platform.airflow_env import DAGS_FOLDER

    dag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False).dags["typeahead"]

    run = dag.test(logical_date=T0 + W)
    assert run.state == "success"
    suggester = Suggester(settings)
    got = [s["phrase"] for s in suggester.suggest("ra", 10)["suggestions"]]
    assert got == oracle([first], settings.typeahead_half_life_s, 2)["ra"] == ["rain", "radio"]

    run = dag.test(logical_date=T0 + 2 * W)
    assert run.state == "success"
    suggester.refresh()
    got = [s["phrase"] for s in suggester.suggest("ra", 10)["suggestions"]]
    assert got == oracle([first, second], settings.typeahead_half_life_s, 2)["ra"]
    # radar is new; random words crossed the threshold; radio decayed below it (2 x 0.999 < 2)
    assert got == ["radar", "random words", "rain"]

    # A rerun's bytes: test_typeahead_pipeline.py (the job's function, rerun in one session) and
    # tests/faults/test_spark_kill.py (this DAG's job through spark-submit, killed mid-write, rerun).
