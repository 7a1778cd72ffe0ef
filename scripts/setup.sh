#!/usr/bin/env bash
# Create .venv and install the locked dependencies and the sixfold package (idempotent, fast when done).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
"$PY" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Sixfold needs Python 3.11 (found %d.%d); set PYTHON=/path/to/python3.11" % sys.version_info[:2])'
command -v java >/dev/null 2>&1 || { echo "Java 17 is needed (Spark, Kafka, Cassandra): apt-get install -y openjdk-17-jre-headless" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
stamp=.venv/.sixfold-installed
want=$(cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the locked dependencies into .venv (first time: a few minutes) ..."
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q --no-deps -r requirements.lock
  .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . 2>/dev/null \
    || .venv/bin/python -m pip install -q --no-deps -e .
  .venv/bin/python -m pip check >/dev/null || { .venv/bin/python -m pip check; exit 1; }
  echo "$want" > "$stamp"
fi
# the docs' npm packages (the Node test client, the bench's Yjs side): installed once into var/node/docs, offline after
if command -v npm >/dev/null 2>&1; then bash scripts/build-docs-bundle.sh --install >/dev/null || echo "warning: the docs' npm packages did not install (tests install them when they run)" >&2; fi
