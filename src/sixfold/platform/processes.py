"""Child processes and the files they leave: stopping a process group, reading a JSON-lines log
that a writer (or a crash) may have cut short."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any


def stop_group(proc: subprocess.Popen, term_wait_s: float = 10.0, kill_wait_s: float = 5.0) -> None:
    """SIGTERM the process group `proc` leads (started with start_new_session=True), SIGKILL it if it
    is still there after `term_wait_s`."""
    for sig, wait_s in ((signal.SIGTERM, term_wait_s), (signal.SIGKILL, kill_wait_s)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


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
