"""Collection: normalisation, the one event check, POST /v1/search-events, landing, ingest, the generator."""

from __future__ import annotations

import os
import subprocess
import sys
import unicodedata
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

import orjson
import pytest
from accounts import Authed, signup
from hypothesis import given
from hypothesis import settings as hyp_settings
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.platform.bus import SpoolBus, open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store
from sixfold.typeahead.collection import (
    RECENT_GROUP,
    check_search_event,
    land_and_remember,
    land_search_events,
    normalize_query,
    publish,
    recent_ttl_s,
    remember_search_events,
)
from sixfold.typeahead.generate import generate_log, model, write_log_jsonl, write_log_parquet

REPO = Path(__file__).resolve().parents[1]
EVENTS = LAKE_TABLES["search_events"]
RECENT = SERVING_TABLES["user_recent_queries"]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
TS = NOW - timedelta(hours=2)  # recent enough to stay in the users' recent queries


def iso(dt: datetime) -> str:
    return dt.isoformat().replace("+00:00", "Z")


def event(**over) -> dict:
    return {"user_id": "u1", "query": "New  York", "region": "US", "ts": iso(TS)} | over


def dlq(settings: Settings) -> list[dict]:
    consumer = open_bus(settings).consumer("search-events.dlq", "test-reader")
    return [m.json() for m in consumer.poll(max_records=10_000, timeout_s=0.2)]


# ---- normalisation -----------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("raw, expected", [
    ("ｐｙｔｈｏｎ", "python"),                      # full-width (NFKC)
    ("Café", "café"),                                 # composed
    ("Cafe\u0301", "café"),                           # decomposed: the same phrase
    ("  new\tyork\n\ncity  ", "new york city"),       # tabs, newlines, ends
    ("new\u00a0york\u2003\u3000times", "new york times"),  # nbsp, em space, ideographic space
    ("ＮＥＷ　ＹＯＲＫ", "new york"),
    ("STRASSE", "strasse"),
    ("Straße", "straße"),                             # lower-casing keeps ß (as serving's prefixes do)
    ("İSTANBUL", "i̇stanbul"),                         # Turkish dotted capital I: lower-cased, stays stable
    ("ﬁnance", "finance"),                            # ligature
    ("①②", "12"),
    ("   ", ""),
])
def test_normalize_vectors(raw: str, expected: str) -> None:
    assert normalize_query(raw) == expected
    assert normalize_query(expected) == expected


@pytest.mark.unit
def test_composed_and_decomposed_are_one_phrase() -> None:
    assert normalize_query(unicodedata.normalize("NFD", "Crème Brûlée")) == normalize_query("crème brûlée")


@pytest.mark.unit
@hyp_settings(max_examples=500, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=60))
def test_normalize_is_idempotent_and_tidy(text: str) -> None:
    once = normalize_query(text)
    assert normalize_query(once) == once
    assert once == once.strip() and "  " not in once
    assert not any(ch.isspace() and ch != " " for ch in once)


# ---- the one check -----------------------------------------------------------------------------
@pytest.mark.unit
def test_check_gives_the_canonical_row() -> None:
    row = check_search_event(event(query="  ＣＡＦÉ   crème ", region=" EU "))
    assert row == {"user_id": "u1", "query": "café crème", "region": "eu", "ts": TS}


@pytest.mark.unit
@pytest.mark.parametrize("payload, reason", [
    (event(query=" \t\u3000 "), "query: empty after normalisation"),
    (event(query="x" * 201), "query: longer than 200 characters"),
    (event(query="ｘ" * 200), None),                   # 200 after NFKC: fine
    (event(query="a" + " " * 300 + "b"), None),        # the length counts after normalisation
    (event(query=7), "query: expected a string"),
    (event(ts="yesterday"), "ts:"),
    (event(region=""), "region"),
    ({"user_id": "u1", "query": "x", "region": "us"}, "ts: required"),
    (event(extra=1), "unknown field"),
    (["not", "an", "object"], "expected a JSON object"),
    (event(query="bad\x00byte"), r"control character U\+0000"),
])
def test_check_rejects_with_the_reason(payload, reason) -> None:
    if reason is None:
        check_search_event(payload)
        return
    with pytest.raises(ValueError, match=reason):
        check_search_event(payload)


@pytest.mark.unit
def test_recent_ttl_counts_from_the_event_time(settings: Settings) -> None:
    now = NOW.timestamp()
    assert recent_ttl_s(settings, NOW, now) == settings.typeahead_recent_ttl_s == 30 * 86_400
    assert recent_ttl_s(settings, NOW - timedelta(days=29), now) == 86_400
    assert recent_ttl_s(settings, NOW - timedelta(days=31), now) == 0


# ---- HTTP, bus, lake, serving store ------------------------------------------------------------
@pytest.fixture
def client(settings: Settings):
    from fastapi.testclient import TestClient

    from sixfold.api.app import create_app

    with TestClient(create_app(settings)) as c:
        yield c


@pytest.fixture
def alice(client) -> tuple[str, Authed]:
    """A signed-up user: (their user_id as search events carry it, a client acting as them)."""
    user_id, token = signup(client, "alice")
    return str(user_id), Authed(client, token)


def test_post_lands_in_its_window_and_the_users_recent_queries(alice, settings: Settings) -> None:
    me, client = alice
    at = TS.replace(minute=37, second=12)
    answer = client.post("/v1/search-events", json=event(user_id=me, query="  Weather\tTOMORROW", ts=iso(at)))
    assert answer.status_code == 202 and answer.json() == {"accepted": 1}
    batch = [event(user_id=me, query=f"q{i}", ts=iso(at + timedelta(minutes=i))) for i in range(3)]
    answer = client.post("/v1/search-events", json=batch)
    assert answer.status_code == 202 and answer.json() == {"accepted": 3}
    assert ArrowLake(settings).partitions(EVENTS) == []  # accepted, not landed synchronously

    report = land_search_events(settings, idle_timeout_s=0.2)
    assert (report.received, report.landed, report.rejected) == (4, 4, 0)
    window = f"dt={at:%Y-%m-%d}/window={at:%H}30"
    assert window in report.partitions
    start = at.replace(minute=30, second=0)
    rows = ArrowLake(settings).read(EVENTS, start, start + timedelta(minutes=15)).to_pylist()
    assert {"user_id": me, "query": "weather tomorrow", "region": "us", "ts": at} in rows
    assert land_search_events(settings, idle_timeout_s=0.2).received == 0  # committed: nothing replays

    store = open_store(settings)
    assert store.query(RECENT, {"user_id": me}) == []  # the recent queries are another group's work
    remembered = remember_search_events(settings, idle_timeout_s=0.2)
    assert (remembered.received, remembered.remembered, remembered.skipped) == (4, 4, 0)
    assert remember_search_events(settings, idle_timeout_s=0.2).received == 0  # committed
    recent = store.query(RECENT, {"user_id": me})
    store.close()
    sent = [("weather tomorrow", "us", at)] + [(f"q{i}", "us", at + timedelta(minutes=i)) for i in range(3)]
    assert [(r["query"], r["region"], r["ts"]) for r in recent] == sorted(sent, key=lambda r: (r[2], r[0]),
                                                                          reverse=True)


def test_post_acts_only_for_the_tokens_owner(client, alice, settings: Settings) -> None:
    me, as_alice = alice
    assert client.post("/v1/search-events", json=event(user_id=me)).status_code == 401
    forged = client.post("/v1/search-events", json=event(user_id=me), headers={"Authorization": "Bearer sfu_x.y"})
    assert forged.status_code == 401 and forged.headers["www-authenticate"].startswith("Bearer")
    other = as_alice.post("/v1/search-events", json=[event(user_id=me), event(user_id="12345")])
    assert other.status_code == 403 and "12345" in other.json()["error"]["message"]
    assert land_search_events(settings, idle_timeout_s=0.1).received == 0  # nothing of a refused batch


@pytest.mark.parametrize("body, reason", [
    (event(query="   "), "query: empty after normalisation"),
    (event(query="é" * 201), "query: longer than 200 characters"),
    (event(ts="not a time"), "ts:"),
    ({"query": "x"}, "user_id: required"),
    ([event(), event(region=None)], "events[1]: search_event: region: required"),
    ([], "non-empty list"),
])
def test_post_rejects_bad_events_with_the_reason(alice, settings: Settings, body, reason) -> None:
    answer = alice[1].post("/v1/search-events", json=body)
    assert answer.status_code == 422
    assert answer.json()["error"]["code"] == "invalid_request"
    assert reason in answer.json()["error"]["message"]
    assert land_search_events(settings, idle_timeout_s=0.1).received == 0  # all or nothing


def test_post_rejects_malformed_json_and_too_many_events(alice) -> None:
    client = alice[1]
    answer = client.post("/v1/search-events", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422 and "error" in answer.json()
    answer = client.post("/v1/search-events", json=[event()] * 1001)
    assert answer.status_code == 413 and "at most 1000" in answer.json()["error"]["message"]


def test_raw_poison_on_the_topic_goes_to_the_dlq_with_the_reason(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    publish(bus, [check_search_event(event(user_id="ok"))])
    bus.produce_raw("search-events", b"\xff{garbage", key="x")
    bus.produce("search-events", event(query=" \n "), key="u1")           # skipped the check: empty
    bus.produce("search-events", event(query="Ｌｏｕｄ   Café"), key="u2")  # skipped the check: normalised now
    report = land_search_events(settings, bus=bus, idle_timeout_s=0.2)
    assert report.received == report.landed + report.rejected == 4
    assert (report.landed, report.rejected) == (2, 2)
    letters = dlq(settings)
    assert [d["topic"] for d in letters] == ["search-events", "search-events"]
    assert "not JSON" in letters[0]["reason"] and letters[0]["payload"].endswith("{garbage")
    assert "query: empty after normalisation" in letters[1]["reason"]
    queries = set(ArrowLake(settings).read(EVENTS).column("query").to_pylist())
    assert queries == {"new york", "loud café"}


def test_a_replayed_batch_lands_once(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    publish(bus, [check_search_event(event(user_id=f"u{i}", query=f"q{i}")) for i in range(5)])
    first = land_search_events(settings, bus=bus, group="g1", idle_timeout_s=0.2)
    again = land_search_events(settings, bus=bus, group="g2", idle_timeout_s=0.2)  # as if never committed
    assert first.landed == again.landed == 5
    assert ArrowLake(settings).read(EVENTS).num_rows == 5


def recent_rows(settings: Settings, users: list[str]) -> list[tuple]:
    store = open_store(settings)
    try:
        return sorted((r["user_id"], r["query"], r["region"], r["ts"]) for u in users for r in store.query(RECENT, {"user_id": u}))
    finally:
        store.close()


def test_recent_queries_skip_poison_once_and_a_replayed_batch_changes_nothing(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    good = [event(user_id=f"u{i % 3}", query=f"Q {i}", ts=iso(TS + timedelta(seconds=i))) for i in range(7)]
    publish(bus, [check_search_event(e) for e in good])
    bus.produce_raw("search-events", b"\xff{garbage", key="x")
    bus.produce("search-events", event(query=" \n "), key="u1")
    old = event(user_id="u0", query="long ago", ts=iso(NOW - timedelta(days=400)))  # past the TTL: not kept
    bus.produce("search-events", old, key="u0")
    # the oracle: each good event's normalised (user, query, region, ts), written here by hand
    expected = sorted((f"u{i % 3}", f"q {i}", "us", TS + timedelta(seconds=i)) for i in range(7))

    first = remember_search_events(settings, bus=bus, idle_timeout_s=0.2)
    assert (first.received, first.remembered, first.skipped) == (10, 7, 2)
    assert recent_rows(settings, ["u0", "u1", "u2"]) == expected
    assert dlq(settings) == []  # the landing's group dead-letters poison, not this one
    again = remember_search_events(settings, bus=bus, group="replay", idle_timeout_s=0.2)  # as if never committed
    assert again.remembered == 7 and recent_rows(settings, ["u0", "u1", "u2"]) == expected
    assert remember_search_events(settings, bus=bus, group=RECENT_GROUP, idle_timeout_s=0.2).received == 0


def test_land_and_remember_runs_both_groups_and_each_sees_every_event(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    rows = [check_search_event(event(user_id=f"u{i % 5}", query=f"term {i}", ts=iso(TS + timedelta(seconds=i))))
            for i in range(2_000)]
    publish(bus, rows)
    landed, remembered = land_and_remember(settings, idle_timeout_s=0.3)
    assert (landed.landed, remembered.remembered) == (2_000, 2_000)
    assert ArrowLake(settings).read(EVENTS).num_rows == 2_000
    assert recent_rows(settings, [f"u{i}" for i in range(5)]) == sorted(
        (r["user_id"], r["query"], r["region"], r["ts"]) for r in rows)


def test_serve_runs_the_recent_queries_consumer_beside_the_landing() -> None:
    from sixfold.live import all_consumers

    groups = {c.name: c.group for c in all_consumers()}
    assert groups["search-events-landing"] != groups["search-events-recent"] == RECENT_GROUP


# ---- sixfold typeahead ingest --------------------------------------------------------------------
def run_cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"}
    code = "from sixfold.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=120, cwd=home)


def test_ingest_cli_lands_good_lines_and_dead_letters_bad_ones(home: Path, settings: Settings) -> None:
    lines = [orjson.dumps(event(user_id=f"u{i}", query=f"Query {i % 3}")).decode() for i in range(6)]
    lines += ["{broken json", orjson.dumps(event(query="")).decode(), "",
              orjson.dumps(event(query="y" * 300)).decode()]
    path = home / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    done = run_cli(home, "typeahead", "ingest", str(path))
    assert done.returncode == 0, done.stderr
    assert "in 9" in done.stdout and "published 6" in done.stdout and "rejected 3" in done.stdout
    assert "landed 6" in done.stdout and "recent queries 6" in done.stdout
    assert ArrowLake(settings).read(EVENTS).num_rows == 6
    assert len(recent_rows(settings, [f"u{i}" for i in range(6)])) == 6
    reasons = [d["reason"] for d in dlq(settings)]
    assert reasons[0].startswith("line 7: not JSON")
    assert reasons[1].startswith("line 8:") and "empty after normalisation" in reasons[1]
    assert reasons[2].startswith("line 10:") and "longer than 200" in reasons[2]


def test_ingest_cli_missing_file_is_a_clear_error(home: Path) -> None:
    done = run_cli(home, "typeahead", "ingest", str(home / "nope.jsonl"))
    assert done.returncode == 2
    assert "no such file" in done.stderr


# ---- the generator -------------------------------------------------------------------------------
START, END = "2026-11-26T00:00:00Z", "2026-11-27T00:00:00Z"


@pytest.fixture(scope="module")
def log() -> list[dict]:
    return list(generate_log(30_000, START, END, seed=11))


@pytest.mark.unit
def test_generator_is_deterministic_per_seed(log: list[dict]) -> None:
    assert list(generate_log(2_000, START, END, seed=11)) == list(generate_log(2_000, START, END, seed=11))
    assert list(generate_log(2_000, START, END, seed=11)) != list(generate_log(2_000, START, END, seed=12))
    assert len(log) == 30_000


@pytest.mark.unit
def test_generated_events_pass_the_check_and_stay_in_range(log: list[dict]) -> None:
    rows = [check_search_event(e) for e in log]
    start, end = datetime.fromisoformat(START), datetime.fromisoformat(END)
    assert all(start <= r["ts"] < end for r in rows)
    assert [r["ts"] for r in rows] == sorted(r["ts"] for r in rows)
    assert {len(r["query"].split()) for r in rows} == {1, 2, 3, 4}
    variants = [e["query"] for e in log if normalize_query(e["query"]) != e["query"]]
    assert 0.01 < len(variants) / len(log) < 0.1  # some typed differently, each normalising to a phrase
    phrases = set(model(30_000, START, END, seed=11).phrases)
    assert {normalize_query(q) for q in variants} <= phrases


@pytest.mark.unit
def test_generated_popularity_is_zipf_like(log: list[dict]) -> None:
    counts = sorted(Counter(normalize_query(e["query"]) for e in log).values(), reverse=True)
    assert counts[0] >= 20 * counts[len(counts) // 2]
    assert len(counts) > 500


@pytest.mark.unit
def test_regions_trend_differently(log: list[dict]) -> None:
    by_region: dict[str, Counter] = {}
    for e in log:
        by_region.setdefault(e["region"], Counter())[normalize_query(e["query"])] += 1
    assert len(by_region) == 5
    tops = {region: {q for q, _ in c.most_common(10)} for region, c in by_region.items()}
    regions = sorted(tops)
    for i, a in enumerate(regions):
        for b in regions[i + 1:]:
            assert tops[a] != tops[b]
            assert tops[a] & tops[b]  # but the globally popular phrases are popular everywhere


@pytest.mark.unit
def test_parquet_and_jsonl_writers_hold_the_same_log(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    n = 3_000
    assert write_log_parquet(tmp_path / "log.parquet", n, START, END, seed=5) == n
    assert write_log_jsonl(tmp_path / "log.jsonl", n, START, END, seed=5) == n
    table = pq.read_table(tmp_path / "log.parquet")
    lines = [orjson.loads(line) for line in (tmp_path / "log.jsonl").read_bytes().splitlines()]
    assert table.column("query").to_pylist() == [r["query"] for r in lines]
    assert [iso(t) for t in table.column("ts").to_pylist()] == [
        iso(check_search_event(r)["ts"]) for r in lines]
    assert lines == list(generate_log(n, START, END, seed=5))


def test_generate_cli_writes_the_requested_rows(home: Path) -> None:
    out = home / "log.parquet"
    done = run_cli(home, "typeahead", "generate", "--rows", "1000", "--out", str(out), "--start", START,
                   "--hours", "2", "--seed", "3")
    assert done.returncode == 0, done.stderr
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert table.num_rows == 1000
    assert min(table.column("ts").to_pylist()) >= datetime.fromisoformat(START)


# ---- a whole batch checked at once ---------------------------------------------------------------------
_T = datetime(2026, 12, 2, 10, 30, tzinfo=timezone.utc)
_MESSAGES = st.one_of(
    # what the doors publish (the batch checker's fast path)
    st.builds(lambda u, q, r, ms: orjson.dumps({"user_id": u, "query": q, "region": r,
                                                 "ts": (_T + timedelta(milliseconds=ms)).isoformat().replace("+00:00", "Z")}),
              st.sampled_from(["u1", "user-2", "a b"]), st.sampled_from(["new york", "news", "c++ 20", "x"]),
              st.sampled_from(["us", "gb", "unknown"]), st.integers(0, 5_000)),
    # good, but not in that form: case, spaces, non-ASCII, another offset, other key order, three digits
    st.sampled_from([b'{"user_id":" u3 ","query":"New  York","region":"US","ts":"2026-12-02T12:30:00+02:00"}',
                     b'{"ts":"2026-12-02T10:30:00.123Z","region":"fr","query":"caf\xc3\xa9 cr\xc3\xa8me","user_id":"u4"}',
                     b'{"user_id":"u5","query":"\\u0130stanbul","region":"tr","ts":"2026-12-02T10:30:00.123456Z"}',
                     b'{"user_id":"u6","query":" padded ","region":"us","ts":"2026-12-02T10:30:00Z"}']),
    # bad: each must come back with check_search_event's own reason
    st.sampled_from([b'not json', b'[1, 2]', b'{"user_id":"u7","query":"q","region":"global","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u8","query":"   ","region":"us","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u9","query":"q","region":"us"}',
                     b'{"user_id":10,"query":"q","region":"us","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u11","query":"q","region":"us","ts":"2026-12-02T10:30:00"}',
                     b'{"user_id":"u12","query":"q","region":"us","ts":"2026-12-02T10:30:00Z","extra":1}',
                     b'{"user_id":"u13","query":"tab\\there","region":"us","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u14","query":"' + b"q" * 201 + b'","region":"us","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u15","query":"bell\\u0007","region":"us","ts":"2026-12-02T10:30:00Z"}',
                     b'{"user_id":"u16","query":"q","region":"us","ts":"2026-13-02T10:30:00Z"}']),
)


@pytest.mark.unit
@hyp_settings(max_examples=150, deadline=None)
@given(st.lists(_MESSAGES, max_size=40))
def test_a_batch_checked_at_once_equals_each_message_checked_alone(raws) -> None:
    """The oracle is `check_search_event` of each message on its own: the same good rows in the same order,
    the same bad messages with the same reasons, whichever path (Arrow's kernels or Python) each took."""
    from batchcheck import assert_same_as_one_at_a_time

    from sixfold.typeahead.collection import check_search_batch

    assert_same_as_one_at_a_time(raws, check_search_batch, check_search_event)


@pytest.mark.unit
def test_recent_queries_from_a_checked_table_equal_the_row_by_row_write(tmp_path) -> None:
    """`remember_recent_table` (the consumer's path: TTLs, order and writes column by column) against
    `remember_recent` of the same events one dict each, into two stores: the same rows, the same expiry."""
    from sixfold.platform.store import SQLiteStore
    from sixfold.typeahead.collection import check_search_batch, remember_recent, remember_recent_table

    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path)})
    now = _T.timestamp() + 3600
    ttl = settings.typeahead_recent_ttl_s
    raws = [orjson.dumps({"user_id": f"u{i % 7}", "query": f"q{i % 11}", "region": "us",
                          "ts": (_T - timedelta(seconds=ttl) + timedelta(seconds=97 * i)).isoformat().replace(
                              "+00:00", "Z")}) for i in range(400)]  # the oldest past their TTL already
    table, _positions, bad = check_search_batch(raws)
    assert bad == []
    clock = {"now": now}
    stores = [SQLiteStore(tmp_path / f"s{i}.sqlite3", clock=lambda: clock["now"]) for i in range(2)]
    written = remember_recent_table(stores[0], settings, table, now=now)
    assert written == remember_recent(stores[1], settings, table.to_pylist(), now=now) > 0
    assert written < len(raws)  # some were too old to keep
    seen = []
    for later in (now, now + 15_000, now + 40_000):  # the same rows, expiring at the same times
        clock["now"] = later
        rows = [sorted(map(str, store.scan(SERVING_TABLES["user_recent_queries"]))) for store in stores]
        assert rows[0] == rows[1]
        seen.append(len(rows[0]))
    assert seen[0] == written and seen[0] > seen[1] > seen[2] == 0
