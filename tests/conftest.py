"""Shared fixtures: an isolated SIXFOLD_HOME per test, one Spark session and one set of servers per run."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from sixfold.platform.airflow_env import DAGS_FOLDER, airflow_env
from sixfold.platform.settings import Settings

REPO = Path(__file__).resolve().parents[1]
# Where `sixfold services up` keeps its servers' state, read before any test points SIXFOLD_HOME at a
# temporary directory (the `home` fixture): the session's servers must not depend on which test asked first.
SERVICES_HOME = os.environ.get("SIXFOLD_HOME", str(REPO))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh SIXFOLD_HOME so no test shares var/ with another or with the developer's checkout."""
    monkeypatch.setenv("SIXFOLD_HOME", str(tmp_path))
    return tmp_path


@pytest.fixture
def settings(home: Path) -> Settings:
    return Settings.from_env()


def cluster_settings() -> Settings:
    """Settings that point at the servers `sixfold services up` started (the developer's or CI's)."""
    env = dict(os.environ)
    env["SIXFOLD_PROFILE"] = "cluster"
    env["SIXFOLD_HOME"] = SERVICES_HOME
    return Settings.from_env(env)


@pytest.fixture(scope="session")
def spark():
    """One local Spark session for the whole run (starting a JVM costs seconds)."""
    from sixfold.platform.spark import get_session

    session = get_session(Settings.from_env({"SIXFOLD_HOME": str(REPO)}), app_name="sixfold-tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def services_running():
    """Real Kafka and Cassandra on 127.0.0.1: reuse running ones, else start them (and stop them after)."""
    from sixfold.platform import services

    settings = cluster_settings()
    spark = {service.name for service in services.spark_services(settings)}  # `spark_cluster` starts those
    started = _start_missing([s for s in services.all_services(settings) if s.name not in spark])
    yield settings
    for service in started:
        service.stop()


@pytest.fixture(scope="session")
def spark_cluster():
    """The Spark standalone master and worker of the cluster profile on 127.0.0.1: reuse running ones, else
    start them (and stop them after); yields the cluster settings that point at them."""
    from sixfold.platform import services

    settings = cluster_settings()
    started = _start_missing(services.spark_services(settings))
    yield settings
    for service in reversed(started):
        service.stop()


def _start_missing(wanted: list) -> list:
    """Start each service that does not answer healthy; return those started."""
    started = []
    for service in wanted:
        try:
            healthy = service.healthy()
        except Exception:  # noqa: BLE001 - not answering means: start it
            healthy = None
        if not healthy:
            service.start(log=lambda _msg: None)
            started.append(service)
    return started


def pytest_sessionfinish(session, exitstatus):
    """Close Cassandra stores a test left open: their driver threads would otherwise outlive the run."""
    from sixfold.platform.store import close_open_cassandra_stores

    left = close_open_cassandra_stores()
    if left:
        print(f"\nconftest: closed {left} Cassandra store(s) left open by tests", file=sys.stderr)


def pytest_unconfigure(config):
    """The run is over: if the interpreter has not exited EXIT_GRACE_S later (a leaked non-daemon or
    executor thread that Python joins at exit), print every thread's stack and exit with pytest's status.
    A finished run never waits for CI's timeout; the stacks name the leak so it can be fixed."""
    import faulthandler
    import threading

    status = int(getattr(config, "_sixfold_exitstatus", 0))

    def last_word() -> None:
        threading.Event().wait(EXIT_GRACE_S)
        sys.__stderr__.write(f"\nconftest: still not exited {EXIT_GRACE_S} s after the run; threads:\n")
        faulthandler.dump_traceback(file=sys.__stderr__, all_threads=True)
        os._exit(status)

    threading.Thread(target=last_word, name="exit-watchdog", daemon=True).start()


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    config._sixfold_exitstatus = exitstatus


EXIT_GRACE_S = 60


def pytest_collection_modifyitems(config, items):
    """Tests that kill a shared server run last, so nothing else sees the restart."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)


# ---- Airflow: one migrated metadata database per run --------------------------------------------
# Airflow reads AIRFLOW_HOME and its database URL when `airflow` is first imported, so the database
# is migrated once in a subprocess and each test sets the environment with monkeypatch.
@pytest.fixture(scope="session")
def airflow_db(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A migrated SQLite metadata database for the whole run; returns the variables pointing at it."""
    home = tmp_path_factory.mktemp("airflow")
    db_env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS_FOLDER),
    }
    airflow_cli = Path(sys.executable).parent / "airflow"
    done = subprocess.run(
        [str(airflow_cli), "db", "migrate"], env={**os.environ, **db_env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return db_env


@pytest.fixture
def airflow(airflow_db: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment `airflow_env` gives a user, with the session's database; undone after the test."""
    # Airflow sets the root logger to INFO; py4j's finalizers would then log to closed streams at exit.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    for key, value in {**airflow_env(settings), **airflow_db}.items():
        monkeypatch.setenv(key, value)
    if "airflow.settings" in sys.modules:
        # Airflow was imported earlier (by another test) under other variables: point it here.
        from airflow import settings as airflow_settings

        if airflow_settings.SQL_ALCHEMY_CONN != airflow_db["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]:
            airflow_settings.configure_vars()
            airflow_settings.reconfigure_orm()
    return settings




# ---- `sixfold serve` as a user runs it ----------------------------------------------------------------
@pytest.fixture
def serve(home: Path, tmp_path: Path):
    """Start the real `sixfold serve` (own process group) on a free port and wait for its health: a
    function of the extra arguments returning (process, httpx client); every one started is stopped
    after the test. A test may SIGKILL one and start another on the same SIXFOLD_HOME."""
    import httpx

    from sixfold.platform.benchkit import free_port, running, wait_until

    started: list = []
    sixfold = str(Path(sys.executable).parent / "sixfold")

    def start(*args: str):
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        context = running([sixfold, "serve", "--port", str(port), *args], dict(os.environ), log)
        proc = context.__enter__()
        started.append(context)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def healthy() -> bool:
            try:
                return client.get("/v1/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, proc, "sixfold serve", log)
        return proc, client

    yield start
    for context in started:
        context.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium, headless, driven by Playwright (one per test module)."""
    from browser import CHROMIUM, CHROMIUM_ARGS
    from playwright import sync_api as playwright_sync

    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()
