#!/usr/bin/env bash
# Set up (first time), start local Kafka and Cassandra, run the whole test suite, stop what it started.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m unit`.
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh || exit 1
bash scripts/setup.sh || exit 1
export SIXFOLD_HOME=${SIXFOLD_HOME:-$PWD}
started=0
if ! .venv/bin/sixfold services status >/dev/null 2>&1; then
  .venv/bin/sixfold services up || { .venv/bin/sixfold services down; exit 1; }
  started=1
fi
.venv/bin/sixfold services status
.venv/bin/python -m pytest -p no:cacheprovider "$@"
rc=$?
[ "$started" = 1 ] && .venv/bin/sixfold services down
exit $rc
