"""`sixfold bench docs`: the automerge-paper editing trace replayed by each engine, side by side.

The trace (`traces/automerge-paper.json.gz`, 259,778 single-character edits of writing a paper) is
replayed, each side alone and one after the other, by:

* domain: Loro (PyPI `loro`) through the server's engine module (`sixfold.docs.engine`): the trace in
  chunks of `commit_every` edits, each checked (`check_edits`, in range against the running length, as an
  edits request is) and applied as one commit (`apply_edits`: the doc's "content" text);
* http: the real `sixfold serve` (embedded profile, a fresh SIXFOLD_HOME) on 127.0.0.1, the trace sent
  to `POST /v1/docs/{id}/edits` in batches of `http_batch` operations over one keep-alive connection
  (bodies encoded before the clock starts), each batch acknowledged (durable) before the next;
* yjs: Yjs (npm `yjs`, pinned) in Node, every edit its own transaction (`bench_replay.mjs`);
* loro-crdt: Loro's WASM build (npm `loro-crdt`) in Node, what the browsers run, commit every 1,000;
* python str: a plain Python string, `s[:pos] + insert + s[pos + delete:]`: the floor of "no CRDT".

Every side must end with the text the trace ends with (for a prefix, the prefix replayed on a plain
string by `replay_plain`, checked against the trace's own endContent on the full trace); a side
that does not is reported and fails the run. Rates are edits over the replay's time only (loading the
trace, starting Node or the server are outside it), best of `repeats` for the in-process sides. State
sizes: Loro's snapshot (`ExportMode.Snapshot`), and Yjs' `encodeStateAsUpdate`. Results go to
`var/bench/docs-<UTC>.json/.png` and `docs-latest.*`. Benchmark tooling, outside the serving path.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

from sixfold.docs import bench_node
from sixfold.platform import benchkit
from sixfold.platform.benchkit import SHARED_CORES_NOTE, Say, with_load
from sixfold.platform.settings import Settings

TRACE = "automerge-paper.json.gz"
SIDES = ("domain", "http", "yjs", "loro_wasm", "python_str")
LABELS = {"domain": "Loro (domain)", "http": "HTTP edits", "yjs": "Yjs (Node)", "loro_wasm": "loro-crdt (Node)",
          "python_str": "Python str"}
TARGET_DOMAIN_RATE = 500_000.0
TARGET_DOMAIN_OVER_YJS = 3.0
TARGET_HTTP_RATE = 150_000.0
LIMITS_OFF = {"SIXFOLD_LIMIT_WRITES_PER_USER": "", "SIXFOLD_LIMIT_WRITES_PER_CLIENT": "",
              "SIXFOLD_LIMIT_SIGNUP_PER_CLIENT": ""}

Patch = tuple[int, int, str]


@dataclass(frozen=True)
class DocsBenchOptions:
    edits: int | None = None  # the first N edits of the trace; None: all 259,778
    repeats: int = 3  # in-process sides and Node: best of this many replays
    commit_every: int = 1_000  # domain: edits per Loro commit
    http_batch: int = 10_000  # operations per POST /v1/docs/{id}/edits
    node_timeout_s: float = 600.0
    sides: tuple[str, ...] = SIDES

    @classmethod
    def quick(cls) -> DocsBenchOptions:
        return cls(edits=20_000, repeats=1, http_batch=5_000)


# ---- the trace -----------------------------------------------------------------------------------------
def trace_path() -> Path:
    return Path(str(files("sixfold.docs").joinpath("traces", TRACE)))


def load_trace(edits: int | None = None) -> tuple[list[Patch], str, int]:
    """The trace's patches in order (the first `edits` of them), the text they must end with, and how
    many edits the whole trace has."""
    trace = json.loads(gzip.decompress(trace_path().read_bytes()))
    patches = [(int(p[0]), int(p[1]), str(p[2])) for txn in trace["txns"] for p in txn["patches"]]
    if trace["startContent"]:
        raise ValueError("the benchmark replays traces that start empty")
    if edits is None or edits >= len(patches):
        expected = trace["endContent"]
        if replay_plain(patches) != expected:
            raise ValueError(f"{TRACE}: its patches do not give its endContent; the file is damaged")
        return patches, expected, len(patches)
    prefix = patches[:edits]
    return prefix, replay_plain(prefix), len(patches)


def replay_plain(patches: list[Patch]) -> str:
    """The oracle: the patches applied to a plain Python string (list-of-chunks free, obviously right)."""
    text = ""
    for pos, delete, insert in patches:
        if pos < 0 or pos + delete > len(text):
            raise ValueError(f"patch {(pos, delete, insert)!r} out of range for a text of {len(text)}")
        text = text[:pos] + insert + text[pos + delete:]
    return text


# ---- the sides ----------------------------------------------------------------------------------------
def _best(runs_s: list[float], edits: int) -> dict[str, Any]:
    best = min(runs_s)
    return {"edits": edits, "runs_s": runs_s, "seconds": best, "edits_per_s": edits / best if best > 0 else 0.0,
            "median_edits_per_s": edits / statistics.median(runs_s)}


def replay_domain(patches: list[Patch], commit_every: int) -> tuple[float, Any]:
    """(seconds, doc): the patches through the server's engine (`sixfold.docs.engine`), `commit_every` at a
    time: each chunk checked against the running length (`check_edits`, as an edits request is) and applied
    as one commit (`apply_edits`)."""
    from sixfold.docs import engine

    chunks = [[list(p) for p in patches[i:i + commit_every]] for i in range(0, len(patches), commit_every)]
    doc = engine.new_doc()
    check, apply, length = engine.check_edits, engine.apply_edits, engine.length
    started = time.perf_counter()
    for chunk in chunks:
        edits, _, _ = check(chunk, length(doc))
        apply(doc, edits)
    return time.perf_counter() - started, doc


def bench_domain(patches: list[Patch], expected: str, opts: DocsBenchOptions, say: Say) -> dict[str, Any]:
    import loro

    from sixfold.docs import engine

    runs, doc = [], None
    for _ in range(opts.repeats):
        seconds, doc = replay_domain(patches, opts.commit_every)
        runs.append(seconds)
    assert doc is not None
    content = engine.content(doc)
    snapshot = doc.export(loro.ExportMode.Snapshot())
    updates = doc.export(loro.ExportMode.Updates(loro.VersionVector()))
    return {**_best(runs, len(patches)), **_content(content, expected),
            "snapshot_bytes": len(snapshot), "updates_bytes": len(updates),
            "engine": (f"loro {_version('loro')} (PyPI) through sixfold.docs.engine (check_edits + apply_edits), "
                       f"a commit every {opts.commit_every:,} edits")}


def bench_python_str(patches: list[Patch], expected: str, opts: DocsBenchOptions, say: Say) -> dict[str, Any]:
    runs, content = [], ""
    for _ in range(opts.repeats):
        started = time.perf_counter()
        text = ""
        for pos, removed, added in patches:
            text = text[:pos] + added + text[pos + removed:]
        runs.append(time.perf_counter() - started)
        content = text
    return {**_best(runs, len(patches)), **_content(content, expected),
            "engine": f"CPython {sys.version.split()[0]} str slicing"}


def bench_in_node(engine: str, patches: list[Patch], expected: str, opts: DocsBenchOptions,
               say: Say) -> dict[str, Any]:
    folder = bench_node.ensure_packages()
    run = subprocess.run(["node", str(bench_node.script("bench_replay.mjs")), str(folder), str(trace_path()), engine,
                          str(len(patches)), str(opts.repeats)],
                         capture_output=True, text=True, timeout=opts.node_timeout_s, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"node bench_replay.mjs {engine} failed ({run.returncode}): {run.stderr[-2000:]}")
    out = json.loads(run.stdout)
    if out["edits"] != len(patches):
        raise RuntimeError(f"node replayed {out['edits']} edits, not {len(patches)}")
    what = ("every edit its own transaction" if engine == "yjs" else "commit every 1,000 edits")
    return {**_best(out["runs_s"], len(patches)), **_content(out["content"], expected),
            "state_bytes": out["state_bytes"],
            "state_measure": "Y.encodeStateAsUpdate(doc)" if engine == "yjs" else "doc.export({mode: 'snapshot'})",
            "engine": f"{engine} {out['version']} (npm) in Node {out['node']}, {what}"}


def bench_http(patches: list[Patch], expected: str, opts: DocsBenchOptions, say: Say) -> dict[str, Any]:
    import httpx
    import orjson
    import uvicorn

    with tempfile.TemporaryDirectory(prefix="sixfold-bench-docs-") as tmp:
        work = Path(tmp)
        env = {**os.environ, "SIXFOLD_HOME": str(work / "home"), "SIXFOLD_PROFILE": "embedded", **LIMITS_OFF}
        with benchkit.sixfold_serving(env, work / "sixfold-serve.log") as (proc, port):
            base = f"http://127.0.0.1:{port}"
            with httpx.Client(base_url=base, timeout=120.0) as client:
                user = client.post("/v1/users", json={"username": "bench_writer"})
                user.raise_for_status()
                auth = {"Authorization": f"Bearer {user.json()['token']}"}
                made = client.post("/v1/docs", json={"title": "automerge-paper"}, headers=auth)
                made.raise_for_status()
                doc_id = made.json()["doc_id"]
                bodies = [orjson.dumps([list(p) for p in patches[i:i + opts.http_batch]])
                          for i in range(0, len(patches), opts.http_batch)]
                headers = {**auth, "Content-Type": "application/json"}
                batch_ms, version = [], None
                started = time.perf_counter()
                for body in bodies:
                    sent = time.perf_counter()
                    answer = client.post(f"/v1/docs/{doc_id}/edits", content=body, headers=headers)
                    batch_ms.append((time.perf_counter() - sent) * 1000)
                    if answer.status_code != 200:
                        raise RuntimeError(f"POST /v1/docs/{doc_id}/edits answered {answer.status_code}: "
                                           f"{answer.text[:500]}")
                    version = answer.json()["version"]
                seconds = time.perf_counter() - started
                final = client.get(f"/v1/docs/{doc_id}", headers=auth)
                final.raise_for_status()
                got = final.json()
            alive = proc.poll() is None
    return {**_best([seconds], len(patches)), **_content(got["content"], expected),
            "batches": len(bodies), "batch_edits": opts.http_batch, "final_version": version,
            "get_version": got["version"], "batch_ms": {"p50": statistics.median(batch_ms), "max": max(batch_ms)},
            "request_bytes": sum(len(b) for b in bodies), "server_alive_after": alive,
            "server": (f"sixfold serve --workers 1 (uvicorn {uvicorn.__version__}, 'auto': {benchkit.uvicorn_impl()}), "
                       "embedded profile (SQLite store, spool bus), abuse limits off; one keep-alive connection, "
                       "a batch sent after the previous one's answer")}


def _content(content: str, expected: str) -> dict[str, Any]:
    return {"content_ok": content == expected, "content_length": len(content),
            "content_sha256": hashlib.sha256(content.encode()).hexdigest()}


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


# ---- figures, table, chart ---------------------------------------------------------------------------
def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a and b else None


def summarise(result: dict[str, Any]) -> None:
    rate = {side: result[side]["edits_per_s"] if "edits_per_s" in result.get(side, {}) else None for side in SIDES}
    result["ratios"] = {
        "domain_over_yjs": _ratio(rate["domain"], rate["yjs"]),
        "domain_over_loro_wasm": _ratio(rate["domain"], rate["loro_wasm"]),
        "domain_over_python_str": _ratio(rate["domain"], rate["python_str"]),
        "http_over_yjs": _ratio(rate["http"], rate["yjs"]),
        "http_over_domain": _ratio(rate["http"], rate["domain"]),
    }
    r = result["ratios"]
    result["targets"] = {
        "domain_rate": TARGET_DOMAIN_RATE,
        "domain_rate_met": rate["domain"] >= TARGET_DOMAIN_RATE if rate["domain"] else None,
        "domain_over_yjs": TARGET_DOMAIN_OVER_YJS,
        "domain_over_yjs_met": r["domain_over_yjs"] >= TARGET_DOMAIN_OVER_YJS if r["domain_over_yjs"] else None,
        "http_rate": TARGET_HTTP_RATE,
        "http_rate_met": rate["http"] >= TARGET_HTTP_RATE if rate["http"] else None,
    }
    result["sizes"] = {
        "loro_snapshot_bytes": result.get("domain", {}).get("snapshot_bytes"),
        "loro_updates_bytes": result.get("domain", {}).get("updates_bytes"),
        "loro_wasm_snapshot_bytes": result.get("loro_wasm", {}).get("state_bytes"),
        "yjs_state_bytes": result.get("yjs", {}).get("state_bytes"),
        "text_bytes_utf8": len(result["trace"]["_expected"].encode()),
    }
    result["all_contents_ok"] = all(result[s]["content_ok"] for s in SIDES if "content_ok" in result.get(s, {}))


def _n(v: float | None, fmt: str = ",.0f") -> str:
    return format(v, fmt) if v is not None else "-"


def _x(v: float | None) -> str:
    return f"{v:.2f}x" if v else "-"


def print_table(result: dict[str, Any]) -> None:
    rows = []
    domain_rate = result.get("domain", {}).get("edits_per_s")
    for side in SIDES:
        f = result.get(side, {})
        if "edits_per_s" not in f:
            rows.append((LABELS[side], "did not run", "", "", "", ""))
            continue
        size = f.get("snapshot_bytes") or f.get("state_bytes")
        rows.append((LABELS[side], _n(f["edits_per_s"]), f"{f['seconds']:.3f}",
                     "yes" if f["content_ok"] else "NO", _n(size) if size else "-",
                     _x(_ratio(domain_rate, f["edits_per_s"])) if side != "domain" else ""))
    t, r = result["targets"], result["ratios"]

    def met(v: bool | None) -> str:
        return "not judged" if v is None else "met" if v else "NOT met"

    notes = [f"target: domain >= {TARGET_DOMAIN_RATE:,.0f} edits/s: {met(t['domain_rate_met'])}; "
             f"domain >= {TARGET_DOMAIN_OVER_YJS:g}x Yjs ({_x(r['domain_over_yjs'])}): {met(t['domain_over_yjs_met'])}; "
             f"HTTP >= {TARGET_HTTP_RATE:,.0f} edits/s: {met(t['http_rate_met'])}"]
    for side in SIDES:
        if "engine" in result.get(side, {}):
            notes.append(f"{LABELS[side]}: {result[side]['engine']}")
        elif "server" in result.get(side, {}):
            notes.append(f"{LABELS[side]}: {result[side]['server']}")
    if not result["all_contents_ok"]:
        notes.append("[red]a side did not end with the trace's end content[/red]")
    notes += [f"trace: {result['trace']['name']}, {result['trace']['edits']:,} edits, end text "
              f"{result['trace']['end_length']:,} characters", result["conditions"]["rates"],
              f"[dim]{result['host']['note']}[/dim]"]
    loads = [result[s]["loadavg_1m"] for s in SIDES if "loadavg_1m" in result.get(s, {})]
    if any(x["busy"] for x in loads):
        notes.append(f"[yellow]the box was busy (1-minute load above {result['host']['cores']} cores) around "
                     f"{sum(x['busy'] for x in loads)} of {len(loads)} sides: figures depressed and noisy[/yellow]")
    benchkit.print_table(f"sixfold bench docs ({result['trace']['edits']:,} edits of {result['trace']['name']})",
                         ("engine", "edits/s", "seconds", "end text ok", "state bytes", "domain vs it"), rows, notes)


def draw_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ran = [s for s in SIDES if "edits_per_s" in result.get(s, {})]
    colors = {"domain": "#2b7bba", "http": "#5fa8d3", "yjs": "#6a994e", "loro_wasm": "#bc6c25", "python_str": "#999999"}
    fig, axes = plt.subplots(1, 2, figsize=(14, 4.8), gridspec_kw={"width_ratios": [3, 2]})
    rates = [result[s]["edits_per_s"] for s in ran]
    axes[0].bar([LABELS[s] for s in ran], rates, color=[colors[s] for s in ran])
    for j, v in enumerate(rates):
        axes[0].annotate(f"{v:,.0f}", (j, v), ha="center", va="bottom", fontsize=8)
    axes[0].axhline(TARGET_DOMAIN_RATE, color="#2b7bba", linestyle="--", linewidth=0.8, label="domain target")
    axes[0].axhline(TARGET_HTTP_RATE, color="#5fa8d3", linestyle=":", linewidth=0.8, label="HTTP target")
    axes[0].set_ylabel("edits/s (replay time only)")
    axes[0].legend(fontsize=7)
    r = result["ratios"]
    axes[0].set_title(f"edits/s: Loro {_x(r['domain_over_yjs'])} Yjs, HTTP {_x(r['http_over_yjs'])} Yjs", fontsize=9)
    sizes = result["sizes"]
    size_items = [(label, sizes[key]) for label, key in (("Loro snapshot", "loro_snapshot_bytes"),
                                                         ("loro-crdt snapshot", "loro_wasm_snapshot_bytes"),
                                                         ("Yjs state", "yjs_state_bytes"),
                                                         ("end text (UTF-8)", "text_bytes_utf8")) if sizes.get(key)]
    axes[1].bar([k for k, _ in size_items], [v / 1024 for _, v in size_items],
                color=["#2b7bba", "#bc6c25", "#6a994e", "#999999"][:len(size_items)])
    for j, (_, v) in enumerate(size_items):
        axes[1].annotate(f"{v / 1024:,.0f}", (j, v / 1024), ha="center", va="bottom", fontsize=8)
    axes[1].set_ylabel("KiB")
    axes[1].set_title("state size after the replay", fontsize=9)
    axes[1].tick_params(axis="x", labelsize=8)
    fig.suptitle(f"sixfold bench docs, {result['started_at']}: {result['trace']['edits']:,} edits of "
                 f"{result['trace']['name']}, {result['host']['cores']} cores shared")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- run ----------------------------------------------------------------------------------------------
def run(settings: Settings, opts: DocsBenchOptions, say: Say = print) -> tuple[dict, Path, Path]:
    """Every side, the table, the JSON and the chart; returns (result, json, png)."""
    unknown = set(opts.sides) - set(SIDES)
    if unknown or "domain" not in opts.sides:
        raise RuntimeError(f"sides must include domain and be among {', '.join(SIDES)}")
    if opts.repeats < 1 or opts.commit_every < 1 or opts.http_batch < 1:
        raise RuntimeError("repeats, commit_every and http_batch must be >= 1")
    patches, expected, total = load_trace(opts.edits)
    result = benchkit.new_result("docs", opts, SHARED_CORES_NOTE + "; one engine runs at a time")
    result["trace"] = {"name": TRACE.removesuffix(".json.gz"), "edits": len(patches), "end_length": len(expected),
                       "end_sha256": hashlib.sha256(expected.encode()).hexdigest(),
                       "whole_trace": len(patches) == total, "trace_edits": total,
                       "_expected": expected}
    parts: dict[str, Callable[..., dict[str, Any]]] = {
        "domain": bench_domain, "python_str": bench_python_str, "http": bench_http,
        "yjs": lambda *a: bench_in_node("yjs", *a), "loro_wasm": lambda *a: bench_in_node("loro-crdt", *a)}
    for side in SIDES:
        if side not in opts.sides:
            result[side] = {"skipped": "not asked for (sides option)"}
            continue
        if side in ("yjs", "loro_wasm") and bench_node.unavailable():
            result[side] = {"skipped": bench_node.unavailable()}
            say(f"{LABELS[side]} skipped: {result[side]['skipped']}")
            continue
        say(f"{LABELS[side]}: replaying {len(patches):,} edits ...")
        try:
            result[side] = with_load(lambda side=side: parts[side](patches, expected, opts, say))  # type: ignore[misc]
        except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, the others still run
            if side == "domain":
                raise
            say(f"{LABELS[side]} failed: {exc}")
            result[side] = {"skipped": f"failed: {exc}"[:2000]}
            continue
        f = result[side]
        say(f"{LABELS[side]}: {f['edits_per_s']:,.0f} edits/s, end text "
            f"{'equal to' if f['content_ok'] else 'DIFFERENT from'} the trace's")
    summarise(result)
    del result["trace"]["_expected"]
    result["conditions"] = {
        "rates": ("edits/s = edits / the replay's seconds (best of "
                  f"{opts.repeats} for the in-process and Node sides; the HTTP side once, from the first POST to the "
                  "last answer); one engine at a time on the same machine"),
        "oracle": "the trace's endContent (whole trace) or the prefix replayed on a plain Python string",
    }
    result["finished_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    print_table(result)
    json_path, png_path = benchkit.write_outputs("docs", result, settings.var / "bench", draw_chart)
    if not result["all_contents_ok"]:
        bad = [s for s in SIDES if result.get(s, {}).get("content_ok") is False]
        raise RuntimeError(f"{', '.join(bad)} did not end with the trace's end content; see {json_path}")
    return result, json_path, png_path
