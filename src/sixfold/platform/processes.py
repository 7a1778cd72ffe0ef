"""Child processes and the files they leave: running commands as process groups under one Ctrl-C,
stopping a process group with everything its leader started, reading a JSON-lines log that a writer
(or a crash) may have cut short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

POLL_S = 0.1


def group_members(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (zombies, already dead, are left out)."""
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: ask the kernel whether anything answers to the group
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return []
        except PermissionError:
            pass
        return [pgid]
    members = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses, so split after the last ")"
        fields = stat.rsplit(")", 1)[-1].split()
        if len(fields) > 2 and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _group_running(proc: subprocess.Popen) -> bool:
    proc.poll()  # reap the leader, so a leader that exited is not counted as a member
    return proc.returncode is None or bool(group_members(proc.pid))


def stop_groups(procs: Sequence[subprocess.Popen], term_wait_s: float = 10.0, kill_wait_s: float = 5.0) -> None:
    """SIGTERM every process group one of `procs` leads (each started with start_new_session=True), all
    at once, and wait until no process of any group is left; SIGKILL what remains after `term_wait_s`.

    A group is gone when its leader has exited and so has everything it started: a leader that
    exits first (a supervisor shutting down) must not leave a scheduler or a worker behind.
    """
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        running = [p for p in procs if _group_running(p)]
        if not running:
            return
        for p in running:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline and any(_group_running(p) for p in running):
            time.sleep(POLL_S)


def stop_group(proc: subprocess.Popen, term_wait_s: float = 10.0, kill_wait_s: float = 5.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True), SIGKILL what is
    still there after `term_wait_s`; returns once the whole group is gone."""
    stop_groups([proc], term_wait_s, kill_wait_s)


def supervise(commands: Sequence[Sequence[str]], env: Mapping[str, str] | None = None, *,
              term_wait_s: float = 20.0, say: Callable[[str], None] = print) -> int:
    """Run `commands` side by side, each leading its own process group, until one exits or this
    process gets SIGINT or SIGTERM; then stop every group and everything in it.

    Returns 128 + the signal's number after a signal (130 after Ctrl-C, as a shell reports it), else
    the exit code of the first command that ended (a command that ends by itself takes the others
    down: half a set of servers is of no use; one command alone simply runs to its end). The children are in
    sessions of their own, so a terminal's Ctrl-C reaches only this process, which stops them in order.
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if not received:
            say(f"{signal.Signals(signum).name}: stopping {len(procs)} process group(s), "
                f"SIGKILL after {term_wait_s:.0f} s")
        received.append(signum)

    procs: list[subprocess.Popen] = []
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for command in commands:
            if received:
                break
            procs.append(subprocess.Popen(list(command), env=dict(env) if env is not None else None,
                                          start_new_session=True))
        while not received and all(p.poll() is None for p in procs):
            time.sleep(POLL_S)
    finally:
        stop_groups(procs, term_wait_s)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        say("stopped")
        return 128 + received[0]
    ended = next(p for p in procs if p.returncode is not None)
    if len(procs) > 1:
        say(f"{os.path.basename(ended.args[0])} {' '.join(ended.args[1:2])} exited with {ended.returncode}; "
            f"stopped the others")
    return ended.returncode


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Every whole JSON line of `path` ([] when absent); a line cut short (being written, or torn by a
    crash) is skipped."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
