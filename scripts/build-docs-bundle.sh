#!/usr/bin/env bash
# Build the docs editor page's JavaScript (loro-crdt with its WASM inlined as base64, CodeMirror 6,
# loro-codemirror) as ONE file and inline it into src/sixfold/docs/static/docs.html (committed), so the
# demo needs no Node and the page is the only file the server has to serve (GET /docs, /docs/{id}).
#
#   bash scripts/build-docs-bundle.sh            install the pinned npm packages, then bundle
#   bash scripts/build-docs-bundle.sh --install  only install them (the Node test client and the
#                                                Yjs side of `sixfold bench docs` use them too)
#
# The packages go to a scratch folder, never committed: $SIXFOLD_DOCS_NODE_DIR, by default
# var/node/docs/ in the repository. Every version is pinned below, and the whole tree by
# build-docs-bundle.package-lock.json beside this script (`npm ci`: the lock's integrity hashes are
# checked; no install scripts run). A second run with the same pins skips npm entirely (offline).
# The bundle is an IIFE defining the global `SixfoldDocs` (what docs-bundle.entry.js exports); esbuild
# (npm, pinned) bundles and minifies it into the scratch folder (docs-bundle.js), keeping the packages'
# license comments at its end, and this script replaces what lies between the page's
# `/* docs-bundle:begin */` and `/* docs-bundle:end */` markers with it. Run it when a pin or the entry
# changes, and commit docs.html. To move a pin: edit PINS, delete the lock,
# run once (npm install writes a new lock), copy var/node/docs/package-lock.json over the lock here.
# All the packages bundled are MIT licensed (checked below).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
NODE_DIR="${SIXFOLD_DOCS_NODE_DIR:-$REPO/var/node/docs}"
LOCK="$REPO/scripts/build-docs-bundle.package-lock.json"
STATIC="$REPO/src/sixfold/docs/static"
PINS='"loro-crdt": "1.17.1", "loro-codemirror": "0.3.3", "@codemirror/state": "6.7.6",
  "@codemirror/view": "6.43.15", "@codemirror/commands": "6.11.1", "yjs": "13.6.33", "esbuild": "0.28.2"'

command -v npm >/dev/null 2>&1 || { echo "npm is not installed (Debian: apt-get install -y nodejs npm)" >&2; exit 1; }
mkdir -p "$NODE_DIR"
cat > "$NODE_DIR/package.json.new" <<JSON
{"name": "sixfold-docs-node", "private": true, "version": "0.0.0",
 "dependencies": {$PINS}}
JSON
want="$(cat "$NODE_DIR/package.json.new" "$LOCK" 2>/dev/null | sha256sum | cut -c1-16)"
if [ "$(cat "$NODE_DIR/.installed" 2>/dev/null)" != "$want" ] || [ ! -d "$NODE_DIR/node_modules/loro-crdt" ]; then
  mv "$NODE_DIR/package.json.new" "$NODE_DIR/package.json"
  if [ -f "$LOCK" ]; then
    cp "$LOCK" "$NODE_DIR/package-lock.json"
    (cd "$NODE_DIR" && npm ci --ignore-scripts --no-audit --no-fund --prefer-offline --loglevel=error)
  else
    rm -f "$NODE_DIR/package-lock.json"
    (cd "$NODE_DIR" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error)
    echo "no lock yet: copy $NODE_DIR/package-lock.json to $LOCK and commit it" >&2
  fi
  echo "$want" > "$NODE_DIR/.installed"
else
  rm -f "$NODE_DIR/package.json.new"
fi
[ "${1:-}" = "--install" ] && exit 0

cd "$NODE_DIR"
versions="$(node -e '
  const names = ["loro-crdt", "loro-codemirror", "@codemirror/state", "@codemirror/view", "@codemirror/commands"];
  const out = {};
  for (const n of names) {
    const p = require("./node_modules/" + n + "/package.json");
    if (p.license !== "MIT") { console.error(n + " is licensed " + p.license + ", not MIT: check it"); process.exit(1); }
    out[n] = p.version;
  }
  console.log(JSON.stringify(out));')"
# loro-codemirror imports "loro-crdt" itself: the alias makes it share the one base64 build (one WASM copy)
NODE_PATH="$NODE_DIR/node_modules" node_modules/.bin/esbuild "$STATIC/docs-bundle.entry.js" \
  --bundle --format=iife --global-name=SixfoldDocs --minify --legal-comments=eof --target=es2020 \
  --alias:loro-crdt=loro-crdt/base64 "--define:__SIXFOLD_DOCS_VERSIONS__=$versions" \
  "--banner:js=/* Sixfold docs bundle, built by scripts/build-docs-bundle.sh: $versions (MIT) */" \
  --log-level=warning --outfile="$NODE_DIR/docs-bundle.js"
if grep -qi '</script' "$NODE_DIR/docs-bundle.js"; then
  echo "the bundle contains '</script': it cannot be inlined in a <script> as is" >&2
  exit 1
fi
python3 - "$STATIC/docs.html" "$NODE_DIR/docs-bundle.js" <<'PY'
import re
import sys

page_path, bundle_path = sys.argv[1:]
page = open(page_path, encoding="utf-8").read()
bundle = open(bundle_path, encoding="utf-8").read().strip()
block = f"/* docs-bundle:begin */\n{bundle}\n/* docs-bundle:end */"
new, count = re.subn(r"/\* docs-bundle:begin \*/.*?/\* docs-bundle:end \*/", lambda _: block, page, flags=re.S)
if count != 1:
    sys.exit(f"{page_path}: expected one docs-bundle:begin/end block, found {count}")
open(page_path, "w", encoding="utf-8").write(new)
PY
echo "inlined the bundle ($(wc -c <"$NODE_DIR/docs-bundle.js") bytes) into $STATIC/docs.html: $versions"
