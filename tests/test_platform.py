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


def brute_force_suggestions(log: Path, half_life_s: float, threshold: float) -> tuple[int, dict[str, list]]:
    """Every region's ranked suggestions from the raw log, by the documented rule in plain Python: per
    15-minute window, `freq = previous * 0.5 ** (elapsed / half_life) + count` up to the last window,
    phrases with freq >= threshold, score rounded to 6 places, ranked by score desc then phrase asc.
    Returns the events counted and region -> [(phrase, score), ...]."""
    import json
    from collections import defaultdict
    from datetime import datetime

    from sixfold.typeahead.collection import normalize_query

    window_s = 15 * 60
    counts: dict[int, Counter] = defaultdict(Counter)
    counted = 0
    for line in log.read_text().splitlines():
        event = json.loads(line)
        query, region = normalize_query(event["query"]), normalize_query(event["region"])
        if not query or len(query) > 200 or not region or region == "global":
            continue
        window = int(datetime.fromisoformat(event["ts"]).timestamp()) // window_s
        counts[window][(region, query)] += 1
        counts[window][("global", query)] += 1
        counted += 1
    factor = 0.5 ** (window_s / half_life_s)
    freq: dict[tuple[str, str], float] = {}
    for window in range(min(counts), max(counts) + 1):  # every window, empty ones decay the state too
        freq = {key: f * factor for key, f in freq.items()}
        for key, n in counts[window].items():
            freq[key] = freq.get(key, 0.0) + n
    ranked: dict[str, list] = defaultdict(list)
    for (region, query), f in freq.items():
        if f >= threshold:
            ranked[region].append((query, round(f, 6)))
    return counted, {region: sorted(pairs, key=lambda ps: (-ps[1], ps[0])) for region, pairs in ranked.items()}


def assert_served_as_brute_force(client: TestClient, log: Path, settings: Settings) -> int:
    """Every region's answers for every 1- and 2-character prefix of its phrases (global: and for every
    phrase) are the brute force's, in order; returns the events the brute force counted."""
    import json

    from sixfold.typeahead.collection import normalize_query

    counted, oracle = brute_force_suggestions(log, settings.typeahead_half_life_s, settings.typeahead_threshold)

    def served(prefix: str, region: str | None = None) -> list[tuple[str, float]]:
        params = {"prefix": prefix, "k": 10, **({"region": region} if region else {})}
        answer = client.get("/v1/suggestions", params=params)
        assert answer.status_code == 200, answer.text
        return [(s["phrase"], s["score"]) for s in answer.json()["suggestions"]]

    assert set(oracle) == {"global", "us", "in", "gb", "de", "br"}
    for region in sorted(oracle):
        phrases = [p for p, _ in oracle[region]]
        prefixes = sorted({p[:n] for p in phrases for n in (1, 2)} | (set(phrases) if region == "global" else set()))
        for prefix in prefixes:
            got = served(prefix, None if region == "global" else region)
            want = [(p, score) for p, score in oracle[region] if p.startswith(prefix)][:10]
            assert [p for p, _ in got] == [p for p, _ in want], (region, prefix)
            assert [score for _, score in got] == pytest.approx([score for _, score in want], abs=1e-6)
    # the brute force against the raw counts: two hours of a 7-day half-life decay keep every score within
    # 1% of its count, so a phrase searched 3 times (>= 2.0 after decay) or more is a suggestion
    counts = Counter(normalize_query(json.loads(line)["query"]) for line in log.read_text().splitlines())
    scores = dict(oracle["global"])
    assert all(count * 0.99 <= scores[phrase] <= count for phrase, count in counts.items() if count >= 3)
    assert set(scores) <= set(counts)
    return counted


@pytest.mark.spark
def test_demo_runs_the_typeahead_pipeline_end_to_end(home):
    """After the demo, the served suggestions are exactly a brute force over the log it generated."""
    import re

    from sixfold.api.app import create_app

    proc = subprocess.run([SIXFOLD, "demo", "--no-serve", "--events", "3000"], capture_output=True, text=True,
                          timeout=900, env={**os.environ, "SIXFOLD_HOME": str(home)})
    assert proc.returncode == 0, proc.stderr[-2000:]
    settings = Settings.from_env()
    counted = assert_served_as_brute_force(TestClient(create_app(settings)), home / "var" / "demo" / "search-log.jsonl",
                                           settings)
    said = " ".join((proc.stdout + proc.stderr).split())  # the console may write to either
    landed = re.search(r"typeahead: published [\d,]+, landed ([\d,]+)", said)
    assert landed and int(landed.group(1).replace(",", "")) == counted == 3000
    page = TestClient(create_app(settings)).get("/typeahead")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]

    # every built system ran and left its output behind, and the summary names each one
    import json

    from schemas.records import LAKE_TABLES, SERVING_TABLES
    from sixfold.platform.lake import ArrowLake
    from sixfold.platform.store import open_store

    summary = json.loads((home / "var" / "demo" / "summary.json").read_text())
    assert {"typeahead", "feed", "crawler", "shortener", "chat"} <= set(summary)
    assert all(f"{system}" in said for system in ("typeahead", "feed", "crawler", "shortener", "chat"))
    lake = ArrowLake(settings)
    posts = lake.read(LAKE_TABLES["posts"]).to_pylist()
    assert len(posts) == summary["feed"]["posts"] > 0
    pages = lake.read(LAKE_TABLES["crawl_pages"]).to_pylist()
    assert len(pages) == summary["crawler"]["pages"] > 0
    assert lake.partitions(LAKE_TABLES["crawl_duplicates"])
    feed = summary["feed"]
    client = TestClient(create_app(settings))
    you = client.get(f"/v1/timeline/{feed['demo_user']}", headers={"Authorization": f"Bearer {feed['demo_token']}"})
    followed = set(feed["follows_of_demo_user"])
    # the oracle: the newest posts of the people the demo user follows, from the lake
    want = sorted((p["post_id"] for p in posts if p["author_id"] in followed), reverse=True)[:20]
    assert [p["post_id"] for p in you.json()["posts"]] == want
    store = open_store(settings)
    assert store.get(SERVING_TABLES["users"], {"user_id": feed["celebrity"]}) is not None
    store.close()
    assert client.get("/").status_code == 200
    # the shortener: every redirect landed once, and the most clicked link's stats are a count of the lake
    short = summary["shortener"]
    clicks = lake.read(LAKE_TABLES["url_clicks"]).to_pylist()
    assert len({c["click_id"] for c in clicks}) == len(clicks) == short["redirects"] == 1000
    assert short["top_stats"]["total"] == sum(c["key"] == short["top_key"] for c in clicks) > 0
    hop = client.get(f"/{short['top_key']}", follow_redirects=False)
    assert hop.status_code == 302 and hop.headers["location"].startswith("https://example.com/")
    # chat: the device that came back online got the three messages in order, and every tick reached Ann
    chat = summary["chat"]
    assert chat["messages"] == ["Are we still on for tonight?", "I booked the table for 8.",
                                "Bring the photos from the trip!"] and chat["history"] == 3
    assert chat["ticks_seen_live"] == ["delivered", "read"] * 3
    assert sorted(chat["laptop_caught_up"]) == sorted(["message", "delivered", "read"] * 3)
    # docs: two writers' 300 edits converged; the restore made a new version whose content is version 40's
    docs = summary["docs"]
    assert docs["converged"] and docs["version"] == 301 and docs["restored_version"] == 302
    owner = {"Authorization": f"Bearer {docs['owner_token']}"}
    assert client.get(f"/v1/docs/{docs['doc_id']}", headers=owner).json()["content"] == docs["content"]
    assert docs["history"][:2] == [302, 301]
