"""Click analytics: landing `url-clicks` into the lake, the hourly Spark counts, the served rows and
`click_stats`, each against a brute force in plain Python; the `url_clicks` and `url_expiry` DAGs
run with `dag.test()`."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from schemas.records import LAKE_TABLES, SERVING_TABLES, URL_CLICK, URL_CLICK_EVENT
from sixfold.platform import schema
from sixfold.platform.airflow_env import DAGS_FOLDER
from sixfold.platform.bus import open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store
from sixfold.shortener.clicks import TOPIC, land_clicks, landed_click, referrer_host, ua_family
from sixfold.shortener.stats import click_stats

CLICKS = LAKE_TABLES["url_clicks"]
COUNTS = LAKE_TABLES["url_click_counts"]
SERVING_COUNTS = SERVING_TABLES["url_click_counts"]
T0 = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)

# Real User-Agent strings and the family ua-parser gives each.
CHROME = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
          "Chrome/120.0.0.0 Safari/537.36")
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
MOBILE_SAFARI = ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
                 "Version/17.1 Mobile/15E148 Safari/604.1")
EDGE = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 "
        "Safari/537.36 Edg/120.0.2210.91")
CHROME_MOBILE = ("Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
                 "Chrome/120.0.6099.144 Mobile Safari/537.36")
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
CURL = "curl/8.5.0"
AGENTS = {CHROME: "Chrome", FIREFOX: "Firefox", MOBILE_SAFARI: "Mobile Safari", EDGE: "Edge",
          CHROME_MOBILE: "Chrome Mobile", GOOGLEBOT: "Googlebot", CURL: "curl", "Wget/1.21.4": "Wget",
          "python-httpx/0.27.0": "Other", "": "Other", None: "Other"}
REFERRERS = [None, "", "news.ycombinator.com", "T.CO", "www.google.com", "mail.example.org"]


# ---- normalisation --------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize("user_agent, family", list(AGENTS.items()))
def test_ua_family_of_real_user_agents(user_agent: str | None, family: str) -> None:
    assert ua_family(user_agent) == family


@pytest.mark.unit
@pytest.mark.parametrize("referrer, host", [
    (None, "(direct)"), ("", "(direct)"), ("  ", "(direct)"),
    ("News.YCombinator.com", "news.ycombinator.com"),
    ("t.co.", "t.co"),                                      # the root's trailing dot
    ("example.com:8080", "example.com"),                    # one site, one referrer, whatever the port
    ("https://www.Google.com/search?q=x", "www.google.com"),  # a whole URL a producer did not cut
])
def test_referrer_host(referrer: str | None, host: str) -> None:
    assert referrer_host(referrer) == host


@pytest.mark.unit
def test_landed_click_resolves_and_rejects_empty_ids() -> None:
    event = schema.validate(URL_CLICK_EVENT, {"click_id": "c1", "key": "abc123", "ts": "2026-03-04T09:15:00Z",
                                              "referrer_host": "T.co", "user_agent": FIREFOX})
    assert landed_click(event) == {"click_id": "c1", "key": "abc123", "ts": T0 + timedelta(minutes=15),
                                   "referrer_host": "t.co", "ua_family": "Firefox"}
    with pytest.raises(ValueError, match="click_id: empty"):
        landed_click({**event, "click_id": " "})


# ---- generated clicks and the brute force --------------------------------------------------------
def generate_events(n: int, start: datetime, hours: int, seed: int) -> list[dict[str, Any]]:
    """Click events as the API emits them: several keys, hours, referrers and agents."""
    rng = random.Random(seed)
    keys = ["abc123", "Zx9kLm", "promo", "q7Yh2w"]
    return [{"click_id": f"{seed:02d}{i:06d}{rng.getrandbits(32):08x}", "key": rng.choice(keys),
             "ts": start + timedelta(seconds=rng.randrange(hours * 3600), milliseconds=rng.randrange(1000)),
             "referrer_host": rng.choice(REFERRERS), "user_agent": rng.choice(list(AGENTS))}
            for i in range(n)]


def landed(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The brute force's landing: what each event should become in the lake, by hand."""
    direct = {None: "(direct)", "": "(direct)"}
    return [{"click_id": e["click_id"], "key": e["key"], "ts": e["ts"],
             "referrer_host": direct.get(e["referrer_host"], (e["referrer_host"] or "").lower()),
             "ua_family": AGENTS[e["user_agent"]]} for e in events]


def brute_counts(clicks: list[dict[str, Any]], start: datetime, end: datetime) -> Counter:
    """(key, hour, referrer_host, ua_family) -> distinct clicks in [start, end)."""
    seen: dict[str, dict[str, Any]] = {}
    for c in clicks:
        seen.setdefault(c["click_id"], c)
    return Counter((c["key"], c["ts"].replace(minute=0, second=0, microsecond=0), c["referrer_host"], c["ua_family"])
                   for c in seen.values() if start <= c["ts"] < end)


def brute_stats(counts: Counter, key: str) -> dict[str, Any]:
    hourly, referrers, browsers = Counter(), Counter(), Counter()
    for (k, hour, ref, family), n in counts.items():
        if k == key:
            hourly[hour] += n
            referrers[ref] += n
            browsers[family] += n
    ranked = lambda c, name: [{name: v, "clicks": n} for v, n in sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))]  # noqa: E731
    return {"key": key, "total": sum(hourly.values()),
            "hourly": [{"hour": h.isoformat().replace("+00:00", "Z"), "clicks": n} for h, n in sorted(hourly.items())],
            "referrers": ranked(referrers, "host"), "browsers": ranked(browsers, "family")}


def publish(settings: Settings, events: list[dict[str, Any]]) -> None:
    bus = open_bus(settings)
    try:
        bus.produce_many(TOPIC, [(e["key"], schema.to_json_row(URL_CLICK_EVENT, e)) for e in events])
    finally:
        bus.close()


def lake_clicks(settings: Settings) -> list[dict[str, Any]]:
    return sorted(ArrowLake(settings).read(CLICKS).to_pylist(), key=lambda r: r["click_id"])


def dlq(settings: Settings) -> list[dict[str, Any]]:
    consumer = open_bus(settings).consumer(f"{TOPIC}.dlq", "test-reader")
    return [m.json() for m in consumer.poll(max_records=10_000, timeout_s=0.2)]


# ---- a whole batch checked at once ----------------------------------------------------------------------
_CLICKS = st.one_of(
    # what the redirects emit (`emit.click_event`, the batch checker's fast path)
    st.builds(lambda n, ms, ref, agent: orjson.dumps(schema.to_json_row(URL_CLICK_EVENT, {
        "click_id": f"{n:024x}", "key": f"k{n % 7}Ab", "ts": T0 + timedelta(milliseconds=ms),
        "referrer_host": ref, "user_agent": agent})),
        st.integers(0, 2**64), st.integers(0, 10**7), st.sampled_from(REFERRERS + ["Exämple.org.", "h:8080"]),
        st.sampled_from(list(AGENTS) + ["Mozilla/5.0 ünïcode", "x" * 512])),
    # good, but not in that form: other key order, an offset, microseconds, a field left out
    st.sampled_from([b'{"user_agent":null,"referrer_host":null,"ts":"2026-03-04T09:00:00Z","key":"abc","click_id":"c1"}',
                     b'{"click_id":"c2","key":"abc","ts":"2026-03-04T11:00:00.5+02:00","referrer_host":"a.b","user_agent":"curl/8"}',
                     b'{"click_id":"c3","key":"abc","ts":"2026-03-04T09:00:00.123456Z","referrer_host":null,"user_agent":null}',
                     b'{"click_id":"c4","key":"abc","ts":"2026-03-04T09:00:00Z"}',
                     b'{"click_id":" c5 ","key":"abc","ts":"2026-03-04T09:00:00Z"}',
                     b'{"click_id":"c6","key":"\u00e9t\u00e9","ts":"2026-03-04T09:00:00Z"}']),
    # bad: each must come back with `check_click`'s own reason
    st.sampled_from([b'not json', b'[1]', b'{"click_id":"  ","key":"abc","ts":"2026-03-04T09:00:00Z"}',
                     b'{"click_id":"c7","key":"abc"}', b'{"click_id":"c8","key":7,"ts":"2026-03-04T09:00:00Z"}',
                     b'{"click_id":"' + b"c" * 33 + b'","key":"abc","ts":"2026-03-04T09:00:00Z"}',
                     b'{"click_id":"c9","key":"abc","ts":"2026-13-04T09:00:00Z"}',
                     b'{"click_id":"c10","key":"abc","ts":"2026-03-04T09:00:00Z","extra":1}',
                     b'{"click_id":"c11","key":"abc","ts":"2026-03-04T09:00:00Z","user_agent":"' + b"u" * 513 + b'"}',
                     b'{"click_id":"c12","key":"abc","ts":"2026-03-04T09:00:00Z","referrer_host":"\ud800"}']),
)


@pytest.mark.unit
@hsettings(max_examples=150, deadline=None)
@given(st.lists(_CLICKS, max_size=40))
def test_a_click_batch_checked_at_once_equals_each_click_checked_alone(raws) -> None:
    """The oracle is `landed_click` of each message validated on its own, as the bus decodes it: the same
    rows in the same order, the same bad messages with the same reasons, whichever path each took."""
    from batchcheck import assert_same_as_one_at_a_time

    from sixfold.shortener.clicks import check_click_batch

    assert_same_as_one_at_a_time(raws, check_click_batch,
                                 lambda payload: landed_click(schema.validate(URL_CLICK_EVENT, payload)))


@pytest.mark.unit
@hsettings(max_examples=300, deadline=None)
@given(st.floats(0, 4e9), st.sampled_from(REFERRERS + ["https://a.example/x", "not a url"]),
       st.sampled_from(list(AGENTS) + ["x" * 600]))
def test_the_emitters_message_is_the_events_json_form(at, referer, agent) -> None:
    """`_message`, written out for speed, against the generic path: the event record's JSON form."""
    from sixfold.shortener.emit import EVENT, _message, click_event

    click = ("c" * 24, "k1", at, referer, agent)
    assert _message(click) == ("k1", schema.to_json_row(EVENT.record, click_event(*click)))


@pytest.mark.unit
def test_clicks_as_the_redirects_emit_them_take_no_python_check(monkeypatch) -> None:
    """The fast path is taken: a batch of emitted clicks never reaches the one-message check."""
    from sixfold.shortener import clicks
    from sixfold.shortener.emit import _message

    def refuse(payload: Any) -> dict[str, Any]:
        raise AssertionError(f"checked one at a time: {payload}")

    monkeypatch.setattr(clicks, "check_click", refuse)
    sent = {None: "(direct)", "": "(direct)", "https://news.ycombinator.com/item?id=1": "news.ycombinator.com",
            "https://T.CO/x": "t.co", "http://www.google.com/": "www.google.com",
            "https://mail.example.org:8443/inbox": "mail.example.org"}  # Referer headers: the host each counts as
    pairs = list(zip(list(sent) * 50, list(AGENTS) * 30))  # 300 clicks
    raws = [orjson.dumps(_message((f"{i:024x}", "k1", T0.timestamp() + i / 7, ref, agent))[1])
            for i, (ref, agent) in enumerate(pairs)]
    table, positions, bad = clicks.check_click_batch(raws)
    assert bad == [] and positions.to_pylist() == list(range(len(raws)))
    assert table["ua_family"].to_pylist() == [AGENTS[agent] for _, agent in pairs]
    assert table["referrer_host"].to_pylist() == [sent[ref] for ref, _ in pairs]
    assert table["ts"].to_pylist() == [T0 + timedelta(milliseconds=int(i / 7 * 1000)) for i in range(len(pairs))]


# ---- landing --------------------------------------------------------------------------------------
@pytest.mark.unit
def test_landing_resolves_every_click_and_rejects_bad_events(settings: Settings) -> None:
    events = generate_events(120, T0, 3, seed=1)
    publish(settings, events)
    bus = open_bus(settings)
    bus.produce_raw(TOPIC, b"not json", key="x")
    bus.produce(TOPIC, {"click_id": "c-no-key", "ts": "2026-03-04T09:00:00Z"}, key="x")
    bus.produce(TOPIC, {"click_id": "c" * 33, "key": "abc123", "ts": "2026-03-04T09:00:00Z"}, key="abc123")
    bus.produce(TOPIC, {"click_id": "c-extra", "key": "abc123", "ts": "2026-03-04T09:00:00Z", "ip": "1.2.3.4"},
                key="abc123")
    bus.close()

    report = land_clicks(settings, idle_timeout_s=0.1)
    assert (report.received, report.landed, report.rejected) == (124, 120, 4)
    assert report.partitions == {"dt=2026-03-04/hour=09", "dt=2026-03-04/hour=10", "dt=2026-03-04/hour=11"}
    assert lake_clicks(settings) == sorted(landed(events), key=lambda r: r["click_id"])
    reasons = [d["reason"] for d in dlq(settings)]
    assert len(reasons) == 4
    for expected in ("JSON", "key: required", "click_id: longer than 32", "unknown field"):
        assert any(expected in r for r in reasons), (expected, reasons)


@pytest.mark.unit
def test_a_replayed_batch_collapses(settings: Settings) -> None:
    events = generate_events(60, T0, 2, seed=2)
    publish(settings, events)
    assert land_clicks(settings, idle_timeout_s=0.1).landed == 60
    first = lake_clicks(settings)
    files = {p: p.read_bytes() for p in sorted(ArrowLake(settings).table_dir(CLICKS).rglob("*.parquet"))}

    publish(settings, events[:25])  # the API resent some (a producer retry)
    assert land_clicks(settings, idle_timeout_s=0.1).landed == 25
    # a consumer group that never committed: the whole topic again (a crash before the commit)
    assert land_clicks(settings, group="another-landing", idle_timeout_s=0.1).received == 85
    assert lake_clicks(settings) == first
    assert {p: p.read_bytes() for p in files} == files  # the same bytes, not only the same rows

    publish(settings, [{**events[0], "click_id": "a-new-click"}])  # same key, time, referrer, agent
    land_clicks(settings, idle_timeout_s=0.1)
    assert len(lake_clicks(settings)) == 61  # a distinct click is never collapsed into another


@pytest.mark.unit
def test_the_shortener_consumer_runs_in_serve(settings: Settings) -> None:
    from sixfold.live import all_consumers

    assert "url-clicks-landing" in {c.name for c in all_consumers()}


# ---- Spark: the hourly counts ---------------------------------------------------------------------
def clicks_frame(spark: Any, rows: list[dict[str, Any]]) -> Any:
    return spark.createDataFrame([tuple(r[n] for n in URL_CLICK.names) for r in rows], schema.spark_struct(URL_CLICK))


@pytest.mark.spark
def test_hourly_counts_equal_the_brute_force(spark: Any) -> None:
    from sixfold.shortener.click_job import hourly_click_counts

    clicks = landed(generate_events(400, T0, 5, seed=3))
    rng = random.Random(4)
    replays = rng.sample(clicks, 60)  # duplicates the landing could not merge (landed twice, in two hours)
    rows = clicks + replays + [{**r, "ts": r["ts"] + timedelta(hours=1)} for r in replays[:20]]
    got = Counter({(r["key"], r["hour"], r["referrer_host"], r["ua_family"]): r["clicks"]
                   for r in hourly_click_counts(clicks_frame(spark, rows)).toArrow().to_pylist()})
    # the earliest row of a click_id is the click (the hour-late copies count in their first hour)
    assert got == brute_counts(sorted(rows, key=lambda r: r["ts"]), T0, T0 + timedelta(hours=6))
    assert sum(got.values()) == len(clicks)
    assert len({k for k, *_ in got}) == 4 and len({h for _k, h, *_ in got}) == 5


def served(settings: Settings) -> Counter:
    store = open_store(settings)
    try:
        return Counter({(r["key"], r["hour"], r["referrer_host"], r["ua_family"]): r["clicks"]
                        for r in store.scan(SERVING_COUNTS)})
    finally:
        store.close()


def lake_counts(settings: Settings) -> Counter:
    return Counter({(r["key"], r["hour"], r["referrer_host"], r["ua_family"]): r["clicks"]
                    for r in ArrowLake(settings).read(COUNTS).to_pylist()})


@pytest.mark.spark
def test_count_clicks_serves_the_brute_force_and_reruns_the_same(spark: Any, settings: Settings) -> None:
    from sixfold.shortener.click_job import count_clicks

    events = generate_events(300, T0, 5, seed=5)  # 09:00 .. 14:00
    publish(settings, events + events[:40])  # replays on the bus collapse in the landing
    land_clicks(settings, idle_timeout_s=0.1)
    clicks = landed(events)
    lake = ArrowLake(settings)
    start, end = T0 + timedelta(hours=1), T0 + timedelta(hours=3)  # [10:00, 12:00)

    def run() -> dict[str, Any]:
        store = open_store(settings)
        try:
            return count_clicks(spark, settings, store, start, end)
        finally:
            store.close()

    ledger = run()
    expected = brute_counts(clicks, start, end)
    assert expected and lake_counts(settings) == expected == served(settings)
    assert lake.partitions(COUNTS) == ["dt=2026-03-04/hour=10", "dt=2026-03-04/hour=11"]
    assert ledger["distinct_clicks"] == ledger["clicks_in"] == sum(expected.values())
    store = open_store(settings)
    try:
        for key in {k for k, *_ in expected} | {"never-clicked"}:
            assert click_stats(store, key) == brute_stats(expected, key)
    finally:
        store.close()

    files = {p: p.read_bytes() for p in sorted(lake.table_dir(COUNTS).rglob("*.parquet"))}
    assert run()["upserted"] == len(expected)
    assert {p: p.read_bytes() for p in sorted(lake.table_dir(COUNTS).rglob("*.parquet"))} == files
    assert served(settings) == expected

    # Clicks of an hour repaired away (here: 11:00 rewritten without the key 'promo', and 10:00 emptied):
    # the rerun deletes the counts no click justifies any more.
    kept = [c for c in clicks if not (c["key"] == "promo" and c["ts"].hour == 11) and c["ts"].hour != 10]
    lake.replace_range(CLICKS, start, end, [c for c in kept if start <= c["ts"] < end])
    assert run()["deleted"] > 0
    after = brute_counts(kept, start, end)
    assert lake_counts(settings) == after == served(settings)
    assert lake.partitions(COUNTS) == ["dt=2026-03-04/hour=10", "dt=2026-03-04/hour=11"]  # 10:00 empty, present


@pytest.mark.unit
def test_hour_span_is_whole_hours() -> None:
    from sixfold.shortener.click_job import hour_span

    assert hour_span("2026-03-04T09:30:00Z", "2026-03-04T10:00:00Z") == (T0, T0 + timedelta(hours=1))
    assert hour_span("2026-03-04T09:00:00Z", "2026-03-04T10:00:01Z") == (T0, T0 + timedelta(hours=2))
    with pytest.raises(ValueError, match="--end must be after --start"):
        hour_span(T0, T0)


# ---- the DAGs ------------------------------------------------------------------------------------
def load_dag(dag_id: str) -> Any:
    from airflow.models.dagbag import DagBag

    bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    assert bag.import_errors == {}
    return bag.dags[dag_id]


@pytest.mark.airflow
def test_url_clicks_dag_counts_its_hour_and_the_one_before(airflow: Settings) -> None:
    settings = airflow
    events = generate_events(80, T0, 4, seed=6)  # 09:00 .. 13:00
    publish(settings, events)
    land_clicks(settings, idle_timeout_s=0.1)

    dag = load_dag("url_clicks")
    assert set(dag.tags) == {"shortener"}
    run = dag.test(logical_date=T0 + timedelta(hours=3))
    assert run.state == "success"
    assert (run.data_interval_start, run.data_interval_end) == (T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    expected = brute_counts(landed(events), T0 + timedelta(hours=1), T0 + timedelta(hours=3))  # [10:00, 12:00)
    assert expected and lake_counts(settings) == expected == served(settings)


@pytest.mark.airflow
def test_url_expiry_dag_tombstones_the_links_expired_by_its_interval_end(airflow: Settings) -> None:
    from airflow.timetables.interval import CronDataIntervalTimetable

    from sixfold.shortener.links import Links

    settings = airflow
    created = datetime(2026, 3, 1, tzinfo=UTC)
    expiries = {f"exp-{k}": datetime(2026, 3, 2, 18, tzinfo=UTC) + timedelta(hours=2 * k) for k in range(6)}
    store = open_store(settings)
    try:
        links = Links(store, settings, clock=created.timestamp)
        for alias, expire_at in expiries.items():  # 18:00 .. 04:00 the next day
            links.create(7, "https://example.org/page", alias, expire_at)
    finally:
        store.close()

    dag = load_dag("url_expiry")
    assert set(dag.tags) == {"shortener"}
    assert isinstance(dag.timetable, CronDataIntervalTimetable) and dag.timetable._expression == "0 0 * * *"
    run = dag.test(logical_date=datetime(2026, 3, 3, tzinfo=UTC))
    assert run.state == "success"
    end = run.data_interval_end
    assert end - run.data_interval_start == timedelta(days=1)
    store = open_store(settings)
    try:
        states = {alias: store.get(SERVING_TABLES["short_urls"], {"key": alias})["state"] for alias in expiries}
    finally:
        store.close()
    assert states == {alias: "expired" if at <= end else "active" for alias, at in expiries.items()}
    assert 0 < Counter(states.values())["expired"] < len(expiries)


# ---- end to end: redirects over HTTP to GET /v1/urls/{key}/stats --------------------------------
@pytest.mark.spark
def test_stats_over_http_equal_the_clicks_the_redirects_made(spark: Any, settings: Settings) -> None:
    """Redirects with chosen Referer and User-Agent headers, their events replayed once more on the bus,
    landed, counted by the job: the owner's stats are the count of the redirects made, by hand."""
    from accounts import Authed, signup
    from fastapi.testclient import TestClient

    from sixfold.api.app import create_app
    from sixfold.shortener.api import app_clicks
    from sixfold.shortener.click_job import HOUR, count_clicks, hour_floor

    rng = random.Random(8)
    referers = {None: "(direct)", "https://News.Example.org/item?id=1": "news.example.org",
                "https://t.co/abc": "t.co", "not a url": "(direct)"}
    made: dict[str, Counter] = {}
    with TestClient(create_app(settings)) as client:
        _, token = signup(client, "clicker")
        owner = {"X-Api-Key": Authed(client, token).post("/v1/api-keys").json()["api_key"]}
        keys = [client.post("/v1/urls", json={"long_url": f"https://example.com/{i}"}, headers=owner).json()["key"]
                for i in range(2)]
        before = datetime.now(UTC)
        for _ in range(40):
            key, referer, agent = rng.choice(keys), rng.choice(list(referers)), rng.choice(list(AGENTS))
            headers = {k: v for k, v in (("referer", referer), ("user-agent", agent)) if v}
            if not agent:
                headers["user-agent"] = ""  # the test client's own agent would count otherwise
            assert client.get(f"/{key}", headers=headers, follow_redirects=False).status_code == 302
            made.setdefault(key, Counter())[(referers[referer], AGENTS[agent])] += 1
        app_clicks(client.app).flush()
        after = datetime.now(UTC)

        bus = open_bus(settings)  # a producer retry: every event once more
        sent = bus.consumer(TOPIC, "test-replay").poll(max_records=1000, timeout_s=0.5)
        bus.produce_many(TOPIC, [(m.key, m.json()) for m in sent])
        bus.close()
        assert land_clicks(settings, idle_timeout_s=0.1).received == 80
        store = open_store(settings)
        try:
            count_clicks(spark, settings, store, hour_floor(before), hour_floor(after) + HOUR)
        finally:
            store.close()

        hours = {hour_floor(before), hour_floor(after)}
        for key in keys:
            stats = client.get(f"/v1/urls/{key}/stats", headers=owner).json()
            refs, families = Counter(), Counter()
            for (ref, family), n in made[key].items():
                refs[ref] += n
                families[family] += n
            assert stats["total"] == sum(made[key].values())
            assert {(r["host"], r["clicks"]) for r in stats["referrers"]} == set(refs.items())
            assert {(b["family"], b["clicks"]) for b in stats["browsers"]} == set(families.items())
            assert sum(h["clicks"] for h in stats["hourly"]) == stats["total"]
            assert {datetime.fromisoformat(h["hour"].replace("Z", "+00:00")) for h in stats["hourly"]} <= hours
