"""Running `sixfold bench <system> --quick` as a user would, for the benchmark tests (no timing asserts)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def run_quick_bench(system: str, home: Path, timeout_s: int = 420) -> tuple[dict, str]:
    """Run it in a fresh SIXFOLD_HOME; check it exits 0 and writes one stamped JSON + chart and the
    `-latest` copies; return the latest JSON and what it printed."""
    env = {**os.environ, "SIXFOLD_HOME": str(home), "SIXFOLD_PROFILE": "embedded"}
    env.pop("SIXFOLD_FEED_CELEBRITY_THRESHOLD", None)
    sixfold = Path(sys.executable).parent / "sixfold"
    run = subprocess.run([str(sixfold), "bench", system, "--quick"], env=env, cwd=home, check=False,
                         capture_output=True, text=True, timeout=timeout_s)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]
    bench = home / "var" / "bench"
    assert (bench / f"{system}-latest.png").stat().st_size > 0
    assert len(list(bench.glob(f"{system}-2*.json"))) == 1 and len(list(bench.glob(f"{system}-2*.png"))) == 1
    return json.loads((bench / f"{system}-latest.json").read_text()), run.stdout
