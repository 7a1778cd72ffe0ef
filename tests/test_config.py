"""Faulty configuration: every bad value named at once, and nothing started with any of them.

`sixfold config check` prints the effective configuration (value and source of each setting) and
exits 2 listing every bad variable; `sixfold serve`, the stream consumers and `sixfold services up`
refuse with exit code 2 before they start anything (the serve test holds the port it would bind
and checks it was never taken).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from sixfold.platform.configuration import check, effective, startup_settings, unknown_variables
from sixfold.platform.settings import Settings, SettingsError

pytestmark = pytest.mark.unit

SIXFOLD = str(Path(sys.executable).with_name("sixfold"))
REPO = Path(__file__).resolve().parents[1]
# One bad value per kind of check: type, range, host:port, rate string, enum, cross-field, profile.
BAD = {
    "SIXFOLD_CRAWLER_CONCURRENCY": "2.5",
    "SIXFOLD_CONNECT_TIMEOUT_S": "-1",
    "SIXFOLD_KAFKA_BOOTSTRAP": "127.0.0.1:http",
    "SIXFOLD_LIMIT_WRITES_PER_USER": "lots",
    "SIXFOLD_SHORTENER_DATACENTRE": "XY",
    "SIXFOLD_TYPEAHEAD_OWNED_SHARDS": "0,9",
    "SIXFOLD_DOCS_CACHE_DOCS": "inf",
    "SIXFOLD_SPARK_MASTER": "spark://:7077",
}


def clean_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SIXFOLD_", "PROMETHEUS_"))}
    return {**env, "SIXFOLD_HOME": str(home), **extra}


def test_every_bad_value_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env(BAD)
    named = [var for var, _reason in info.value.problems]
    assert sorted(named) == sorted(BAD), info.value.problems
    for var in BAD:
        assert var in str(info.value)


def test_one_bad_value_keeps_its_message_and_good_values_pass(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"^SIXFOLD_PROFILE='prod' is not a profile"):
        Settings.from_env({"SIXFOLD_PROFILE": "prod"})
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_SPARK_MASTER": "local[2]",
                                  "SIXFOLD_KAFKA_CONTROLLER_PORT": "19093", "SIXFOLD_READINESS_TIMEOUT_S": "0.5"})
    assert (settings.spark_master, settings.kafka_controller_port, settings.readiness_timeout_s) == \
        ("local[2]", 19093, 0.5)


@pytest.mark.parametrize("var, value", [
    ("SIXFOLD_SPARK_MASTER", "local[zero]"), ("SIXFOLD_KAFKA_VERSION", "latest"),
    ("SIXFOLD_KAFKA_CONTROLLER_PORT", "9092"), ("SIXFOLD_RATE_LIMIT_STORAGE", "redis://"),
    ("SIXFOLD_TYPEAHEAD_OWNED_SHARDS", "-1"), ("SIXFOLD_READINESS_TIMEOUT_S", "0"),
    ("SIXFOLD_SHORTENER_MEMCACHED", "cache:0"), ("SIXFOLD_FEED_PAGE_CACHE_S", "nan"),
])
def test_newly_checked_values(var: str, value: str) -> None:
    with pytest.raises(SettingsError, match=var):
        Settings.from_env({var: value})


def test_an_unusable_home_is_a_bad_value(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    settings, problems = check({"SIXFOLD_HOME": str(afile / "home")})
    assert settings is not None and [var for var, _ in problems] == ["SIXFOLD_HOME"]
    with pytest.raises(SettingsError, match="SIXFOLD_HOME"):
        startup_settings({"SIXFOLD_HOME": str(afile)})


def test_effective_configuration_says_where_each_value_came_from(tmp_path: Path) -> None:
    env = {"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_PROFILE": "cluster",
           "SIXFOLD_RATE_LIMIT_STORAGE": "redis://:hunter2@cache:6379", "SIXFOLD_FEED_READ_CACHE_S": "5",
           "SIXFOLD_FEED_READ_CAHCE_S": "7"}
    rows = {row.name: row for row in effective(Settings.from_env(env), env)}
    assert len(rows) == len(Settings.__dataclass_fields__)
    assert (rows["feed_read_cache_s"].value, rows["feed_read_cache_s"].source) == ("5.0", "SIXFOLD_FEED_READ_CACHE_S")
    assert rows["feed_page_cache_s"].source == "default"
    assert rows["spark_master"].source == "profile default"
    assert rows["cassandra_contact"].source == "default" and rows["cassandra_contact"].variable == "SIXFOLD_CASSANDRA_HOST"
    assert "hunter2" not in rows["rate_limit_storage"].value and "***" in rows["rate_limit_storage"].value
    assert unknown_variables(env) == ["SIXFOLD_FEED_READ_CAHCE_S"]


def test_config_check_command(tmp_path: Path) -> None:
    good = subprocess.run([SIXFOLD, "config", "check"], env=clean_env(tmp_path, SIXFOLD_FEED_READ_CACHE_S="5"),
                          capture_output=True, text=True, timeout=60)
    assert good.returncode == 0, good.stderr
    line = next(line for line in good.stdout.splitlines() if "feed_read_cache_s" in line)
    assert "5.0" in line and "SIXFOLD_FEED_READ_CACHE_S" in line
    assert "configuration ok" in good.stderr
    bad = subprocess.run([SIXFOLD, "config", "check"], env=clean_env(tmp_path, **BAD), capture_output=True,
                         text=True, timeout=60)
    assert bad.returncode == 2
    for var in BAD:
        assert f"bad value {var}:" in bad.stderr, (var, bad.stderr)
        assert f"{var} (BAD)" in bad.stdout, var  # the table still shows everything, the bad ones marked
    assert f"{len(BAD)} bad configuration value(s)" in bad.stderr and "Traceback" not in bad.stderr


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_consumers_and_services_refuse_before_starting_anything(tmp_path: Path) -> None:
    env = clean_env(tmp_path, SIXFOLD_DOCS_CACHE_DOCS="0", SIXFOLD_SHORTENER_DATACENTRE="XY")
    port = free_port()
    procs = {
        "serve": subprocess.Popen([SIXFOLD, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True),
        "consumer": subprocess.Popen([sys.executable, str(REPO / "streams" / "url_clicks.py"), "--once"], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
        "services": subprocess.Popen([SIXFOLD, "services", "up"], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True),
    }
    for name, proc in procs.items():
        _out, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, (name, err)
        assert "SIXFOLD_DOCS_CACHE_DOCS" in err and "SIXFOLD_SHORTENER_DATACENTRE" in err, (name, err)
        assert "Traceback" not in err, (name, err)
    with socket.socket() as probe:  # nobody ever bound the port: serve stopped before uvicorn
        probe.bind(("127.0.0.1", port))
    assert not (tmp_path / "var").exists(), "nothing was created under SIXFOLD_HOME"
