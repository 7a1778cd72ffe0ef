"""The chat benchmark's XMPP peer: Debian's ejabberd, started by the bench, driven by slixmpp clients.

`server` starts ejabberd's Erlang application directly (what `ejabberdctl foreground` runs, without
its switch to the `ejabberd` system user, so any user can run the bench and the scratch directory
needs no ownership change) with a generated configuration: one virtual host, a client listener on
a free port with no shaper and no TLS (the WebSocket sides are plain `ws://` too), internal
authentication (passwords stored plain, logins with SASL PLAIN) with Mnesia in the scratch directory, offline storage (`mod_offline`, as Sixfold's
pending store), and `mod_http_api` on another free port, loopback only, allowed the `register`
and `status` commands: the bench registers its users through it (the command `ejabberdctl
register` runs) instead of starting an Erlang VM per user. No distribution, so no epmd and no
cookie.

`XmppLink` is one client: PLAIN login, initial presence, messages of type `chat` to the peer's full
JID asking for a XEP-0184 receipt; a received message is answered with its `<received/>` receipt,
and a receipt that comes back marks the message delivered. Benchmark tooling, outside the serving path.
"""

from __future__ import annotations

import asyncio
import functools
import glob
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sixfold.platform.benchkit import free_port, running, wait_until

DOMAIN = "bench.localhost"
RESOURCE = "bench"
PASSWORD = "bench-password"

CONFIG = """\
hosts:
  - "{domain}"
loglevel: warning
certfiles: []
listen:
  - port: {c2s_port}
    ip: "127.0.0.1"
    module: ejabberd_c2s
    max_stanza_size: 262144
    shaper: none
    access: c2s
    starttls: false
  - port: {http_port}
    ip: "127.0.0.1"
    module: ejabberd_http
    request_handlers:
      /api: mod_http_api
auth_method: internal
auth_password_format: plain
default_db: mnesia
access_rules:
  c2s:
    allow: all
api_permissions:
  "the bench registers its users":
    from:
      - mod_http_api
    who:
      ip: 127.0.0.1/8
    what:
      - "register"
      - "status"
modules:
  mod_http_api: {{}}
  mod_roster: {{}}
  mod_disco: {{}}
  mod_offline: {{}}
  mod_ping: {{}}
  mod_stream_mgmt: {{}}
"""


def release_dir() -> Path | None:
    """Debian's ejabberd release (`/usr/lib/<arch>/ejabberd-<version>`), or None when not installed."""
    found = sorted(p for p in glob.glob("/usr/lib/*/ejabberd-[0-9]*") if Path(p, "ebin").is_dir())
    return Path(found[0]) if found else None


def unavailable() -> str | None:
    """Why ejabberd cannot run here, or None when it can."""
    if release_dir() is None:
        return "ejabberd is not installed (Debian package ejabberd; scripts/system-deps.sh installs it)"
    if shutil.which("erl") is None:
        return "erl (Erlang, a dependency of Debian's ejabberd) is not on PATH"
    try:
        import slixmpp  # noqa: F401
    except ImportError:
        return "slixmpp is not installed (the bench extra: pip install -e '.[bench]')"
    return None


def version() -> str:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "ejabberd"], capture_output=True, text=True,
                         check=False).stdout.strip()
    if out:
        return out
    found = release_dir()
    return found.name.removeprefix("ejabberd-") if found else "?"


@dataclass(frozen=True)
class Server:
    proc: subprocess.Popen
    c2s_port: int
    http_port: int
    description: str
    log_path: Path


def api(http_port: int, command: str, body: dict[str, Any], timeout_s: float = 10.0) -> Any:
    """One mod_http_api command (urllib: its errors are the OSError the start-up wait retries on)."""
    import json
    import urllib.request

    ask = urllib.request.Request(f"http://127.0.0.1:{http_port}/api/{command}", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(ask, timeout=timeout_s) as answer:
        return json.loads(answer.read())


@contextmanager
def server(work: Path) -> Iterator[Server]:
    """ejabberd on two free loopback ports with a fresh Mnesia under `work`; stopped on exit."""
    release = release_dir()
    if release is None:
        raise RuntimeError(unavailable() or "ejabberd is not installed")
    directory = work / "ejabberd"
    spool, logs = directory / "spool", directory / "logs"
    spool.mkdir(parents=True)
    logs.mkdir()
    c2s_port, http_port = free_port(), free_port()
    config = directory / "ejabberd.yml"
    config.write_text(CONFIG.format(domain=DOMAIN, c2s_port=c2s_port, http_port=http_port))
    env = {**os.environ, "HOME": str(directory), "EJABBERD_CONFIG_PATH": str(config),
           "EJABBERD_LOG_PATH": str(logs / "ejabberd.log"), "ERL_LIBS": str(release.parent),
           "ERL_MAX_PORTS": "32000", "ERL_CRASH_DUMP": str(logs / "erl_crash.dump")}
    if Path("/etc/ejabberd/inetrc").exists():
        env["ERL_INETRC"] = "/etc/ejabberd/inetrc"
    # the options ejabberdctl's `foreground` passes (kernel poll, process limit), Mnesia in the scratch spool
    cmd = [shutil.which("erl") or "erl", "+K", "true", "+P", "250000", "-noinput",
           "-mnesia", "dir", f'"{spool}"', "-s", "ejabberd"]
    log_path = directory / "erl.log"
    description = (f"ejabberd {version()} (Debian; Erlang VM started as ejabberdctl foreground does), Mnesia in a "
                   "scratch dir, c2s without TLS or shaper, mod_offline, XEP-0184 receipts answered by the clients")
    with running(cmd, env, log_path) as proc:
        def started() -> bool:
            return "started" in str(api(http_port, "status", {}, timeout_s=2))

        wait_until(started, proc, "ejabberd", log_path, timeout_s=60)
        yield Server(proc, c2s_port, http_port, description, log_path)


async def register(http_port: int, users: list[str], concurrency: int = 16) -> None:
    """Every user with PASSWORD, through mod_http_api's `register` (what `ejabberdctl register` runs)."""
    import httpx

    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{http_port}", timeout=30) as http:
        async def one(user: str) -> None:
            async with gate:
                answer = await http.post("/api/register", json={"user": user, "host": DOMAIN, "password": PASSWORD})
            if answer.status_code != 200:
                raise RuntimeError(f"ejabberd register {user}: HTTP {answer.status_code} {answer.text[:300]}")

        await asyncio.gather(*(one(u) for u in users))


def jid(user: str) -> str:
    return f"{user}@{DOMAIN}/{RESOURCE}"


@functools.cache
def _shared_ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


class XmppLink:
    """One XMPP client of the load generator (see `sixfold.chat.bench`'s `Link`)."""

    def __init__(self, run: Any, address: dict[str, Any], body: str) -> None:
        self.run = run
        self.jid, self.peer = address["jid"], address["peer_jid"]
        self.host, self.port = address["host"], address["port"]
        self.body = body
        self.client: Any = None

    async def open(self) -> None:
        from slixmpp import ClientXMPP

        # SASL PLAIN over loopback (slixmpp refuses it unencrypted unless told): a password checked as it is
        # stored, as Sixfold checks a device token's hash, where SCRAM would spend ~0.1 s of the Python
        # client's CPU per login (its PBKDF2). No TLS, so one unused SSL context for every client (slixmpp
        # would load the system's CA store into a new one for each: ~0.1 s apiece).
        client = ClientXMPP(self.jid, PASSWORD, sasl_mech="PLAIN", ssl_context=_shared_ssl_context(),
                            plugin_config={"feature_mechanisms": {"unencrypted_plain": True},
                                           "xep_0184": {"auto_ack": False}})
        client.register_plugin("xep_0030")
        client.register_plugin("xep_0184")
        client.enable_starttls, client.enable_direct_tls, client.enable_plaintext = False, False, True
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def session_start(_: Any) -> None:
            client.send_presence()
            if not ready.done():
                ready.set_result(None)

        def failed(_: Any) -> None:
            if not ready.done():
                ready.set_exception(RuntimeError(f"{self.jid}: authentication failed"))

        client.add_event_handler("session_start", session_start)
        client.add_event_handler("failed_all_auth", failed)
        client.add_event_handler("message", self._message)
        client.add_event_handler("receipt_received", lambda msg: self.run.tracker.delivered(msg["receipt"]))
        self.client = client
        client.connect(self.host, self.port)
        await asyncio.wait_for(ready, 120)

    def _message(self, msg: Any) -> None:
        if msg["type"] == "error":
            self.run.counters.error(str(msg))
            return
        if not msg["body"]:
            return  # a receipt (handled by receipt_received)
        self.run.counters.received += 1
        if msg["request_receipt"]:
            ack = self.client.Message()
            ack["to"] = msg["from"]
            ack["receipt"] = msg["id"]
            ack.send()
            self.run.counters.receipts_sent += 1

    async def send(self, key: str) -> None:
        msg = self.client.make_message(mto=self.peer, mbody=self.body, mtype="chat")
        msg["id"] = key
        msg["request_receipt"] = True
        self.run.tracker.sending(key)
        msg.send()

    async def close(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            await asyncio.sleep(0)
