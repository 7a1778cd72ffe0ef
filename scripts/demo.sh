#!/usr/bin/env bash
# Set up (first time) and run the demo on the embedded profile: no servers needed.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/sixfold demo "$@"
