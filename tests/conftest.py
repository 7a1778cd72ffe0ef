"""Shared fixtures: an isolated SIXFOLD_HOME per test, one Spark session and one set of servers per run."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from sixfold.platform.settings import Settings

REPO = Path(__file__).resolve().parents[1]


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
    env.setdefault("SIXFOLD_HOME", str(REPO))
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
    started = []
    for service in services.all_services(settings):
        try:
            healthy = service.healthy()
        except Exception:  # noqa: BLE001 - not answering means: start it
            healthy = None
        if not healthy:
            service.start(log=lambda _msg: None)
            started.append(service)
    yield settings
    for service in started:
        service.stop()


def pytest_collection_modifyitems(config, items):
    """Tests that kill a shared server run last, so nothing else sees the restart."""
    items.sort(key=lambda item: item.get_closest_marker("destructive") is not None)
