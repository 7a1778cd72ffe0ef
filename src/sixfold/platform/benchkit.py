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


def serve_command(port: int, workers: int = 1) -> list[str]:
    """The real `sixfold serve` of this venv on `port` with `workers` processes."""
    return [str(Path(sys.executable).parent / "sixfold"), "serve", "--port", str(port), "--workers", str(workers)]


@contextmanager
def sixfold_serving(env: dict[str, str], log_path: Path, workers: int = 1,
                    timeout_s: float = 90.0) -> Iterator[tuple[subprocess.Popen, int]]:
    """`sixfold serve` with `env` on a free port, once its /v1/health answers: yields (process, port); stopped
    (its whole process group) on exit. Its output goes to `log_path`."""
    port = free_port()
    with running(serve_command(port, workers), env, log_path) as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/health", timeout=2).status == 200,
                   proc, "sixfold serve", log_path, timeout_s=timeout_s)
        yield proc, port


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
-- Each line of the requests file: METHOD <tab> path <tab> bearer token or empty <tab> JSON body or empty.
-- GETs are the reads, cycled in order from a per-thread offset; with write_every = N > 0 every N-th
-- request of a thread is the next of the other requests (the writes), which the threads share out.
local threads = {}
local counter = 0
local write_every, nthreads = %(write_every)d, %(threads)d
function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  reads, writes = {}, {}
  for line in io.lines("%(paths)s") do
    local method, path, token, body = line:match("^(%%u+)\t([^\t]*)\t([^\t]*)\t?(.*)$")
    local headers = {}
    if token ~= "" then headers["Authorization"] = "Bearer " .. token end
    if body ~= "" then headers["Content-Type"] = "application/json" else body = nil end
    local req = wrk.format(method, path, headers, body)
    if method == "GET" then reads[#reads + 1] = req else writes[#writes + 1] = req end
  end
  r = (id * 7919) %% #reads
  w = id %% math.max(#writes, 1)
  n, sent_reads, sent_writes = id, 0, 0
end
function request()
  n = n + 1
  if write_every > 0 and #writes > 0 and n %% write_every == 0 then
    sent_writes = sent_writes + 1
    local req = writes[w + 1]
    w = (w + nthreads) %% #writes
    return req
  end
  sent_reads = sent_reads + 1
  r = r %% #reads + 1
  return reads[r]
end
function done(summary, latency, requests)
  io.write(string.format("SIXFOLD requests=%%d duration_us=%%d status_errors=%%d connect=%%d read=%%d write=%%d timeout=%%d\n",
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect,
    summary.errors.read, summary.errors.write, summary.errors.timeout))
  local reads_sent, writes_sent = 0, 0
  for _, thread in ipairs(threads) do
    reads_sent = reads_sent + thread:get("sent_reads")
    writes_sent = writes_sent + thread:get("sent_writes")
  end
  io.write(string.format("SIXFOLD sent_reads=%%d sent_writes=%%d\n", reads_sent, writes_sent))
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
    m = re.search(r"SIXFOLD sent_reads=(\d+) sent_writes=(\d+)", output)
    if m:  # requests sent, counted by the script: the last few may not have been answered when wrk stopped
        result["sent"] = {"reads": int(m.group(1)), "writes": int(m.group(2))}
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
    """Run one part and record the 1-minute load average around it: other work on the box skews figures
    (`busy`: the load average exceeded the cores before or after, so the figures are depressed and noisy)."""
    before = os.getloadavg()[0]
    figures = part()
    after = os.getloadavg()[0]
    return {**figures, "loadavg_1m": {"before": before, "after": after,
                                      "busy": max(before, after) > (os.cpu_count() or 1)}}


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


WrkRequest = str | tuple[str, str] | tuple[str, str, str, str]
"""A GET path; a GET path and the bearer token to send with it; or (method, path, token, JSON body)."""


def _request_lines(requests: list[WrkRequest]) -> list[tuple[str, str, str, str]]:
    out = []
    for r in requests:
        line = ("GET", r, "", "") if isinstance(r, str) else ("GET", r[0], r[1], "") if len(r) == 2 else r
        if any(c in field for field in line for c in "\t\n"):
            raise ValueError(f"a wrk request field holds a tab or newline: {line!r}")
        out.append(line)  # type: ignore[arg-type]
    if not any(method == "GET" for method, *_ in out):
        raise ValueError("wrk needs at least one GET (the reads); writes are mixed in with write_every")
    return out


def wrk_against_serve(env: dict[str, str], paths: list[WrkRequest], expect: str, *,
                      workers: int, threads: int, connections: int, duration_s: int, work: Path, say: Say,
                      what: str = "", write_every: int = 0,
                      after_run: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """`wrk_against` the real `sixfold serve --workers N` with `env` (its health check: /v1/health)."""
    import uvicorn  # only for the version it ran with

    port = free_port()
    return wrk_against(serve_command(port, workers), port, env, paths, expect, health_path="/v1/health",
                       server=f"sixfold serve --workers {workers} (uvicorn {uvicorn.__version__}, loop/http "
                              f"'auto': {uvicorn_impl()})",
                       threads=threads, connections=connections, duration_s=duration_s, work=work, say=say,
                       what=what, write_every=write_every, after_run=after_run)


def wrk_against(cmd: list[str], port: int, env: dict[str, str] | None, requests: list[WrkRequest], expect: str, *,
                health_path: str, server: str, threads: int, connections: int, duration_s: int, work: Path,
                say: Say, what: str = "", write_every: int = 0,
                after_run: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """Start the server `cmd` (listening on `port`), wait for `health_path` and for the first GET of
    `requests` to answer JSON with a non-empty `expect` field (that first request loads the worker's
    data), warm up with wrk for 2 s (every worker loaded), then drive it with wrk: the GETs cycled,
    and with `write_every` = N > 0 every N-th request one of the other requests (the writes).

    Returns wrk's figures (`parse_wrk`: percentiles over every request of the run, from wrk's own
    histogram) with the first answer (`sample`), whether the server was still alive after the run,
    `server`, what `after_run` found (called while the server still runs), and wrk's raw output."""
    wrk = require("wrk")
    lines = _request_lines(requests)
    stem = re.sub(r"[^a-z0-9]+", "-", Path(cmd[0]).name.lower())
    paths_file = work / f"wrk-{stem}-{port}.txt"
    paths_file.write_text("".join("\t".join(line) + "\n" for line in lines))
    script = work / f"wrk-{stem}-{port}.lua"
    script.write_text(WRK_SCRIPT % {"paths": str(paths_file), "write_every": write_every, "threads": threads})
    first = next(line for line in lines if line[0] == "GET")
    base = f"http://127.0.0.1:{port}"
    log_path = work / f"server-{stem}-{port}.log"
    with running(cmd, env, log_path) as proc:
        wait_until(lambda: urllib.request.urlopen(base + health_path, timeout=2).status == 200,
                   proc, server, log_path)
        sample: dict[str, Any] = {}

        def answers() -> bool:
            ask = urllib.request.Request(base + first[1], headers={"Authorization": f"Bearer {first[2]}"}
                                         if first[2] else {})
            with urllib.request.urlopen(ask, timeout=20) as r:
                sample.update(json.loads(r.read()))
            return True

        wait_until(answers, proc, f"{server} (first {first[1]})", log_path, timeout_s=90)
        if not sample.get(expect):
            raise RuntimeError(f"{server} answered {first[1]} with no {expect}: {sample}")
        warm = subprocess.run([wrk, "-t1", "-c8", "-d2s", "-s", str(script), base],
                              capture_output=True, text=True, check=False)
        if warm.returncode != 0:
            raise RuntimeError(f"wrk warm-up failed: {warm.stderr}")
        say(f"wrk -t{threads} -c{connections} -d{duration_s}s against {server.split(' (')[0]} on :{port}{what}")
        run = subprocess.run([wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_s}s", "--latency",
                              "-s", str(script), base], capture_output=True, text=True, check=False)
        if run.returncode != 0:
            raise RuntimeError(f"wrk failed ({run.returncode}): {run.stderr}\n{run.stdout}")
        alive = proc.poll() is None
        found = after_run() if after_run is not None else None
    return {
        **parse_wrk(run.stdout),
        "sample": sample,
        "server": server,
        "server_alive_after": alive,
        **({"after_run": found} if found is not None else {}),
        "wrk_output": run.stdout,
    }


# ---- open-loop load at a fixed rate: vegeta ------------------------------------------------------
# wrk is closed-loop: each connection waits for its answer before sending again, so its percentiles at
# saturation measure the queue it builds itself, and a stalled server is simply asked less
# (coordinated omission). "N requests/s with p99 < X ms" is a question for an open-loop generator that
# sends at N/s whatever the server does: vegeta (Go), built from the Go module proxy on first use.
VEGETA_MODULE = "github.com/tsenart/vegeta/v12@v12.13.0"


def vegeta_binary(home: Path) -> str:
    """vegeta on PATH, else the one built under `home`/var/tools/bin, else built there now with `go install`."""
    found = shutil.which("vegeta")
    if found:
        return found
    bin_dir = home / "var" / "tools" / "bin"
    built = bin_dir / "vegeta"
    if built.exists():
        return str(built)
    go = shutil.which("go")
    if not go:
        raise RuntimeError(f"vegeta is not installed and there is no Go toolchain to build it; install Go, or "
                           f"`go install {VEGETA_MODULE}` and put vegeta on PATH")
    bin_dir.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([go, "install", VEGETA_MODULE], env={**os.environ, "GOBIN": str(bin_dir)},
                          capture_output=True, text=True, check=False)
    if done.returncode != 0 or not built.exists():
        raise RuntimeError(f"`go install {VEGETA_MODULE}` failed: {done.stderr[-2000:]}")
    return str(built)


def vegeta_targets(base: str, requests: list[tuple[str, str, str, str]], write_every: int,
                   credential_header: str = "Authorization") -> list[dict[str, Any]]:
    """vegeta's JSON targets in the order the wrk script sends them: the reads (GETs) cycled, every
    `write_every`-th request the next write. A write's credential goes in `credential_header`
    ("Authorization" sends it as a bearer token)."""
    import base64

    reads = [r for r in requests if r[0] == "GET"]
    writes = [r for r in requests if r[0] != "GET"]

    def target(method: str, path: str, credential: str, body: str) -> dict[str, Any]:
        t: dict[str, Any] = {"method": method, "url": base + path}
        headers: dict[str, list[str]] = {}
        if credential:
            value = f"Bearer {credential}" if credential_header == "Authorization" else credential
            headers[credential_header] = [value]
        if body:
            headers["Content-Type"] = ["application/json"]
            t["body"] = base64.b64encode(body.encode()).decode()
        if headers:
            t["header"] = headers
        return t

    if not write_every or not writes:
        return [target(*r) for r in reads]
    out, w = [], 0
    total = max(len(reads) + len(writes), len(writes) * write_every)
    r = 0
    for i in range(1, total + 1):
        if i % write_every == 0 and w < len(writes):
            out.append(target(*writes[w]))
            w += 1
        else:
            out.append(target(*reads[r % len(reads)]))
            r += 1
    return out


def vegeta_attack(vegeta: str, targets: list[dict[str, Any]], rate: int, duration_s: float, work: Path,
                  stem: str, connections: int = 64) -> dict[str, Any]:
    """Send `targets` (cycled) at `rate` requests/s for `duration_s`, open loop over at most `connections`
    kept-alive connections (as many workers); vegeta's report as our figures: rps (answered per
    second), offered_rps (the rate vegeta managed to send: below `rate` when every connection was
    waiting), p50/p90/p99 ms (vegeta's exact percentiles of every request), non_2xx (answers other than
    2xx/3xx, and requests that failed). Without the cap a server that falls behind gets ever more
    connections (thousands), which no client pool of a real service would open."""
    targets_file = work / f"vegeta-{stem}.jsonl"
    targets_file.write_text("".join(json.dumps(t) + "\n" for t in targets))
    results = work / f"vegeta-{stem}.bin"
    attack = subprocess.run(
        [vegeta, "attack", "-format=json", f"-targets={targets_file}", f"-rate={rate}/s", f"-duration={duration_s}s",
         "-redirects=-1", "-keepalive=true", "-timeout=10s", f"-output={results}",
         f"-connections={connections}", f"-max-connections={connections}", f"-workers={connections}",
         f"-max-workers={connections}"],
        capture_output=True, text=True, check=False)
    if attack.returncode != 0:
        raise RuntimeError(f"vegeta attack failed ({attack.returncode}): {attack.stderr[-2000:]}")
    report = subprocess.run([vegeta, "report", "-type=json", str(results)], capture_output=True, text=True,
                            check=False)
    if report.returncode != 0:
        raise RuntimeError(f"vegeta report failed: {report.stderr[-2000:]}")
    data = json.loads(report.stdout)
    lat = data["latencies"]
    codes = {str(k): int(v) for k, v in (data.get("status_codes") or {}).items()}
    bad = sum(n for code, n in codes.items() if not code.startswith(("2", "3")))
    return {"rps": float(data["throughput"]), "offered_rps": float(data["rate"]), "requests": int(data["requests"]),
            "p50_ms": lat["50th"] / 1e6, "p90_ms": lat["90th"] / 1e6, "p95_ms": lat["95th"] / 1e6,
            "p99_ms": lat["99th"] / 1e6, "max_ms": lat["max"] / 1e6, "non_2xx": bad, "status_codes": codes,
            "success_ratio": float(data["success"]), "errors": (data.get("errors") or [])[:5],
            "generator": (f"vegeta attack -rate={rate}/s -duration={duration_s}s, at most {connections} connections "
                          f"and workers (open loop; {VEGETA_MODULE})")}
