"""Where data-quality checks leave their latest result: one small JSON file per check under var/quality/.

A check (a DAG task's recount: events in = counted + rejected, no null keys, a brute force over a
sample) records whether it passed, and why not, before it raises; `/metrics` reads the latest
result of each (`sixfold_data_quality_passed`), so a failing pipeline is visible without Airflow.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class QualityResult:
    check: str  # e.g. "typeahead.window"
    passed: bool
    detail: str
    at: float  # Unix time the check finished


def _dir(var: Path) -> Path:
    return var / "quality"


def record_result(var: Path, check: str, passed: bool, detail: str = "") -> None:
    """Keep `check`'s latest result (replaced atomically: a reader sees the old one or the new one)."""
    if not re.fullmatch(r"[a-z0-9_.-]{1,100}", check):
        raise ValueError(f"check name {check!r} must be 1-100 of a-z, 0-9, '_', '.', '-'")
    directory = _dir(var)
    directory.mkdir(parents=True, exist_ok=True)
    body = orjson.dumps({"check": check, "passed": passed, "detail": detail[:2000], "at": time.time()})
    tmp = directory / f".{check}.{os.getpid()}.tmp"
    tmp.write_bytes(body)
    os.replace(tmp, directory / f"{check}.json")


def latest_results(var: Path) -> list[QualityResult]:
    """The latest result of every check that ever recorded one, by check name."""
    out = []
    for path in sorted(_dir(var).glob("*.json")):
        try:
            data = orjson.loads(path.read_bytes())
            out.append(QualityResult(str(data["check"]), bool(data["passed"]), str(data.get("detail", "")),
                                     float(data["at"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # half-deleted or foreign file: not a result
    return out
