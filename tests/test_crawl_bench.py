"""`sixfold bench crawler --quick` end to end: the site in a subprocess, our crawler, Scrapy; no timing asserts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e


def test_quick_crawler_bench_compares_both(tmp_path: Path) -> None:
    env = {**os.environ, "SIXFOLD_HOME": str(tmp_path), "SIXFOLD_PROFILE": "embedded"}
    sixfold = Path(sys.executable).parent / "sixfold"
    run = subprocess.run([str(sixfold), "bench", "crawler", "--quick"], env=env, cwd=tmp_path, check=False,
                         capture_output=True, text=True, timeout=420)
    assert run.returncode == 0, run.stderr[-3000:] + run.stdout[-3000:]

    bench = tmp_path / "var" / "bench"
    latest = json.loads((bench / "crawler-latest.json").read_text())
    assert (bench / "crawler-latest.png").stat().st_size > 0
    assert len(list(bench.glob("crawler-2*.json"))) == 1

    ours, scrapy = latest["ours"], latest["scrapy"]
    for system in (ours, scrapy):
        server = system["server"]
        assert system["seconds"] > 0
        assert server["html_pages"] > 0 and server["pages_per_s"] > 0
        assert server["pages_per_s"] == pytest.approx(server["html_pages"] / system["seconds"])
        assert 0 < server["coverage"] <= 1
    assert latest["ratio_pages_per_s"] == pytest.approx(ours["server"]["pages_per_s"] / scrapy["server"]["pages_per_s"])
    assert ours["server"]["disallowed_fetched"] == 0  # robots.txt, 5xx included, is obeyed
    assert ours["server"]["coverage"] == 1.0  # traps off: the whole finite site
    assert "traps off" in latest["site"]["note"]
    assert scrapy["scrapy_version"].startswith("2.")
    assert "ours" in run.stdout and "Scrapy" in run.stdout
