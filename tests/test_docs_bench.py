"""`sixfold bench docs` quick: every engine replays the trace's first edits and ends with the same text; no timing asserts."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import pytest

from sixfold.docs import bench_node
from sixfold.docs.bench import SIDES, DocsBenchOptions, load_trace, replay_plain, run, trace_path
from sixfold.platform.settings import Settings


def oracle(edits: int | None) -> str:
    """The trace replayed on a list of characters, read straight from the file (not the bench's loader)."""
    trace = json.loads(gzip.open(trace_path()).read())
    chars: list[str] = list(trace["startContent"])
    patches = [p for txn in trace["txns"] for p in txn["patches"]]
    for pos, delete, insert in patches[:edits]:
        chars[pos:pos + delete] = list(insert)
    return "".join(chars)


@pytest.mark.unit
def test_the_plain_replay_counts_code_points_and_refuses_out_of_range() -> None:
    # (the whole trace's replay is checked against its endContent by load_trace on every full run)
    assert replay_plain([(0, 0, "héllo"), (1, 2, "a😀"), (4, 1, "!"), (0, 0, ">")]) == ">ha😀l!"
    with pytest.raises(ValueError, match="out of range"):
        replay_plain([(0, 0, "ab"), (1, 2, "")])


@pytest.mark.e2e
def test_quick_docs_bench_every_engine_ends_with_the_prefix_text(home: Path) -> None:
    opts = DocsBenchOptions.quick()
    prefix, prefix_text, total = load_trace(opts.edits)
    assert total == 259_778 and len(prefix) == opts.edits and prefix_text == oracle(opts.edits)
    said: list[str] = []
    result, json_path, png_path = run(Settings.from_env(), opts, said.append)
    expected = oracle(opts.edits)
    digest = hashlib.sha256(expected.encode()).hexdigest()

    assert json_path.exists() and png_path.stat().st_size > 0
    assert (home / "var" / "bench" / "docs-latest.json").exists() and (home / "var" / "bench" / "docs-latest.png").exists()
    written = json.loads(json_path.read_text())
    assert written["system"] == "docs" and written["options"]["edits"] == opts.edits
    assert written["trace"] == {"name": "automerge-paper", "edits": opts.edits, "end_length": len(expected),
                                "end_sha256": digest, "whole_trace": False, "trace_edits": 259_778}
    node_missing = bench_node.unavailable()
    ran = [side for side in SIDES if "edits_per_s" in written[side]]
    assert ran == list(SIDES) if not node_missing else ran == ["domain", "http", "python_str"], written
    for side in ran:
        figures = written[side]
        assert figures["content_ok"] is True, side
        assert (figures["content_sha256"], figures["content_length"]) == (digest, len(expected)), side
        assert figures["edits"] == opts.edits and figures["edits_per_s"] > 0 and len(figures["runs_s"]) >= 1, side
        assert figures["engine" if side != "http" else "server"] and "loadavg_1m" in figures, side
    assert written["domain"]["snapshot_bytes"] > 0 and written["domain"]["updates_bytes"] > 0
    http = written["http"]
    assert http["batches"] == opts.edits // opts.http_batch and http["final_version"] == http["get_version"] == http["batches"]
    assert http["server_alive_after"]
    sizes, ratios, targets = written["sizes"], written["ratios"], written["targets"]
    assert sizes["loro_snapshot_bytes"] == written["domain"]["snapshot_bytes"] and sizes["text_bytes_utf8"] == len(expected.encode())
    assert ratios["domain_over_python_str"] > 0 and ratios["http_over_domain"] > 0
    assert (targets["domain_rate"], targets["domain_over_yjs"], targets["http_rate"]) == (500_000, 3, 150_000)
    assert isinstance(targets["domain_rate_met"], bool) and isinstance(targets["http_rate_met"], bool)
    if not node_missing:
        assert sizes["yjs_state_bytes"] == written["yjs"]["state_bytes"] > 0 and sizes["loro_wasm_snapshot_bytes"] > 0
        assert ratios["domain_over_yjs"] > 0 and isinstance(targets["domain_over_yjs_met"], bool)
    else:
        assert written["yjs"]["skipped"] == node_missing and targets["domain_over_yjs_met"] is None
    assert written["all_contents_ok"] is True and written["conditions"]["rates"]
    assert any("edits/s, end text equal to the trace's" in line for line in said)
