"""Where the docs' npm packages live (loro-crdt, yjs, CodeMirror, esbuild) and how Python runs Node on them.

`scripts/build-docs-bundle.sh --install` installs the pinned packages into a scratch folder outside the
package (`$SIXFOLD_DOCS_NODE_DIR`, by default `var/node/docs/` in the repository); the Node test client
and the Yjs and loro-crdt sides of `sixfold bench docs` import them from there. Tooling, not served.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
INSTALL_SCRIPT = REPO / "scripts" / "build-docs-bundle.sh"
HERE = Path(__file__).resolve().parent


def node_dir() -> Path:
    return Path(os.environ.get("SIXFOLD_DOCS_NODE_DIR") or REPO / "var" / "node" / "docs")


def unavailable() -> str | None:
    """Why Node with the pinned packages cannot run here (None when it can)."""
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm are not installed (Debian: apt-get install -y nodejs npm)"
    if not INSTALL_SCRIPT.exists():
        return f"{INSTALL_SCRIPT} is missing (an installed package without its repository)"
    return None


def ensure_packages(timeout_s: float = 300.0) -> Path:
    """Install the pinned packages when missing (a no-op, offline, once they are) and return their folder."""
    why = unavailable()
    if why:
        raise RuntimeError(why)
    run = subprocess.run(["bash", str(INSTALL_SCRIPT), "--install"], capture_output=True, text=True,
                         timeout=timeout_s, check=False)
    if run.returncode != 0:
        raise RuntimeError(f"{INSTALL_SCRIPT.name} --install failed ({run.returncode}): {run.stderr[-2000:]}")
    return node_dir()


def script(name: str) -> Path:
    """A Node script kept beside this module (e.g. bench_replay.mjs, node_client.mjs)."""
    return HERE / name


def node_command() -> list[str]:
    """`node`, with `--experimental-websocket` where the global WebSocket still needs it (Node 20, 21)."""
    probe = subprocess.run(["node", "-e", "process.exit(typeof WebSocket === 'undefined' ? 1 : 0)"],
                           capture_output=True, timeout=30, check=False)
    return ["node"] if probe.returncode == 0 else ["node", "--experimental-websocket"]
