"""`sixfold services up` twice at once (two shells, two test processes): one server, both told it is up.
The oracle is the process table: one memcached on the port, whose pid both answers name."""

from __future__ import annotations

import shutil
import threading

import pytest

from sixfold.platform.benchkit import free_port
from sixfold.platform.services.runner import Memcached, pid_alive
from sixfold.platform.settings import Settings


@pytest.mark.skipif(shutil.which("memcached") is None, reason="memcached (Debian) is not installed")
def test_two_starts_at_once_start_one_server(tmp_path) -> None:
    port = free_port()
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path), "SIXFOLD_SHORTENER_MEMCACHED": f"127.0.0.1:{port}"})
    services = [Memcached(settings) for _ in range(2)]
    barrier = threading.Barrier(2, timeout=60)
    answers: list[str] = []
    errors: list[BaseException] = []

    def start(service: Memcached) -> None:
        try:
            barrier.wait()
            answers.append(service.start(log=lambda _line: None))
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in services]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    try:
        assert errors == []  # before the lock: "exited during start-up ... Address already in use"
        pid = services[0].pid()
        assert pid is not None and pid_alive(pid)
        assert sorted(a.split(" (pid")[0] for a in answers) == ["memcached already running", "memcached up"]
        assert all(f"pid {pid})" in a for a in answers)
    finally:
        services[0].stop()
