"""Settings, the CLI and the API shell: bad configuration fails early with the fix, errors have one shape."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from sixfold.platform.settings import Settings, SettingsError

SIXFOLD = str(Path(sys.executable).with_name("sixfold"))


@pytest.mark.unit
@pytest.mark.parametrize(
    "env, message",
    [
        ({"SIXFOLD_PROFILE": "prod"}, "SIXFOLD_PROFILE='prod' is not a profile; set it to one of embedded, cluster"),
        ({"SIXFOLD_KAFKA_BOOTSTRAP": "127.0.0.1:http"}, "SIXFOLD_KAFKA_BOOTSTRAP='127.0.0.1:http' has a port that is not a number"),
        ({"SIXFOLD_CASSANDRA_HOST": ":9042"}, "SIXFOLD_CASSANDRA_HOST=':9042' has no host"),
        ({"SIXFOLD_CASSANDRA_HOST": "db:70000"}, "outside 1..65535"),
        ({"SIXFOLD_SPARK_MASTER": "yarn"}, "expected local[N|*] or spark://HOST:PORT"),
        ({"SIXFOLD_CASSANDRA_KEYSPACE": "my-space"}, "must be a plain identifier"),
    ],
)
def test_bad_settings_say_what_to_change(env, message):
    with pytest.raises(SettingsError) as info:
        Settings.from_env(env)
    assert message in str(info.value)


@pytest.mark.unit
def test_profiles_default_sensibly(tmp_path):
    embedded = Settings.from_env({"SIXFOLD_HOME": str(tmp_path)})
    assert (embedded.profile, embedded.spark_master, embedded.lake_dir) == ("embedded", "local[*]", tmp_path / "var" / "lake")
    cluster = Settings.from_env({"SIXFOLD_PROFILE": "Cluster", "SIXFOLD_KAFKA_BOOTSTRAP": "kafka"})
    assert (cluster.profile, cluster.kafka_bootstrap, cluster.spark_master) == ("cluster", ("kafka", 9092), "spark://127.0.0.1:7077")


@pytest.mark.unit
def test_cli_refuses_an_unknown_profile_at_startup(tmp_path):
    env = {**os.environ, "SIXFOLD_PROFILE": "bogus", "SIXFOLD_HOME": str(tmp_path)}
    proc = subprocess.run([SIXFOLD, "services", "status"], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "SIXFOLD_PROFILE='bogus'" in proc.stderr and "embedded, cluster" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.unit
def test_cli_help_explains_every_command():
    proc = subprocess.run([SIXFOLD, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0
    for command in ("services", "demo", "serve", "bench", "airflow"):
        assert command in proc.stdout
    unknown = subprocess.run([SIXFOLD, "bench", "nosuch"], capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "no benchmark for 'nosuch'" in unknown.stderr


@pytest.mark.unit
def test_api_errors_have_one_shape(settings):
    from sixfold.api.app import create_app

    client = TestClient(create_app(settings), raise_server_exceptions=False)
    health = client.get("/v1/health")
    assert health.status_code == 200 and health.json()["profile"] == "embedded"
    missing = client.get("/v1/nope")
    assert missing.status_code == 404
    assert missing.json() == {"error": {"code": "not_found", "message": "Not Found"}}
    assert client.get("/openapi.json").json()["info"]["title"] == "Sixfold"


@pytest.mark.spark
def test_demo_runs_the_typeahead_pipeline_end_to_end(home):
    """After the demo, the served suggestions agree with a brute-force count of the log it generated."""
    import json

    from sixfold.api.app import create_app
    from sixfold.typeahead.collection import normalize_query

    proc = subprocess.run([SIXFOLD, "demo", "--no-serve", "--events", "3000"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "SIXFOLD_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    counts: Counter = Counter()
    for line in (home / "var" / "demo" / "search-log.jsonl").read_text().splitlines():
        counts[normalize_query(json.loads(line)["query"])] += 1
    client = TestClient(create_app(Settings.from_env()))
    # Two hours of a 7-day half-life decay keeps every score within 1% of its raw count.
    for phrase, count in counts.most_common(5):
        answer = client.get("/v1/suggestions", params={"prefix": phrase, "k": 10})
        assert answer.status_code == 200
        scores = {s["phrase"]: s["score"] for s in answer.json()["suggestions"]}
        assert phrase in scores and count * 0.99 <= scores[phrase] <= count
    top, runner_up = counts.most_common(2)
    if top[1] > 1.05 * runner_up[1]:
        first = client.get("/v1/suggestions", params={"prefix": top[0][0]}).json()["suggestions"][0]
        assert first["phrase"] == top[0]
    page = client.get("/typeahead")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
