"""Static checks of the production stack in docker/compose.yaml (no Docker engine needed).

The compose file is only useful if its wiring is consistent: every SIXFOLD_* host setting must
name a service of the file on a port that service listens on, every dependency must exist, the
images it builds must have their Dockerfile, and the platform's own Settings must accept the
environment the containers get.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from sixfold.platform.settings import Settings

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker" / "compose.yaml"

# Setting -> how to split its value into (host, port).
HOST_SETTINGS = ("SIXFOLD_KAFKA_BOOTSTRAP", "SIXFOLD_CASSANDRA_HOST", "SIXFOLD_SPARK_MASTER", "SIXFOLD_SHORTENER_MEMCACHED")
# Services whose containers talk to Kafka, Cassandra or Spark and so need the cluster settings.
CLIENT_SERVICES = (
    "api",
    "stream-post-fanout",
    "stream-search-events",
    "stream-url-clicks",
    "stream-chat-group-fanout",
    "stream-docs-views",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "spark-master",
    "spark-worker",
)
DEPENDS_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "compose.yaml must be a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose.get("services")
    assert isinstance(services, dict) and services, "compose.yaml has no services"
    return services


@pytest.fixture(scope="module")
def sixfold_env(compose: dict[str, Any]) -> dict[str, str]:
    env = compose.get("x-sixfold-env")
    assert isinstance(env, dict), "compose.yaml must define the shared x-sixfold-env block"
    return {key: str(value) for key, value in env.items()}


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", ...] form
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return command.split() if isinstance(command, str) else [str(part) for part in command]


def _host_port(setting: str, value: str) -> tuple[str, int]:
    if setting == "SIXFOLD_SPARK_MASTER":
        assert value.startswith("spark://"), f"{setting}={value!r} is not a spark:// URL"
        value = value.removeprefix("spark://")
    host, sep, port = value.rpartition(":")
    assert sep and host and port.isdigit(), f"{setting}={value!r} is not HOST:PORT"
    return host, int(port)


def _container_port(spec: Any) -> int:
    """The container side of a `ports:` or `expose:` entry (short or long syntax)."""
    if isinstance(spec, dict):
        return int(spec["target"])
    return int(str(spec).split("/")[0].rsplit(":", 1)[-1])


def listening_ports(service: dict[str, Any]) -> set[int]:
    """Ports the service's container listens on: expose/ports, Kafka listeners, `--port N`."""
    ports = {_container_port(p) for p in service.get("expose") or []}
    ports |= {_container_port(p) for p in service.get("ports") or []}
    listeners = _env(service).get("KAFKA_LISTENERS", "")
    ports |= {int(m) for m in re.findall(r"://[^:,]*:(\d+)", listeners)}
    command = _command(service)
    ports |= {int(command[i + 1]) for i, arg in enumerate(command[:-1]) if arg == "--port"}
    return ports


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return {name: "service_started" for name in deps}
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def test_compose_parses_and_uses_the_shared_env_anchor(compose, services, sixfold_env) -> None:
    text = COMPOSE.read_text()
    assert "x-sixfold-env: &sixfold-env" in text
    assert "*sixfold-env" in text
    assert sixfold_env == {
        "SIXFOLD_PROFILE": "cluster",
        "SIXFOLD_KAFKA_BOOTSTRAP": "kafka:9092",
        "SIXFOLD_CASSANDRA_HOST": "cassandra:9042",
        "SIXFOLD_SPARK_MASTER": "spark://spark-master:7077",
        "SIXFOLD_SHORTENER_MEMCACHED": "memcached:11211",
        "SIXFOLD_HOME": "/opt/sixfold",
    }
    for name in ("kafka", "cassandra", "memcached", "spark-master", "spark-worker", "api", *CLIENT_SERVICES):
        assert name in services, f"service {name!r} missing"


@pytest.mark.parametrize("name", CLIENT_SERVICES)
def test_every_client_service_gets_the_cluster_settings(services, sixfold_env, name) -> None:
    env = _env(services[name])
    for key, value in sixfold_env.items():
        assert env.get(key) == value, f"{name}: {key}={env.get(key)!r}, expected {value!r}"


@pytest.mark.parametrize("setting", HOST_SETTINGS)
def test_host_settings_name_a_service_on_a_port_it_listens_on(services, sixfold_env, setting) -> None:
    host, port = _host_port(setting, sixfold_env[setting])
    assert host in services, f"{setting} points at {host!r}, which is not a service in compose.yaml"
    ports = listening_ports(services[host])
    assert port in ports, f"{setting} uses port {port}, but service {host!r} listens on {sorted(ports)}"


def test_kafka_is_single_node_kraft_advertising_the_bootstrap(services, sixfold_env) -> None:
    kafka = services["kafka"]
    assert kafka["image"] == "apache/kafka:4.1.1"
    env = _env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    advertised = env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    assert f"PLAINTEXT://{sixfold_env['SIXFOLD_KAFKA_BOOTSTRAP']}" in advertised
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    listener_names = {item.split("://")[0] for item in env["KAFKA_LISTENERS"].split(",")}
    assert listener_names <= set(protocols)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listener_names
    node_id, _, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].partition("@")
    assert node_id == str(env["KAFKA_NODE_ID"])
    voter_host, voter_port = _host_port("KAFKA_CONTROLLER_QUORUM_VOTERS", voter)
    assert voter_host == "kafka" and voter_port in listening_ports(kafka)
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert "-Xmx512m" in env["KAFKA_HEAP_OPTS"]


def test_cassandra_heap_and_cqlsh_healthcheck(services) -> None:
    cassandra = services["cassandra"]
    assert cassandra["image"] == "cassandra:5.0"
    env = _env(cassandra)
    assert (env["MAX_HEAP_SIZE"], env["HEAP_NEWSIZE"]) == ("1G", "200M")
    test = " ".join(cassandra["healthcheck"]["test"])
    assert "cqlsh" in test and "SELECT release_version FROM system.local" in test


def test_spark_worker_points_at_the_master(services, sixfold_env) -> None:
    master_url = sixfold_env["SIXFOLD_SPARK_MASTER"]
    host, port = _host_port("SIXFOLD_SPARK_MASTER", master_url)
    master = _command(services["spark-master"])
    assert "org.apache.spark.deploy.master.Master" in master
    assert master[master.index("--host") + 1] == host
    assert int(master[master.index("--port") + 1]) == port
    worker = _command(services["spark-worker"])
    assert "org.apache.spark.deploy.worker.Worker" in worker and master_url in worker
    assert _depends_on(services["spark-worker"]).get(host) == "service_healthy"


def test_airflow_runs_migrate_then_api_server_scheduler_and_dag_processor(services) -> None:
    assert "airflow db migrate" in " ".join(_command(services["airflow-init"]))
    for name, sub in (
        ("airflow-api-server", "api-server"),
        ("airflow-scheduler", "scheduler"),
        ("airflow-dag-processor", "dag-processor"),
    ):
        assert _command(services[name])[-1] == sub
        assert _depends_on(services[name]).get("airflow-init") == "service_completed_successfully"
        assert "../dags:/opt/airflow/dags:ro" in services[name]["volumes"]
        assert any(v.startswith("..:/opt/sixfold") for v in services[name]["volumes"])


def test_depends_on_names_existing_services_with_valid_conditions(services) -> None:
    for name, service in services.items():
        for dep, condition in _depends_on(service).items():
            assert dep in services, f"{name} depends on {dep!r}, which is not a service"
            assert dep != name, f"{name} depends on itself"
            assert condition in DEPENDS_CONDITIONS, f"{name} -> {dep}: unknown condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy, but it has no healthcheck"


def test_named_volumes_are_declared(compose, services) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in services.items():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else str(volume).split(":")[0]
            if source and not source.startswith((".", "/", "~", "$")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"


def test_api_build_dockerfile_exists_and_has_the_target(services) -> None:
    api = services["api"]
    build = api["build"]
    context = (COMPOSE.parent / build["context"]).resolve()
    dockerfile = context / build.get("dockerfile", "Dockerfile")
    assert dockerfile.is_file(), f"api build uses {dockerfile}, which does not exist"
    text = dockerfile.read_text()
    target = build.get("target")
    if target:
        assert re.search(rf"^FROM\s+python:3\.11-slim\s+AS\s+{re.escape(target)}\s*$", text, re.M | re.I)
    assert "requirements.lock" in text and "pip install --no-deps -e ." in text
    command = " ".join(_command(api))
    assert command.startswith("sixfold serve")
    port = int(re.search(r"--port\s+(\d+)", command).group(1))
    assert port in listening_ports(api)


def test_settings_accept_the_compose_environment_and_point_at_services(services, sixfold_env) -> None:
    settings = Settings.from_env(sixfold_env)
    assert settings.profile == "cluster"
    assert settings.kafka_bootstrap == ("kafka", 9092)
    assert settings.cassandra_contact == ("cassandra", 9042)
    assert settings.spark_master == "spark://spark-master:7077"
    assert settings.home == Path("/opt/sixfold")
    spark_host, spark_port = _host_port("SIXFOLD_SPARK_MASTER", settings.spark_master)
    for host, port in (settings.kafka_bootstrap, settings.cassandra_contact, (spark_host, spark_port)):
        assert host in services, f"Settings point at {host!r}, which is not a compose service"
        assert port in listening_ports(services[host])


def consumer_streams() -> list[str]:
    """Every continuous consumer in streams/ (a door that runs the shared consumer loop)."""
    return sorted(p.name for p in (REPO / "streams").glob("*.py") if "run_consumer(" in p.read_text())


def test_every_stream_consumer_runs_as_its_own_service(services) -> None:
    streams = consumer_streams()
    assert {"post_fanout.py", "search_events.py"} <= set(streams)
    for stream in streams:
        running = [name for name, service in services.items()
                   if f"streams/{stream}" in " ".join(map(str, service.get("command") or []))]
        assert running, f"streams/{stream} has no service in docker/compose.yaml; add one like stream-post-fanout"
        for name in running:
            env = _env(services[name])
            assert env.get("SIXFOLD_PROFILE") == "cluster", name
            assert "sixfold-var:/opt/sixfold/var" in services[name].get("volumes", []), f"{name} cannot reach the lake"
    # every other door in streams/ (a producer run on demand) has a service too, off by default
    for stream in sorted(p.name for p in (REPO / "streams").glob("*.py")):
        if stream in streams:
            continue
        tools = [name for name, service in services.items()
                 if f"streams/{stream}" in " ".join(map(str, service.get("entrypoint") or []))]
        assert tools, f"streams/{stream} has no service in docker/compose.yaml"
        assert all(services[name].get("profiles") for name in tools), f"{tools}: a one-shot tool must not start by default"
    # the API leaves consuming to these services, and says so (serve consumes only on the embedded profile)
    assert "--no-consumers" in services["api"]["command"]
    dockerfile = (REPO / "docker" / "Dockerfile").read_text()
    assert "COPY streams/ ./streams/" in dockerfile
