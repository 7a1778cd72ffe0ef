"""Airflow as users drive it: `sixfold airflow standalone` on the embedded profile, every DAG in dags/
unpaused and triggered through the REST API the way the UI's trigger button does (PATCH the DAG, then
POST a run with a logical date and conf), each run waited on until it succeeds, then what it left in
the lake or the store checked; a screenshot of the UI's DAG list (docs/airflow-dags.png); and Ctrl-C
leaves no Airflow process behind.

Each DAG gets the least data it needs, written before Airflow starts, for a logical date whose data
interval holds that data. A DAG this file does not know yet is still triggered (at FEED_END, with no
conf); if it fails, the failure says where to teach it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from schemas.records import LAKE_TABLES, SERVING_TABLES
from sixfold.crawler.site import SiteSpec
from sixfold.crawler.site_server import RunningSite, serve
from sixfold.platform.airflow_env import DAGS_FOLDER
from sixfold.platform.benchkit import free_port
from sixfold.platform.lake import ArrowLake
from sixfold.platform.processes import stop_group, stop_groups
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings

pytestmark = [pytest.mark.e2e, pytest.mark.airflow, pytest.mark.timeout(1200)]  # six Spark JVMs on 2 cores

REPO = Path(__file__).resolve().parents[1]
SCREENSHOT = REPO / "docs" / "airflow-dags.png"
SAMPLE_T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)  # sample_window_counts: search events 10:00 .. 11:00
TYPEAHEAD_T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)  # typeahead: one 15-minute window on the bus
FEED_END = datetime(2026, 3, 3, 0, 0, tzinfo=UTC)  # feed: posts in the 30 days before, stories the day before
CRAWL_AT = datetime(2026, 11, 27, 6, 0, tzinfo=UTC)
CLICKS_T0 = datetime(2026, 3, 4, 9, 0, tzinfo=UTC)  # url_clicks: landed clicks 09:00 .. 13:00
EXPIRY_DAY = datetime(2026, 3, 6, 0, 0, tzinfo=UTC)  # url_expiry: links expiring around this midnight
RETENTION_END = datetime(2026, 3, 8, 0, 0, tzinfo=UTC)  # chat_retention: messages from 40 to 1 days before
CRAWL_ENV = {"SIXFOLD_CRAWLER_DEFAULT_DELAY_S": "0", "SIXFOLD_CRAWLER_ROBOTS_RETRY_S": "0.1",
             "SIXFOLD_CRAWLER_ROBOTS_ATTEMPTS": "1", "SIXFOLD_CRAWLER_MAX_DEPTH": "6"}
SITE = SiteSpec(hosts=2, pages_per_host=12, crawl_delay_s=0.0, traps=False)
START_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 420.0
UNFINISHED_TI = {"up_for_retry", "failed", "upstream_failed"}


@dataclass
class Trigger:
    """How to trigger one DAG: the logical date (its data interval ends there), the conf, and what a
    successful run must have left behind (called with the finished run's JSON)."""

    logical_date: datetime
    conf: dict[str, Any] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None
    known: bool = True


# ---- the least data each DAG needs --------------------------------------------------------------------
def prepare_sample_window_counts(settings: Settings) -> Trigger:
    from sixfold.typeahead.generate import generate_log

    rows = [{**e, "ts": parse_timestamp(e["ts"])}
            for e in generate_log(300, SAMPLE_T0, SAMPLE_T0 + timedelta(hours=1), seed=3)]
    lake = ArrowLake(settings)
    lake.overwrite_partitions(LAKE_TABLES["search_events"], rows)

    def check(run: dict[str, Any]) -> None:
        start, end = parse_timestamp(run["data_interval_start"]), parse_timestamp(run["data_interval_end"])
        got = Counter({(r["region"], r["window_start"], r["query"]): r["count"]
                       for r in lake.read(LAKE_TABLES["sample_window_counts"]).to_pylist()})
        assert got == Counter((r["region"], start, r["query"]) for r in rows if start <= r["ts"] < end)
        assert got, "the window held events; the job counted none"

    return Trigger(SAMPLE_T0 + timedelta(minutes=30), check=check)  # interval [10:15, 10:30)


def prepare_typeahead(settings: Settings) -> Trigger:
    from sixfold.platform.bus import open_bus
    from sixfold.typeahead.generate import generate_log

    events = list(generate_log(400, TYPEAHEAD_T0, TYPEAHEAD_T0 + timedelta(minutes=15), seed=5))
    open_bus(settings).produce_many("search-events", [(e["user_id"], e) for e in events])

    def check(run: dict[str, Any]) -> None:
        from sixfold.typeahead.serving import Suggester

        counts = Counter(" ".join(e["query"].lower().split()) for e in events)
        top = min(counts, key=lambda q: (-counts[q], q))
        prefix = top[:2]
        expected = sorted((q for q, n in counts.items() if q.startswith(prefix) and n >= settings.typeahead_threshold),
                          key=lambda q: (-counts[q], q))
        suggester = Suggester(settings)
        try:
            got = [s["phrase"] for s in suggester.suggest(prefix, 10)["suggestions"]]
        finally:
            suggester.close()
        assert got and got == expected[:len(got)] and got[0] == top, (prefix, got, expected[:10])

    return Trigger(TYPEAHEAD_T0 + timedelta(minutes=15), check=check)  # interval [09:00, 09:15)


def prepare_feed(settings: Settings) -> dict[str, Trigger]:
    """Users, follows, posts and stories for the three feed DAGs (timelines, story_expiry, feed_search_index)."""
    from sixfold.feed.generate import generate, write
    from sixfold.platform.store import open_store

    data = generate(users=15, posts=60, stories=8, seed=11, end=FEED_END)  # few rows, few lake partitions
    store = open_store(settings)
    try:
        write(settings, data, store)
    finally:
        store.close()

    def scan(table: str) -> list[dict[str, Any]]:
        store = open_store(settings)
        try:
            return store.scan(SERVING_TABLES[table])
        finally:
            store.close()

    def timelines_check(run: dict[str, Any]) -> None:
        entries = scan("timelines")  # the run's own dq task compared a sample with a brute force
        assert {e["user_id"] for e in entries}, "no timeline was written"

    purge_at = FEED_END + timedelta(hours=12)  # stories expire over [FEED_END, FEED_END + 1 day): about half

    def expiry_check(run: dict[str, Any]) -> None:
        end = parse_timestamp(run["data_interval_end"])
        left = {s["story_id"] for s in scan("stories")}
        assert left == {s["story_id"] for s in data.stories if s["expires_at"] > end}
        assert 0 < len(left) < len(data.stories)

    # The hour (from :05 to :05, the DAG's ticks) with the most hashtagged posts: the job reads only that.
    def tick_after(at: datetime) -> datetime:
        return (at - timedelta(minutes=5)).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1, minutes=5)

    hours = Counter(tick_after(p["created_at"]) for p in data.posts if p["hashtags"])
    index_end = max(hours, key=lambda h: (hours[h], h))

    def index_check(run: dict[str, Any]) -> None:
        start, end = parse_timestamp(run["data_interval_start"]), parse_timestamp(run["data_interval_end"])
        expected = {p["post_id"] for p in data.posts if p["hashtags"] and start <= p["created_at"] < end}
        assert expected and {r["post_id"] for r in scan("hashtag_posts")} == expected

    return {"timelines": Trigger(FEED_END, check=timelines_check),
            "story_expiry": Trigger(purge_at, check=expiry_check),
            "feed_search_index": Trigger(index_end, check=index_check)}


def prepare_crawl_cycle(settings: Settings, site: RunningSite) -> Trigger:
    def check(run: dict[str, Any]) -> None:
        from sixfold.crawler import cycle

        cycle_id = cycle.cycle_id_for(parse_timestamp(run["data_interval_start"]))
        rows = ArrowLake(settings).read(LAKE_TABLES["crawl_pages"]).to_pylist()
        assert {r["url"] for r in rows} >= {s for s in site.seeds if s in site.truth.pages}
        assert {r["cycle_id"] for r in rows} == {cycle_id}

    return Trigger(CRAWL_AT, {"seeds_file": str(site.seeds_file), "max_pages": 20, "allow_hosts": ["127.0.0.0/8"]},
                   check)


def prepare_url_clicks(settings: Settings) -> Trigger:
    """Landed clicks over four hours; the run at 12:00 counts [10:00, 12:00) (its hour and the one before)."""
    import random

    rng = random.Random(9)
    clicks = [{"click_id": f"e2e{i:05d}", "key": rng.choice(["abc123", "promo"]),
               "ts": CLICKS_T0 + timedelta(seconds=rng.randrange(4 * 3600)),
               "referrer_host": rng.choice(["(direct)", "t.co"]), "ua_family": rng.choice(["Chrome", "curl"])}
              for i in range(120)]
    lake = ArrowLake(settings)
    lake.overwrite_partitions(LAKE_TABLES["url_clicks"], clicks)

    def check(run: dict[str, Any]) -> None:
        from sixfold.platform.store import open_store

        start = parse_timestamp(run["data_interval_start"]) - timedelta(hours=1)
        end = parse_timestamp(run["data_interval_end"])
        expected = Counter((c["key"], c["ts"].replace(minute=0, second=0), c["referrer_host"], c["ua_family"])
                           for c in clicks if start <= c["ts"] < end)
        key = lambda r: (r["key"], r["hour"], r["referrer_host"], r["ua_family"])  # noqa: E731
        got = Counter({key(r): r["clicks"] for r in lake.read(LAKE_TABLES["url_click_counts"]).to_pylist()})
        store = open_store(settings)
        try:
            served = Counter({key(r): r["clicks"] for r in store.scan(SERVING_TABLES["url_click_counts"])})
        finally:
            store.close()
        assert expected and got == expected == served

    return Trigger(CLICKS_T0 + timedelta(hours=3), check=check)  # interval [11:00, 12:00)


def prepare_url_expiry(settings: Settings) -> Trigger:
    """Links expiring every two hours from 18:00 the day before EXPIRY_DAY: the run ending then tombstones three."""
    from sixfold.platform.store import open_store
    from sixfold.shortener.links import Links

    expiries = {f"e2e-exp-{k}": EXPIRY_DAY - timedelta(hours=6) + timedelta(hours=2 * k) for k in range(6)}
    store = open_store(settings)
    try:
        links = Links(store, settings, clock=(EXPIRY_DAY - timedelta(days=2)).timestamp)
        for alias, expire_at in expiries.items():
            links.create(1, "https://example.org/", alias, expire_at)
    finally:
        store.close()

    def check(run: dict[str, Any]) -> None:
        end = parse_timestamp(run["data_interval_end"])
        store = open_store(settings)
        try:
            states = {a: store.get(SERVING_TABLES["short_urls"], {"key": a})["state"] for a in expiries}
        finally:
            store.close()
        assert states == {a: "expired" if at <= end else "active" for a, at in expiries.items()}
        assert 0 < list(states.values()).count("expired") < len(expiries)

    return Trigger(EXPIRY_DAY, check=check)


def prepare_chat_retention(settings: Settings) -> Trigger:
    """A conversation with a read message 40, 31, 29 and 1 days before RETENTION_END: the run ending then
    deletes the first two and their receipts."""
    from sixfold.chat.service import ChatService
    from sixfold.platform.ids import Sequencer
    from sixfold.platform.store import open_store

    ann, bob = 9_000_001, 9_000_002
    ages = (40, 31, 29, 1)
    clock = [0.0]
    sent: dict[int, tuple[str, int]] = {}
    store = open_store(settings)
    try:
        store.upsert_many(SERVING_TABLES["users"], [{"user_id": u, "username": f"e2e-chat-{u}",
                                                     "created_at": RETENTION_END - timedelta(days=60)} for u in (ann, bob)])
        chat = ChatService(store, Sequencer(5), clock=lambda: clock[0])
        for age in ages:
            clock[0] = (RETENTION_END - timedelta(days=age)).timestamp()
            ack = chat.send(ann, "phone", {"client_msg_id": f"e2e-{age}", "to": bob, "body": f"{age} days"},
                            lambda _: None).ack
            chat.receipt(bob, "tab", {"message_id": ack["message_id"], "status": "read"}, lambda _: None)
            sent[age] = (ack["conversation_id"], ack["seq"])
    finally:
        store.close()

    def check(run: dict[str, Any]) -> None:
        end = parse_timestamp(run["data_interval_end"])
        store = open_store(settings)
        try:
            kept = {age for age, (conversation, seq) in sent.items()
                    if store.get(SERVING_TABLES["chat_messages"], {"conversation_id": conversation, "seq": seq})}
            receipts = {age for age, (conversation, seq) in sent.items()
                        if store.query(SERVING_TABLES["chat_receipts"], {"conversation_id": conversation, "seq": seq})}
        finally:
            store.close()
        assert kept == receipts == {age for age in ages if RETENTION_END - timedelta(days=age) >= end - timedelta(days=30)}
        assert 0 < len(kept) < len(ages)

    return Trigger(RETENTION_END, check=check)


def prepare(settings: Settings, site: RunningSite) -> dict[str, Trigger]:
    return {"sample_window_counts": prepare_sample_window_counts(settings), "typeahead": prepare_typeahead(settings),
            **prepare_feed(settings), "crawl_cycle": prepare_crawl_cycle(settings, site),
            "url_clicks": prepare_url_clicks(settings), "url_expiry": prepare_url_expiry(settings),
            "chat_retention": prepare_chat_retention(settings)}


# ---- Airflow under `sixfold airflow standalone` -------------------------------------------------------------
def airflow_environ(home: Path, port: int) -> dict[str, str]:
    """The developer's environment without any Airflow or Sixfold setting of theirs, plus this test's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "SIXFOLD_"))}
    return {**env, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded", **CRAWL_ENV,
            "AIRFLOW__API__PORT": str(port),
            # Only the runs this test triggers: unpausing would otherwise also schedule the latest
            # interval of every DAG (catchup=False still runs one), over data that is not there.
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
            # The LocalExecutor forks this many workers up front (32 by default). Enough that the
            # short Python tasks need not queue behind the six Spark jobs.
            "AIRFLOW__CORE__PARALLELISM": "8"}


def tail(path: Path, lines: int = 40) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def standalone(env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """`sixfold airflow standalone` in a process group of its own; afterwards (even on failure) it and
    every group it started are stopped."""
    exe = Path(sys.executable).parent / "sixfold"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(exe), "airflow", "standalone"], env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    try:
        yield proc
    finally:
        groups: set[int] = set()
        for child in descendants(proc.pid):
            try:
                groups.add(os.getpgid(child.pid))
            except ProcessLookupError:
                continue
        groups -= {os.getpgrp(), proc.pid}
        stop_group(proc, term_wait_s=40)  # SIGTERM: it stops its groups, as on Ctrl-C
        for pgid in groups:  # whatever it could not stop
            try:
                os.killpg(pgid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those still running: a zombie (dead, waiting for a parent to reap it) does not count."""
    out = []
    for p in processes:
        try:
            if p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            continue
    return out


def listening(processes: list[psutil.Process]) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket these processes listen on."""
    out = set()
    for p in processes:
        try:
            out |= {(c.laddr.ip, c.laddr.port) for c in p.net_connections(kind="inet")
                    if c.status == psutil.CONN_LISTEN}
        except psutil.NoSuchProcess:
            continue
    return out


def wait_healthy(client: httpx.Client, proc: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    health: dict[str, Any] = {}
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"sixfold airflow standalone exited with {proc.returncode}:\n{tail(log_path)}"
        try:
            health = client.get("/api/v2/monitor/health").json()
            if all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "triggerer", "dag_processor")):
                return
        except (httpx.TransportError, ValueError):
            pass
        time.sleep(1)
    pytest.fail(f"Airflow not healthy after {START_TIMEOUT_S:.0f} s: {health}\n{tail(log_path)}")


def log_in(client: httpx.Client, airflow_home: Path) -> str:
    """The admin's password from the file the API server wrote, exchanged for a JWT."""
    password = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())["admin"]
    answer = client.post("/auth/token", json={"username": "admin", "password": password})
    assert answer.status_code == 201, answer.text
    client.headers["Authorization"] = f"Bearer {answer.json()['access_token']}"
    return password


def parsed_dags(client: httpx.Client) -> list[dict[str, Any]]:
    """Every DAG the dag-processor found, once each file in dags/ has given one; import errors fail."""
    files = {p.name for p in DAGS_FOLDER.glob("*.py") if not p.name.startswith("_")}
    deadline = time.monotonic() + START_TIMEOUT_S
    dags: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        errors = client.get("/api/v2/importErrors").json()
        assert errors["total_entries"] == 0, [(e["filename"], e["stack_trace"][-800:]) for e in errors["import_errors"]]
        dags = client.get("/api/v2/dags", params={"limit": 100}).json()["dags"]
        if {Path(d["fileloc"]).name for d in dags} >= files:
            return dags
        time.sleep(1)
    pytest.fail(f"the dag-processor parsed {sorted(d['dag_id'] for d in dags)}, not every file of {sorted(files)}")


def trigger(client: httpx.Client, dag_id: str, how: Trigger) -> str:
    """What the UI's trigger button does with "unpause on trigger" ticked."""
    answer = client.patch(f"/api/v2/dags/{dag_id}", json={"is_paused": False})
    assert answer.status_code == 200, answer.text
    answer = client.post(f"/api/v2/dags/{dag_id}/dagRuns",
                         json={"logical_date": how.logical_date.isoformat(), "conf": how.conf})
    assert answer.status_code == 200, answer.text
    return str(answer.json()["dag_run_id"])


def log_line(line: Any) -> str:
    """One structured task-log line as text; an exception's type, value and last frame included."""
    if not isinstance(line, dict):
        return str(line)
    text = str(line.get("event", line))
    for error in line.get("error_detail") or []:
        frame = (error.get("frames") or [{}])[-1]
        text += (f"\n  {error.get('exc_type')}: {error.get('exc_value')} "
                 f"({frame.get('filename')}:{frame.get('lineno')} in {frame.get('name')})")
    return text


def failure_report(client: httpx.Client, dag_id: str, run_id: str, how: Trigger) -> str:
    """Every task that failed (or is waiting to retry), with the end of its log."""
    base = f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances"
    report = []
    for ti in client.get(base).json()["task_instances"]:
        if ti["state"] not in UNFINISHED_TI:
            continue
        tries = max(1, ti["try_number"] - (1 if ti["state"] == "up_for_retry" else 0))
        answer = client.get(f"{base}/{ti['task_id']}/logs/{tries}", params={"full_content": "true"},
                            headers={"Accept": "application/json"})
        lines = [log_line(line) for line in answer.json().get("content") or []] if answer.status_code == 200 \
            else [answer.text]
        report.append(f"--- {dag_id}.{ti['task_id']} {ti['state']} (try {tries}):\n" + "\n".join(lines[-25:]))
    hint = "" if how.known else (f"\n(no data is prepared for {dag_id}: add it to `prepare` in {Path(__file__).name})")
    return "\n".join(report) + hint


def run_all(client: httpx.Client, triggers: dict[str, Trigger]) -> dict[str, dict[str, Any]]:
    """Trigger every DAG at once and poll until each run succeeds; a failed task fails the test at
    once (no waiting out its retries), with its log."""
    runs = {dag_id: trigger(client, dag_id, how) for dag_id, how in triggers.items()}
    done: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while len(done) < len(runs):
        assert time.monotonic() < deadline, \
            f"runs not finished after {RUN_TIMEOUT_S:.0f} s: {sorted(set(runs) - set(done))}"
        for dag_id, run_id in runs.items():
            if dag_id in done:
                continue
            run = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}").json()
            tis = client.get(f"/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances").json()["task_instances"]
            if run["state"] == "failed" or any(ti["state"] in UNFINISHED_TI for ti in tis):
                pytest.fail(f"{dag_id} run {run_id} is {run['state']}:\n"
                            f"{failure_report(client, dag_id, run_id, triggers[dag_id])}")
            if run["state"] == "success":
                done[dag_id] = run
        time.sleep(2)
    return done


def screenshot(browser: Any, base_url: str, password: str, dag_ids: list[str], out: Path) -> None:
    """Sign in through the UI's login form and photograph the DAG list (table view)."""
    from PIL import Image

    # Tall enough for every row of the table (about 62 px each below 420 px of filters and header).
    page = browser.new_page(viewport={"width": 1280, "height": 460 + 62 * len(dag_ids)})
    try:
        page.goto(f"{base_url}/dags")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{base_url}/dags", timeout=30_000)
        page.get_by_role("button", name="Show table view").click()
        for dag_id in dag_ids:
            page.get_by_role("link", name=dag_id, exact=True).first.wait_for(timeout=30_000)
        page.wait_for_timeout(1000)  # the last-run state icons arrive with a second request
        page.screenshot(path=str(out))
    finally:
        page.close()
    # A 64-colour palette keeps the picture sharp and the committed file small.
    Image.open(out).convert("RGB").quantize(colors=64).save(out, optimize=True)


def test_every_dag_runs_through_the_rest_api_and_ctrl_c_stops_airflow(tmp_path: Path, browser: Any) -> None:
    port = free_port()
    env = airflow_environ(tmp_path, port)
    settings = Settings.from_env(env)
    base_url = f"http://127.0.0.1:{port}"
    log_path = tmp_path / "airflow-standalone.log"
    timings: dict[str, float] = {}
    began = mark = time.monotonic()

    def lap(name: str) -> None:
        nonlocal mark
        timings[name], mark = time.monotonic() - mark, time.monotonic()

    with serve(SITE) as site:
        triggers = prepare(settings, site)
        lap("prepare")
        with standalone(env, log_path) as proc, httpx.Client(base_url=base_url, timeout=30) as client:
            wait_healthy(client, proc, log_path)
            password = log_in(client, settings.var / "airflow")
            dags = parsed_dags(client)
            lap("start")

            # Every Airflow process listens on 127.0.0.1 only (the API server; no log servers).
            assert listening(descendants(proc.pid)) == {("127.0.0.1", port)}

            dag_ids = sorted(d["dag_id"] for d in dags)
            for dag_id in dag_ids:
                triggers.setdefault(dag_id, Trigger(FEED_END, known=False))
            ran = run_all(client, {dag_id: triggers[dag_id] for dag_id in dag_ids})
            lap("runs")
            for dag_id, run in ran.items():
                took = parse_timestamp(run["end_date"]) - parse_timestamp(run["start_date"])
                print(f"{dag_id:22} {run['data_interval_start']} .. {run['data_interval_end']}  "
                      f"{took.total_seconds():6.1f} s")
                if triggers[dag_id].check:
                    triggers[dag_id].check(run)

            screenshot(browser, base_url, password, dag_ids, tmp_path / "airflow-dags.png")
            SCREENSHOT.parent.mkdir(exist_ok=True)
            SCREENSHOT.write_bytes((tmp_path / "airflow-dags.png").read_bytes())

            # Ctrl-C in a terminal reaches only `sixfold` (the foreground group): it stops everything else.
            started = descendants(proc.pid)
            commands = " | ".join(" ".join(p.cmdline()) for p in started)
            for component in ("api_server", "scheduler", "dag-processor", "triggerer"):
                assert component in commands, commands
            proc.send_signal(signal.SIGINT)
            assert proc.wait(timeout=60) == 128 + signal.SIGINT, tail(log_path)
            _, alive = psutil.wait_procs(started, timeout=5)
            assert not running(alive), [(p.pid, p.cmdline()) for p in running(alive)]
            lap("stop")
    print("  ".join(f"{k} {v:.0f} s" for k, v in timings.items()), f"total {time.monotonic() - began:.0f} s")


def test_stop_groups_waits_for_children_that_outlive_their_leader(tmp_path: Path) -> None:
    """A leader that exits on SIGTERM while its child ignores it: the group is not stopped until the
    child is gone too (SIGKILL after the wait)."""
    child_pid = tmp_path / "child.pid"
    script = (f"import os, signal, subprocess, sys, time\n"
              f"child = subprocess.Popen([sys.executable, '-c', 'import signal, time; "
              f"signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)'])\n"
              f"open({str(child_pid)!r}, 'w').write(str(child.pid))\n"
              f"time.sleep(60)\n")
    leader = subprocess.Popen([sys.executable, "-c", script], start_new_session=True)
    deadline = time.monotonic() + 20
    while not (child_pid.exists() and child_pid.read_text()):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    child = psutil.Process(int(child_pid.read_text()))
    time.sleep(0.3)  # the child has installed its handler
    began = time.monotonic()
    stop_groups([leader], term_wait_s=1.0, kill_wait_s=5.0)
    assert leader.returncode == -signal.SIGTERM
    assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
    assert 1.0 <= time.monotonic() - began < 6.0
