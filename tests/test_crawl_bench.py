"""`sixfold bench crawler --quick` end to end: the site in a subprocess, our crawler, Scrapy; no timing asserts."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchrun import run_quick_bench

pytestmark = pytest.mark.e2e


def test_quick_crawler_bench_compares_both(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("crawler", tmp_path, 420)

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
    assert "ours" in stdout and "Scrapy" in stdout
