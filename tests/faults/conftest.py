"""Fixtures of the fault-injection suite: a Kafka broker of its own behind a proxy, a proxy in front of the
shared Cassandra, stream consumers as subprocesses, and a record of what each recovery took."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from faults.harness import RESULTS, ProxiedKafka
from faults.proxy import DelayingProxy
from sixfold.platform.settings import Settings


@pytest.fixture(scope="session")
def kafka_proxy(services_running: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DelayingProxy]:
    """A Kafka of the suite's own (the shared one must not be cut), reached only through a DelayingProxy;
    its jars are the shared servers' (nothing fetched). Yields the proxy: `proxy.address` is the bootstrap."""
    from sixfold.platform.benchkit import free_port

    home = tmp_path_factory.mktemp("kafka")
    (home / "var" / "services").mkdir(parents=True)
    (home / "var" / "services" / "cache").symlink_to(services_running.services_dir / "cache")
    port, controller = free_port(), free_port()
    proxy = DelayingProxy(("127.0.0.1", port))
    settings = Settings.from_env({"SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "cluster",
                                  "SIXFOLD_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}",
                                  "SIXFOLD_KAFKA_CONTROLLER_PORT": str(controller)})
    broker = ProxiedKafka(settings, proxy.port)
    broker.start(log=lambda _msg: None)
    proxy.broker = broker  # a test may SIGKILL the broker itself and start it again
    yield proxy
    broker.stop()
    proxy.close()


@pytest.fixture
def cassandra_proxy(services_running: Settings) -> Iterator[DelayingProxy]:
    """A DelayingProxy in front of the shared Cassandra (only this proxy is ever taken down)."""
    proxy = DelayingProxy(services_running.cassandra_contact)
    yield proxy
    proxy.close()


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if RESULTS:
        terminalreporter.section("faults: measured")
        for line in RESULTS:
            terminalreporter.write_line(line)
