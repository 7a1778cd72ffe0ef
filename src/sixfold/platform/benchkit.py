"""What every `sixfold bench <system>` shares: starting and stopping servers, wrk runs and their
parsing, the load average around each part, and writing the JSON and chart under `var/bench/`."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sixfold.platform.processes import stop_group

SHARED_CORES_NOTE = ("servers, load generators and engines share the same {cores} cores; each peer runs alone "
                     "(one after the other), but its load generator competes with it for CPU")


Say = Callable[[str], None]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running(cmd: list[str], env: dict[str, str] | None, log_path: Path) -> Iterator[subprocess.Popen]:
    """Start `cmd` in its own process group; on exit stop that group (TERM, then KILL after 10 s)."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            yield proc
        finally:
            stop_group(proc)


def wait_until(check: Callable[[], bool], proc: subprocess.Popen, what: str, log_path: Path,
               timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; log: {log_path}\n{tail(log_path)}")
        try:
            if check():
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready in {timeout_s:.0f} s; log: {log_path}\n{tail(log_path)}")


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def require(tool: str) -> str:
    found = shutil.which(tool)
    if not found:
        raise RuntimeError(f"{tool} is not installed; install the Debian package ({tool}) and rerun")
    return found


WRK_SCRIPT = r"""
local threads = {}
local counter = 0
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  paths, auth = {}, {}
  for line in io.lines("%(paths)s") do
    local path, token = line:match("^([^\t]*)\t?(.*)$")
    paths[#paths + 1] = path
    auth[#paths] = token ~= "" and {["Authorization"] = "Bearer " .. token} or nil
  end
  i = (id * 7919) %% #paths
end
function request()
  i = i %% #paths + 1
  return wrk.format("GET", paths[i], auth[i])
end
function done(summary, latency, requests)
  io.write(string.format("SIXFOLD requests=%%d duration_us=%%d status_errors=%%d connect=%%d read=%%d write=%%d timeout=%%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
  for _, p in ipairs({50, 90, 99, 99.9}) do
    io.write(string.format("SIXFOLD p%%g_us=%%d\n", p, latency:percentile(p)))
  end
end
"""

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"unparseable wrk latency {text!r}")
    return float(m.group(1)) * _UNITS_MS[m.group(2)]


def parse_wrk(output: str) -> dict[str, Any]:
    """Requests/s, latency percentiles, non-2xx and socket errors from wrk --latency output (+ our done hook)."""
    result: dict[str, Any] = {}
    m = re.search(r"Requests/sec:\s+([\d.]+)", output)
    if not m:
        raise ValueError("no 'Requests/sec' in wrk output:\n" + output)
    result["rps"] = float(m.group(1))
    dist = output.split("Latency Distribution", 1)[1] if "Latency Distribution" in output else ""
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s*{pct}%\s+(\S+)", dist, re.MULTILINE)
        if m:
            result[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+\w+)", output)
    if m:
        result["requests"] = int(m.group(1))
    m = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"SIXFOLD requests=(\d+) duration_us=(\d+) status_errors=(\d+) connect=(\d+) read=(\d+) "
                  r"write=(\d+) timeout=(\d+)", output)
    if m:
        requests, duration_us, status, *sockets = (int(g) for g in m.groups())
        result["requests"], result["duration_s"] = requests, duration_us / 1e6
        result["non_2xx"] = max(result["non_2xx"], status)
        result["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), sockets))
    m = re.search(r"SIXFOLD p99\.9_us=(\d+)", output)
    if m:
        result["p99_9_ms"] = int(m.group(1)) / 1e3
    return result


def uvicorn_impl() -> str:
    """What uvicorn's 'auto' picks: uvloop and httptools when importable."""
    picks = []
    for name, fallback in (("uvloop", "asyncio"), ("httptools", "h11")):
        try:
            __import__(name)
            picks.append(name)
        except ImportError:
            picks.append(fallback)
    return "/".join(picks)


def with_load(part: Callable[[], dict]) -> dict:
    """Run one part and record the 1-minute load average around it: other work on the box skews figures."""
    before = os.getloadavg()[0]
    figures = part()
    return {**figures, "loadavg_1m": {"before": before, "after": os.getloadavg()[0]}}


def write_outputs(system: str, result: dict, directory: Path, draw: Callable[[dict, Path], None]) -> tuple[Path, Path]:
    """`<system>-<UTC>.json/.png` and copies as `<system>-latest.*`; returns the two stamped paths."""
    directory.mkdir(parents=True, exist_ok=True)
    stamp = result["started_at"].replace("-", "").replace(":", "")
    json_path, png_path = directory / f"{system}-{stamp}.json", directory / f"{system}-{stamp}.png"
    json_path.write_text(json.dumps(result, indent=1, default=str))
    draw(result, png_path)
    shutil.copyfile(json_path, directory / f"{system}-latest.json")
    shutil.copyfile(png_path, directory / f"{system}-latest.png")
    return json_path, png_path


def print_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], notes: list[str]) -> None:
    """The figures as a table on stdout (the first column left-aligned), then each note."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column == columns[0] else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    console.print(table)
    for note in notes:
        console.print(note)


def new_result(system: str, options: Any, note: str = SHARED_CORES_NOTE) -> dict[str, Any]:
    """The head of every result JSON: system, start time, the options, and the machine it ran on."""
    cores = os.cpu_count() or 1
    return {
        "system": system,
        "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": asdict(options),
        "host": {"cores": cores, "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
                 "python": sys.version.split()[0], "note": note.format(cores=cores)},
    }


def wrk_against_serve(env: dict[str, str], paths: list[str] | list[tuple[str, str]], expect: str, *,
                      workers: int, threads: int,
                      connections: int, duration_s: int, work: Path, say: Say, what: str = "") -> dict[str, Any]:
    """Start `sixfold serve --workers N` with `env`, wait for /v1/health and for the first of `paths`
    to answer JSON with a non-empty `expect` field (that first request loads the worker's data), warm
    up with wrk for 2 s (every worker loaded), then drive it with wrk cycling `paths`.

    A path may come with a bearer token, `(path, token)`, sent with every request for it.
    Returns wrk's figures (`parse_wrk`) with the first answer (`sample`), whether the server was still
    alive after the run, a description of the server, and wrk's raw output."""
    import uvicorn  # only for the version it ran with

    wrk = require("wrk")
    paths_file = work / "wrk-paths.txt"
    pairs = [(p, "") if isinstance(p, str) else p for p in paths]
    paths_file.write_text("".join(f"{path}\t{token}\n" for path, token in pairs))
    script = work / "wrk-paths.lua"
    script.write_text(WRK_SCRIPT % {"paths": str(paths_file)})
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "sixfold"), "serve", "--port", str(port), "--workers", str(workers)]
    base = f"http://127.0.0.1:{port}"
    log_path = work / "serve.log"
    with running(cmd, env, log_path) as proc:
        wait_until(lambda: urllib.request.urlopen(base + "/v1/health", timeout=2).status == 200,
                   proc, "sixfold serve", log_path)
        sample: dict[str, Any] = {}

        def answers() -> bool:
            first = urllib.request.Request(base + pairs[0][0], headers={"Authorization": f"Bearer {pairs[0][1]}"}
                                           if pairs[0][1] else {})
            with urllib.request.urlopen(first, timeout=20) as r:
                sample.update(json.loads(r.read()))
            return True

        wait_until(answers, proc, f"sixfold serve (first {pairs[0][0]})", log_path, timeout_s=90)
        if not sample.get(expect):
            raise RuntimeError(f"sixfold serve answered {pairs[0][0]} with no {expect}: {sample}")
        warm = subprocess.run([wrk, "-t1", "-c8", "-d2s", "-s", str(script), base],
                              capture_output=True, text=True, check=False)
        if warm.returncode != 0:
            raise RuntimeError(f"wrk warm-up failed: {warm.stderr}")
        say(f"wrk -t{threads} -c{connections} -d{duration_s}s against sixfold serve (--workers {workers}) "
            f"on :{port}{what}")
        run = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency",
                              "-s", str(script), base], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr}\n{run.stdout}")
        alive = proc.poll() is None
    return {
        **parse_wrk(run.stdout),
        "sample": sample,
        "server": f"sixfold serve --workers {workers} (uvicorn {uvicorn.__version__}, loop/http 'auto': "
                  f"{uvicorn_impl()})",
        "server_alive_after": alive,
        "wrk_output": run.stdout,
    }
