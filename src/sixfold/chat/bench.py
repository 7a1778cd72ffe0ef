"""`sixfold bench chat`: messages end to end over real connections, beside ejabberd and a bare relay.

Three servers, one after the other on the same machine, each driven by the same load generator (an
asyncio program in its own process: `python -m sixfold.chat.bench load <spec.json>`) with the same
pattern, `connections` clients on 127.0.0.1 paired up (client 2k talks to 2k+1 and back):

* Sixfold: `sixfold serve` (embedded profile, a fresh SIXFOLD_HOME, abuse limits off: all the load
  comes from one address), users and device tokens made through the HTTP API (`POST /v1/users`,
  `POST /v1/chat/devices`), clients on `/v1/chat/ws?token=` sending `send` frames; the receiving
  client answers every `message` with `ack` `delivered`, and the sender waits for that receipt;
* ejabberd (`sixfold.chat.bench_xmpp`): Debian's ejabberd on free ports with a generated
  configuration, users registered through its HTTP API, slixmpp clients sending `chat` messages
  asking for a XEP-0184 receipt, which the receiving client sends back;
* the ceiling (`sixfold.chat.bench_relay`): a relay of a few lines on the same stack (uvicorn +
  Starlette's WebSocket, orjson) forwarding a `send` to the named peer and its `ack` back.

For each: the server's memory with no client connected (after one warm-up exchange) and with every
client connected and idle (RSS of its whole process group; the difference over the connections is
the memory per idle connection); then two phases, every message timed by its sender from just
before it is written to the socket until the delivered receipt comes back:

1. paced: `paced_rate` messages a second in all, each client sending at an even share of it, the
   clients' start times spread over one interval (an open loop: a message goes at its time, whatever
   the earlier ones are doing) for `paced_s` seconds; the p99 target is judged here;
2. saturated: every client sends `burst` messages, each after the previous one's receipt (one in
   flight per client, `connections` in all): messages/s is the count over the time from the first
   send to the last receipt; the rate target is judged here.

Latency percentiles come from the raw latencies of every message, one function (`percentiles`)
for all three sides. Each side's check: every message sent was delivered to its peer, acknowledged
by it, and its receipt came back once. Results go to `var/bench/chat-<UTC>.json/.png` and
`chat-latest.*`. When ejabberd cannot run here, the JSON and the table say why and the other two
still run. Benchmark tooling, outside the serving path.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from sixfold.platform import benchkit
from sixfold.platform.benchkit import SHARED_CORES_NOTE, Say, free_port, running, wait_until, with_load
from sixfold.platform.settings import Settings

TARGET_P99_MS = 50.0
SIDES = ("sixfold", "ejabberd", "relay")
LABELS = {"sixfold": "Sixfold", "ejabberd": "ejabberd", "relay": "relay (ceiling)"}
LIMITS_OFF = {"SIXFOLD_LIMIT_WRITES_PER_USER": "", "SIXFOLD_LIMIT_WRITES_PER_CLIENT": "",
              "SIXFOLD_LIMIT_SIGNUP_PER_CLIENT": ""}


@dataclass(frozen=True)
class ChatBenchOptions:
    connections: int = 1_000
    paced_rate: float = 100.0  # messages/s in all during the paced phase: each client one every 10 s at 1,000
    paced_s: float = 30.0
    burst: int = 10  # messages per client in the saturated phase, one in flight at a time
    body_bytes: int = 64
    connect_concurrency: int = 50  # connections opened at once
    idle_settle_s: float = 3.0  # after the last connection opened, before the idle RSS is read
    phase_timeout_s: float = 120.0  # a message without its receipt by then counts as lost
    sides: tuple[str, ...] = SIDES

    @classmethod
    def quick(cls) -> ChatBenchOptions:
        return cls(connections=100, paced_rate=200.0, paced_s=2.0, burst=5, idle_settle_s=1.0, phase_timeout_s=30.0)


# ---- figures -----------------------------------------------------------------------------------------
def percentiles(latencies_ms: list[float]) -> dict[str, float]:
    """p50/p90/p99/p99.9 and max by nearest rank over the raw latencies (the same for every side)."""
    if not latencies_ms:
        return {}
    ordered = sorted(latencies_ms)

    def rank(p: float) -> float:
        return ordered[max(0, math.ceil(round(p * len(ordered) / 100, 9)) - 1)]  # round: 99.9% of 1000 is 999

    return {"p50_ms": rank(50), "p90_ms": rank(90), "p99_ms": rank(99), "p99_9_ms": rank(99.9),
            "max_ms": ordered[-1], "mean_ms": sum(ordered) / len(ordered)}


def phase_figures(raw: dict[str, Any]) -> dict[str, Any]:
    """A phase's raw output from the load generator -> counts, rate and percentiles."""
    seconds = raw["seconds"]
    out = {k: raw[k] for k in ("messages", "delivered", "duplicates", "unknown", "received", "receipts_sent",
                               "sent_acks", "errors", "error_sample", "seconds", "client_cpu_s")}
    out["lost"] = raw["messages"] - raw["delivered"]
    out["rate"] = raw["delivered"] / seconds if seconds > 0 else 0.0
    # near 1.0 the load generator (one core at most) was the limit: the side's rate is then a floor
    out["client_cpu_share"] = raw["client_cpu_s"] / seconds if seconds > 0 else 0.0
    out.update(percentiles(raw["latencies_ms"]))
    if raw.get("send_lag_ms"):
        lag = percentiles(raw["send_lag_ms"])
        out["send_lag_ms"] = {"p99": lag["p99_ms"], "max": lag["max_ms"]}
    # where the tail sits in time: clustered (a stall) or spread (queueing)
    out["slowest"] = [{"ms": round(ms, 1), "sent_at_s": round(at, 2)} for ms, at in raw.get("slowest", [])]
    for key in ("offered_rate", "per_client"):
        if key in raw:
            out[key] = raw[key]
    return out


def all_acknowledged(phase: dict[str, Any], sent_acks: bool) -> bool:
    """Every message delivered to its peer, acknowledged by it, its receipt back exactly once."""
    n = phase["messages"]
    return (n > 0 and phase["delivered"] == phase["received"] == phase["receipts_sent"] == n
            and phase["duplicates"] == 0 and phase["unknown"] == 0 and phase["errors"] == 0
            and (not sent_acks or phase["sent_acks"] == n))


# ---- the load generator (its own process) ------------------------------------------------------------
class Link(Protocol):
    async def open(self) -> None: ...
    async def send(self, key: str) -> None: ...
    async def close(self) -> None: ...


class Tracker:
    """One phase's messages: when each was sent, its latency when the receipt came back."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.sent_at: dict[str, float] = {}
        self.done: set[str] = set()
        self.latencies_ms: list[float] = []
        self.sent_offsets_s: list[float] = []  # when each timed message was sent, from the phase's first send
        self.waiters: dict[str, asyncio.Future[None]] = {}
        self.duplicates = self.unknown = 0
        self.first_send = self.last_receipt = 0.0
        self.complete = asyncio.Event()

    def sending(self, key: str) -> None:
        now = time.perf_counter()
        self.sent_at[key] = now
        if not self.first_send:
            self.first_send = now

    def waiter(self, key: str) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters[key] = future
        return future

    def delivered(self, key: str) -> None:
        now = time.perf_counter()
        started = self.sent_at.get(key)
        if started is None:
            self.unknown += 1
            return
        if key in self.done:
            self.duplicates += 1
            return
        self.done.add(key)
        self.latencies_ms.append((now - started) * 1e3)
        self.sent_offsets_s.append(started - self.first_send)
        self.last_receipt = now
        future = self.waiters.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)
        if len(self.done) >= self.expected:
            self.complete.set()


class Counters:
    def __init__(self) -> None:
        self.received = self.receipts_sent = self.sent_acks = self.errors = 0
        self.error_sample: list[str] = []

    def error(self, what: str) -> None:
        self.errors += 1
        if len(self.error_sample) < 5:
            self.error_sample.append(what[:300])


class Run:
    """What the links of one load process report into: the current phase's tracker and counters."""

    def __init__(self) -> None:
        self.tracker = Tracker(0)
        self.counters = Counters()

    def phase(self, expected: int) -> None:
        self.tracker, self.counters = Tracker(expected), Counters()

    def raw(self, messages: int, seconds: float, cpu_s: float) -> dict[str, Any]:
        t, c = self.tracker, self.counters
        return {"messages": messages, "delivered": len(t.done), "duplicates": t.duplicates, "unknown": t.unknown,
                "received": c.received, "receipts_sent": c.receipts_sent, "sent_acks": c.sent_acks,
                "errors": c.errors, "error_sample": c.error_sample, "seconds": seconds,
                "latencies_ms": t.latencies_ms, "client_cpu_s": cpu_s,
                "slowest": sorted(zip(t.latencies_ms, t.sent_offsets_s), reverse=True)[:10]}


class SocketLink:
    """One WebSocket client speaking Sixfold's frames (the relay speaks the same subset)."""

    def __init__(self, run: Run, address: dict[str, Any], body: str) -> None:
        self.run, self.url, self.peer, self.body = run, address["url"], address["peer"], body
        self.ws: Any = None
        self.reader: asyncio.Task[None] | None = None
        self.closing = False

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        self.ws = await connect(self.url, open_timeout=120, compression=None, ping_interval=None, max_size=2**22)
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        from websockets.exceptions import ConnectionClosed

        try:
            async for raw in self.ws:
                frame = orjson.loads(raw)
                kind = frame.get("type")
                if kind == "message":
                    self.run.counters.received += 1
                    await self.ws.send(orjson.dumps({"type": "ack", "message_id": frame["message_id"],
                                                     "status": "delivered"}).decode())
                    self.run.counters.receipts_sent += 1
                elif kind == "ack" and frame.get("status") == "sent":
                    self.run.counters.sent_acks += 1
                elif kind == "ack" and frame.get("status") == "delivered":
                    self.run.tracker.delivered(frame["client_msg_id"])
                elif kind == "error":
                    self.run.counters.error(str(frame))
        except ConnectionClosed as exc:
            if not self.closing:
                self.run.counters.error(f"connection closed: {exc}")

    async def send(self, key: str) -> None:
        text = orjson.dumps({"type": "send", "client_msg_id": key, "to": self.peer, "body": self.body}).decode()
        self.run.tracker.sending(key)
        await self.ws.send(text)

    async def close(self) -> None:
        self.closing = True
        if self.ws is not None:
            await self.ws.close()
        if self.reader is not None:
            await self.reader


def _link(kind: str, run: Run, address: dict[str, Any], body: str) -> Link:
    if kind == "xmpp":
        from sixfold.chat.bench_xmpp import XmppLink

        return XmppLink(run, address, body)
    return SocketLink(run, address, body)


def raise_open_files(needed: int) -> int:
    """The soft open-files limit up to `needed` (at most the hard limit); returns the limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    return soft


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _gather_bounded(coroutines: list[Any], limit: int) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(coroutine: Any) -> None:
        async with gate:
            await coroutine

    await asyncio.gather(*(one(c) for c in coroutines))


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass


async def paced_phase(run: Run, links: list[Link], rate: float, seconds: float, timeout_s: float) -> dict[str, Any]:
    n = len(links)
    interval = n / rate  # each client's time between two of its messages
    per_client = max(1, round(seconds * rate / n))
    run.phase(n * per_client)
    lags: list[float] = []
    cpu = _cpu()
    t0 = time.perf_counter() + 0.2

    async def client(i: int, link: Link) -> None:
        for k in range(per_client):
            due = t0 + (i / n) * interval + k * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(max(0.0, time.perf_counter() - due) * 1e3)
            await link.send(f"p.{i}.{k}")

    await asyncio.gather(*(client(i, link) for i, link in enumerate(links)))
    await _wait(run.tracker.complete, timeout_s)
    t = run.tracker
    raw = run.raw(n * per_client, (t.last_receipt or time.perf_counter()) - t.first_send, _cpu() - cpu)
    return {**raw, "offered_rate": rate, "per_client": per_client, "send_lag_ms": lags}


async def saturated_phase(run: Run, links: list[Link], burst: int, timeout_s: float) -> dict[str, Any]:
    n = len(links)
    run.phase(n * burst)
    cpu = _cpu()
    deadline = time.perf_counter() + timeout_s

    async def client(i: int, link: Link) -> None:
        for k in range(burst):
            key = f"s.{i}.{k}"
            receipt = run.tracker.waiter(key)
            await link.send(key)
            try:
                await asyncio.wait_for(receipt, max(0.1, deadline - time.perf_counter()))
            except TimeoutError:
                return

    await asyncio.gather(*(client(i, link) for i, link in enumerate(links)))
    t = run.tracker
    raw = run.raw(n * burst, (t.last_receipt or time.perf_counter()) - t.first_send, _cpu() - cpu)
    return {**raw, "per_client": burst}


def _emit(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


async def _go() -> None:
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    if line.strip() != "go":
        raise SystemExit("the bench went away")


async def load_main(spec: dict[str, Any]) -> None:
    """The load generator: warm-up pair, connect all, idle, paced phase, saturated phase (see the
    module docstring). Reports JSON lines on stdout; waits for `go` on stdin where the bench reads RSS."""
    addresses, kind = spec["addresses"], spec["kind"]
    raise_open_files(len(addresses) + 1024)
    body = ("chat bench " * (spec["body_bytes"] // 11 + 1))[:spec["body_bytes"]]
    run = Run()
    # warm-up: the first pair connects, exchanges one message each way and leaves (the server's lazy setup)
    warm = [_link(kind, run, a, body) for a in addresses[:2]]
    run.phase(2)
    for link in warm:
        await link.open()
    for i, link in enumerate(warm):
        await link.send(f"w.{i}")
    await _wait(run.tracker.complete, spec["timeout_s"])
    warmed = len(run.tracker.done)
    await asyncio.gather(*(link.close() for link in warm))
    _emit({"event": "warm", "delivered": warmed})
    await _go()

    links = [_link(kind, run, a, body) for a in addresses]
    started = time.perf_counter()
    await _gather_bounded([link.open() for link in links], spec["connect_concurrency"])
    _emit({"event": "connected", "seconds": time.perf_counter() - started, "connections": len(links)})
    await _go()

    paced = await paced_phase(run, links, spec["paced_rate"], spec["paced_s"], spec["timeout_s"])
    await asyncio.sleep(0.5)
    saturated = await saturated_phase(run, links, spec["burst"], spec["timeout_s"])
    _emit({"event": "done", "paced": paced, "saturated": saturated})
    try:
        await asyncio.wait_for(asyncio.gather(*(link.close() for link in links), return_exceptions=True), 30)
    except TimeoutError:
        pass


# ---- the bench process: servers, accounts, memory ----------------------------------------------------
def group_rss(pid: int) -> int:
    """Resident bytes of every process in the process group `pid` leads (a server and its helpers)."""
    import psutil

    total = 0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pid:
                total += proc.memory_info().rss
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def group_cpu(pid: int) -> float:
    import psutil

    total = 0.0
    for proc in psutil.process_iter(["pid"]):
        try:
            if os.getpgid(proc.pid) == pid:
                times = proc.cpu_times()
                total += times.user + times.system
        except (ProcessLookupError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def _read_event(stream: IO[str], load: subprocess.Popen, stderr_path: Path, want: str) -> dict[str, Any]:
    line = stream.readline()
    if not line:
        load.wait(timeout=10)
        raise RuntimeError(f"the load generator exited ({load.returncode}) before '{want}':\n"
                           f"{benchkit.tail(stderr_path, 30)}")
    event = json.loads(line)
    if event.get("event") != want:
        raise RuntimeError(f"the load generator said {event.get('event')!r}, expected {want!r}")
    return event


def drive(kind: str, addresses: list[dict[str, Any]], server: subprocess.Popen, opts: ChatBenchOptions,
          work: Path, name: str, say: Say) -> dict[str, Any]:
    """Run the load generator against a started server; the server's RSS with none and with every
    client connected; each phase's figures."""
    spec = {"kind": kind, "addresses": addresses, "paced_rate": opts.paced_rate, "paced_s": opts.paced_s,
            "burst": opts.burst, "body_bytes": opts.body_bytes, "connect_concurrency": opts.connect_concurrency,
            "timeout_s": opts.phase_timeout_s}
    spec_path, stderr_path = work / f"load-{name}.json", work / f"load-{name}.log"
    spec_path.write_text(json.dumps(spec))
    with open(stderr_path, "wb") as errors:
        load = subprocess.Popen([sys.executable, "-m", "sixfold.chat.bench", "load", str(spec_path)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors, text=True)
        assert load.stdin is not None and load.stdout is not None
        try:
            warm = _read_event(load.stdout, load, stderr_path, "warm")
            if warm["delivered"] != 2:
                raise RuntimeError(f"{name}: the warm-up pair's messages were not both delivered ({warm})")
            time.sleep(opts.idle_settle_s)  # the same settling time as before the idle reading
            rss_none = group_rss(server.pid)
            load.stdin.write("go\n")
            load.stdin.flush()
            connected = _read_event(load.stdout, load, stderr_path, "connected")
            say(f"{name}: {connected['connections']:,} connections open in {connected['seconds']:.1f} s")
            time.sleep(opts.idle_settle_s)
            rss_idle = group_rss(server.pid)
            cpu_before = group_cpu(server.pid)
            load.stdin.write("go\n")
            load.stdin.flush()
            done = _read_event(load.stdout, load, stderr_path, "done")
            server_cpu = group_cpu(server.pid) - cpu_before
            alive = server.poll() is None
            load.wait(timeout=60)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()
    n = len(addresses)
    return {
        "connections": n, "connect_s": connected["seconds"],
        "memory": {"rss_none_bytes": rss_none, "rss_idle_bytes": rss_idle,
                   "per_idle_connection_bytes": (rss_idle - rss_none) / n},
        "paced": phase_figures(done["paced"]), "saturated": phase_figures(done["saturated"]),
        "server_cpu_s_both_phases": server_cpu, "server_alive_after": alive,
    }


def pairs(n: int) -> list[int]:
    """The peer of each client: 0<->1, 2<->3, ..."""
    return [i + 1 if i % 2 == 0 else i - 1 for i in range(n)]


async def _sixfold_accounts(base: str, n: int, concurrency: int = 16) -> list[tuple[int, str]]:
    """n users and a device token each, through the HTTP API, as a client would make them."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60) as http:
        async def one(i: int) -> tuple[int, str]:
            async with gate:
                answer = await http.post("/v1/users", json={"username": f"chatbench{i}"})
                if answer.status_code != 201:
                    raise RuntimeError(f"POST /v1/users: HTTP {answer.status_code} {answer.text[:300]}")
                user = answer.json()
                answer = await http.post("/v1/chat/devices", headers={"Authorization": f"Bearer {user['token']}"},
                                         json={"user_id": user["user_id"], "device_id": "bench"})
                if answer.status_code != 201:
                    raise RuntimeError(f"POST /v1/chat/devices: HTTP {answer.status_code} {answer.text[:300]}")
                return user["user_id"], answer.json()["token"]

        return list(await asyncio.gather(*(one(i) for i in range(n))))


def bench_sixfold(opts: ChatBenchOptions, work: Path, say: Say) -> dict[str, Any]:
    import uvicorn

    home = work / "sixfold-home"
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded", **LIMITS_OFF}
    log_path = work / "sixfold-serve.log"
    with benchkit.sixfold_serving(env, log_path) as (proc, port):
        base = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        accounts = asyncio.run(_sixfold_accounts(base, opts.connections))
        say(f"Sixfold: {len(accounts):,} users and device tokens through the HTTP API in "
            f"{time.perf_counter() - started:.1f} s")
        peer = pairs(len(accounts))
        addresses = [{"url": f"ws://127.0.0.1:{port}/v1/chat/ws?token={token}", "peer": accounts[peer[i]][0]}
                     for i, (_, token) in enumerate(accounts)]
        out = drive("socket", addresses, proc, opts, work, "Sixfold", say)
    if not out["server_alive_after"]:
        out["server_log_tail"] = benchkit.tail(log_path, 40)
    return {**out, "server": (f"sixfold serve --workers 1 (uvicorn {uvicorn.__version__}, loop/http/ws 'auto': "
                              f"{benchkit.uvicorn_impl()}), embedded profile (SQLite store, spool bus), the stream "
                              "consumers in process, abuse limits off")}


def bench_relay(opts: ChatBenchOptions, work: Path, say: Say) -> dict[str, Any]:
    import starlette
    import uvicorn

    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "sixfold.chat.bench_relay:create_app", "--factory", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning", "--no-access-log"]
    log_path = work / "relay.log"
    with running(cmd, None, log_path) as proc:
        import urllib.request

        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).status == 200,
                   proc, "relay", log_path)
        peer = pairs(opts.connections)
        addresses = [{"url": f"ws://127.0.0.1:{port}/ws?user={i}", "peer": peer[i]} for i in range(opts.connections)]
        out = drive("socket", addresses, proc, opts, work, "relay", say)
    return {**out, "server": (f"uvicorn {uvicorn.__version__} (loop/http/ws 'auto': {benchkit.uvicorn_impl()}), "
                              f"one process, Starlette {starlette.__version__} WebSocket, orjson; forwards and "
                              "stores nothing (sixfold.chat.bench_relay)")}


def bench_ejabberd(opts: ChatBenchOptions, work: Path, say: Say) -> dict[str, Any]:
    from sixfold.chat import bench_xmpp

    users = [f"u{i}" for i in range(opts.connections)]
    with bench_xmpp.server(work) as server:
        started = time.perf_counter()
        asyncio.run(bench_xmpp.register(server.http_port, users))
        say(f"ejabberd: {len(users):,} users registered through mod_http_api in {time.perf_counter() - started:.1f} s")
        peer = pairs(len(users))
        addresses = [{"jid": bench_xmpp.jid(u), "peer_jid": bench_xmpp.jid(users[peer[i]]), "host": "127.0.0.1",
                      "port": server.c2s_port} for i, u in enumerate(users)]
        out = drive("xmpp", addresses, server.proc, opts, work, "ejabberd", say)
    import slixmpp

    return {**out, "server": f"{server.description}; clients slixmpp {slixmpp.__version__}"}


# ---- judging, report ---------------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def summarise(result: dict[str, Any], opts: ChatBenchOptions) -> None:
    ran = {side: result[side] for side in SIDES if "paced" in result.get(side, {})}
    for side, figures in ran.items():
        figures["all_acknowledged"] = {phase: all_acknowledged(figures[phase], sent_acks=side != "ejabberd")
                                       for phase in ("paced", "saturated")}
    s, e, r = (ran.get(side) for side in SIDES)
    rate = {side: f["saturated"]["rate"] for side, f in ran.items()}
    result["ratios"] = {
        "saturated_rate_sixfold_over_ejabberd": _ratio(rate.get("sixfold"), rate.get("ejabberd")),
        "saturated_rate_sixfold_over_relay": _ratio(rate.get("sixfold"), rate.get("relay")),
        "saturated_rate_ejabberd_over_relay": _ratio(rate.get("ejabberd"), rate.get("relay")),
        "memory_per_connection_sixfold_over_ejabberd": _ratio(
            s and s["memory"]["per_idle_connection_bytes"], e and e["memory"]["per_idle_connection_bytes"]),
        "memory_per_connection_sixfold_over_relay": _ratio(
            s and s["memory"]["per_idle_connection_bytes"], r and r["memory"]["per_idle_connection_bytes"]),
    }
    targets: dict[str, Any] = {"p99_ms": TARGET_P99_MS, "connections": opts.connections,
                               "p99_judged_on": f"the paced phase ({opts.paced_rate:,.0f} messages/s offered over "
                                                f"{opts.connections:,} connections)",
                               "rate_judged_on": "the saturated phase (one message in flight per connection)"}
    if s is not None:
        targets["p99_met"] = s["paced"].get("p99_ms", math.inf) < TARGET_P99_MS and s["paced"]["lost"] == 0
        targets["p99_saturated_met"] = s["saturated"].get("p99_ms", math.inf) < TARGET_P99_MS
        if e is not None:
            targets["rate_met"] = s["saturated"]["rate"] >= e["saturated"]["rate"]
        else:
            targets["rate_met"] = None
            targets["rate_not_judged"] = f"ejabberd did not run: {result['ejabberd'].get('skipped', '?')}"
    result["targets"] = targets
    result["conditions"] = {
        "pattern": (f"{opts.connections:,} clients on 127.0.0.1 in pairs, each sending to its partner and answering "
                    f"its partner's messages with a delivered receipt; bodies of {opts.body_bytes} bytes; paced: "
                    f"{opts.paced_rate:,.0f} messages/s in all for {opts.paced_s:g} s (each client evenly spaced, "
                    f"open loop); saturated: {opts.burst} messages per client, the next after the previous one's "
                    "receipt; latency = the sender's time from writing the message to reading its delivered "
                    "receipt; percentiles by nearest rank over every message (one function for all sides)"),
        "load_generator": ("one asyncio process (python -m sixfold.chat.bench load), apart from the server: "
                           "websockets' asyncio client (no compression) for Sixfold and the relay, slixmpp for "
                           "ejabberd (XML parsing in Python costs the XMPP clients more CPU: client_cpu_s per phase)"),
        "memory": ("RSS of the server's process group with every client connected and idle, minus with none "
                   f"connected (after a one-pair warm-up exchange), over {opts.connections:,}; each read "
                   f"{opts.idle_settle_s:g} s after the last change; noisy with few connections"),
        "ratios": "the 'vs' columns: Sixfold's figure over the peer's (messages/s, memory per idle connection)",
    }


def _kib(n: float | None) -> str:
    return f"{n / 1024:,.1f}" if n is not None else "-"


def _x(ratio: float | None) -> str:
    return f"{ratio:.2f}x" if ratio else "-"


def figures_rows(result: dict[str, Any]) -> list[tuple[str, ...]]:
    sides = {side: result[side] if "paced" in result.get(side, {}) else None for side in SIDES}

    def row(label: str, value: Any, ratio_of: Any = None) -> tuple[str, ...]:
        cells = [value(sides[side]) if sides[side] else "did not run" for side in SIDES]
        ratios: tuple[str, ...] = ("", "")
        if ratio_of is not None and sides["sixfold"]:
            ours = ratio_of(sides["sixfold"])
            ratios = tuple(_x(_ratio(ours, ratio_of(sides[peer]))) if sides[peer] else "-"
                           for peer in ("ejabberd", "relay"))
        return (label, *cells, *ratios)

    def ms(phase: str) -> Any:
        return lambda f: f"{f[phase].get('p50_ms', math.nan):.1f} / {f[phase].get('p99_ms', math.nan):.1f}"

    def counts(phase: str) -> Any:
        return lambda f: (f"{f[phase]['delivered']:,} of {f[phase]['messages']:,}"
                          + ("" if f["all_acknowledged"][phase] else " (NOT all acked)"))

    paced_rate = result["options"]["paced_rate"]
    return [
        row("saturated: messages/s", lambda f: f"{f['saturated']['rate']:,.0f}",
            lambda f: f["saturated"]["rate"]),
        row("saturated: p50 / p99 ms", ms("saturated")),
        row(f"paced {paced_rate:,.0f}/s: p50 / p99 ms", ms("paced")),
        row(f"paced {paced_rate:,.0f}/s: delivered/s", lambda f: f"{f['paced']['rate']:,.0f}"),
        row("receipts, paced", counts("paced")),
        row("receipts, saturated", counts("saturated")),
        row("KiB per idle connection", lambda f: _kib(f["memory"]["per_idle_connection_bytes"]),
            lambda f: f["memory"]["per_idle_connection_bytes"]),
        row("RSS MiB, none / idle", lambda f: (f"{f['memory']['rss_none_bytes'] / 2**20:,.0f} / "
                                                           f"{f['memory']['rss_idle_bytes'] / 2**20:,.0f}")),
        row("seconds to connect all", lambda f: f"{f['connect_s']:.1f}"),
        row("CPU s both phases, server / client",
            lambda f: (f"{f['server_cpu_s_both_phases']:.1f} / "
                       f"{f['paced']['client_cpu_s'] + f['saturated']['client_cpu_s']:.1f}")),
    ]


def _verdicts(result: dict[str, Any]) -> list[str]:
    t = result["targets"]
    out = []
    if "p99_met" in t:
        p99 = result["sixfold"]["paced"].get("p99_ms", math.nan)
        out.append(f"target p99 < {TARGET_P99_MS:.0f} ms at {t['connections']:,} connections, judged on "
                   f"{t['p99_judged_on']}: {p99:.1f} ms, {'met' if t['p99_met'] else 'NOT met'} (saturated phase: "
                   f"{result['sixfold']['saturated'].get('p99_ms', math.nan):.1f} ms, "
                   f"{'met' if t['p99_saturated_met'] else 'NOT met'})")
        if t["rate_met"] is None:
            out.append(f"target rate >= ejabberd's: not judged ({t['rate_not_judged']})")
        else:
            out.append(f"target rate >= ejabberd's, judged on {t['rate_judged_on']}: "
                       f"{_x(result['ratios']['saturated_rate_sixfold_over_ejabberd'])}, "
                       f"{'met' if t['rate_met'] else 'NOT met'}")
    return out


def print_table(result: dict[str, Any]) -> None:
    notes = _verdicts(result)
    for side in SIDES:
        if "skipped" in result.get(side, {}):
            notes.append(f"[yellow]{LABELS[side]} did not run: {result[side]['skipped']}[/yellow]")
        elif "server" in result.get(side, {}):
            notes.append(f"{LABELS[side]}: {result[side]['server']}")
    c = result["conditions"]
    bound = [LABELS[side] for side in SIDES if "saturated" in result.get(side, {})
             and result[side]["saturated"]["client_cpu_share"] > 0.8]
    if bound:
        notes.append(f"[yellow]the load generator used more than 0.8 of a core in the saturated phase of "
                     f"{', '.join(bound)}: that rate is a floor of what the server can do[/yellow]")
    notes += [c["ratios"], f"pattern: {c['pattern']}", f"load: {c['load_generator']}", f"memory: {c['memory']}",
              f"[dim]{result['host']['note']}[/dim]"]
    loads = [result[side]["loadavg_1m"] for side in SIDES if "loadavg_1m" in result.get(side, {})]
    if any(x["busy"] for x in loads):
        notes.append(f"[yellow]the box was busy (1-minute load above {result['host']['cores']} cores) around "
                     f"{sum(x['busy'] for x in loads)} of {len(loads)} sides: figures depressed and noisy[/yellow]")
    benchkit.print_table(f"sixfold bench chat ({result['options']['connections']:,} connections)",
                         ("measure", *(LABELS[s] for s in SIDES), "vs ejabberd", "vs relay"),
                         figures_rows(result), notes)


def draw_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    ran = [side for side in SIDES if "paced" in result.get(side, {})]
    colors = {"sixfold": "#2b7bba", "ejabberd": "#6a994e", "relay": "#d1495b"}
    fig, axes = plt.subplots(1, 3, figsize=(17, 4.8))
    names = [LABELS[s] for s in ran]
    rates = [result[s]["saturated"]["rate"] for s in ran]
    axes[0].bar(names, rates, color=[colors[s] for s in ran])
    for j, v in enumerate(rates):
        axes[0].annotate(f"{v:,.0f}", (j, v), ha="center", va="bottom", fontsize=8)
    axes[0].set_ylabel("messages/s (send -> delivered receipt)")
    ratio = result["ratios"]["saturated_rate_sixfold_over_ejabberd"]
    axes[0].set_title(f"saturated rate (Sixfold {_x(ratio)} ejabberd, "
                      f"{_x(result['ratios']['saturated_rate_sixfold_over_relay'])} the relay)", fontsize=9)
    groups = ["paced p50", "paced p99", "saturated p50", "saturated p99"]
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(ran))
    for i, side in enumerate(ran):
        f = result[side]
        values = [f["paced"].get("p50_ms", 0), f["paced"].get("p99_ms", 0), f["saturated"].get("p50_ms", 0),
                  f["saturated"].get("p99_ms", 0)]
        axes[1].bar(x + (i - (len(ran) - 1) / 2) * width, values, width, label=LABELS[side], color=colors[side])
    axes[1].axhline(TARGET_P99_MS, color="grey", linestyle="--", linewidth=0.8)
    axes[1].set_xticks(x, groups, fontsize=8)
    axes[1].set_yscale("log")
    axes[1].set_ylabel("ms (log)")
    axes[1].set_title(f"latency (target p99 < {TARGET_P99_MS:.0f} ms, paced phase)", fontsize=9)
    axes[1].legend(fontsize=7)
    memory = [result[s]["memory"]["per_idle_connection_bytes"] / 1024 for s in ran]
    axes[2].bar(names, memory, color=[colors[s] for s in ran])
    for j, v in enumerate(memory):
        axes[2].annotate(f"{v:,.1f}", (j, v), ha="center", va="bottom", fontsize=8)
    axes[2].set_ylabel("KiB of server RSS per idle connection")
    axes[2].set_title("memory per idle connection", fontsize=9)
    t = result["targets"]
    verdict = ("p99 " + ("met" if t.get("p99_met") else "NOT met") + ", rate "
               + ("not judged" if t.get("rate_met") is None else "met" if t["rate_met"] else "NOT met"))
    fig.suptitle(f"sixfold bench chat, {result['started_at']}: {result['options']['connections']:,} connections, "
                 f"{result['host']['cores']} cores shared; {verdict}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run(settings: Settings, opts: ChatBenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Every side, the table, the JSON and the chart; returns (result, json, png)."""
    if opts.connections < 2 or opts.connections % 2:
        raise RuntimeError("connections must be an even number >= 2 (clients talk in pairs)")
    unknown = set(opts.sides) - set(SIDES)
    if unknown or "sixfold" not in opts.sides:
        raise RuntimeError(f"sides must include sixfold and be among {', '.join(SIDES)}")
    limit = raise_open_files(opts.connections * 2 + 1024)  # inherited by the servers and the load generator
    if limit < opts.connections + 256:
        raise RuntimeError(f"the open-files limit is {limit} (hard limit too low for {opts.connections} "
                           "connections); raise it with ulimit -Hn")
    result = benchkit.new_result("chat", opts, SHARED_CORES_NOTE + "; one server runs at a time")
    parts = {"relay": bench_relay, "sixfold": bench_sixfold, "ejabberd": bench_ejabberd}
    with tempfile.TemporaryDirectory(prefix="sixfold-bench-chat-") as tmp:
        work = Path(tmp)
        for side in ("relay", "sixfold", "ejabberd"):
            if side not in opts.sides:
                result[side] = {"skipped": "not asked for (sides option)"}
                continue
            if side == "ejabberd":
                from sixfold.chat.bench_xmpp import unavailable

                why = unavailable()
                if why:
                    say(f"ejabberd skipped: {why}")
                    result[side] = {"skipped": why}
                    continue
            say(f"{LABELS[side]}: {opts.connections:,} connections ...")
            try:
                result[side] = with_load(lambda side=side: parts[side](opts, work, say))  # type: ignore[misc]
            except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, the others still run
                if side == "sixfold":
                    raise
                say(f"{LABELS[side]} failed: {exc}")
                result[side] = {"skipped": f"failed: {exc}"[:2000]}
                continue
            f = result[side]
            say(f"{LABELS[side]}: saturated {f['saturated']['rate']:,.0f} messages/s (p99 "
                f"{f['saturated'].get('p99_ms', math.nan):.1f} ms), paced p99 {f['paced'].get('p99_ms', math.nan):.1f} "
                f"ms, {f['memory']['per_idle_connection_bytes'] / 1024:,.1f} KiB per idle connection")
    summarise(result, opts)
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = benchkit.write_outputs("chat", result, settings.var / "bench", draw_chart)
    return result, json_path, png_path


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "load":
        asyncio.run(load_main(json.loads(Path(sys.argv[2]).read_text())))
    else:
        raise SystemExit("usage: python -m sixfold.chat.bench load <spec.json>")
