#!/usr/bin/env bash
# Inline tweetnacl (the chat page's in-browser NaCl box) into src/sixfold/chat/static/chat.html.
#
# The page is self-contained (no CDN, no Node at run time): this script is run by a developer when
# the pinned version changes, and its output is committed. It fetches the package with npm, checks
# the tarball against the pinned integrity, and replaces what lies between the page's
# `/* tweetnacl:begin */` and `/* tweetnacl:end */` markers with the package's nacl.min.js.
# tweetnacl is public domain (The Unlicense; its LICENSE is kept beside the page).
set -euo pipefail

VERSION=1.0.3
INTEGRITY="sha512-6rt+RN7aOi1nGMyC4Xa5DdYiukl2UWCbcJft7YhxReBGQD7OAM8Pbxw6YMo4r2diNEA8FEmu32YOn9rhaiE5yw=="
REPO="$(cd "$(dirname "$0")/.." && pwd)"
STATIC="$REPO/src/sixfold/chat/static"
PAGE="$STATIC/chat.html"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
(cd "$work" && npm pack "tweetnacl@$VERSION" --silent >/dev/null)
tarball="$work/tweetnacl-$VERSION.tgz"
actual="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
if [ "$actual" != "$INTEGRITY" ]; then
  echo "tweetnacl@$VERSION: integrity $actual, expected $INTEGRITY; refusing to inline it" >&2
  exit 1
fi
tar -xzf "$tarball" -C "$work"
grep -q '"license": "Unlicense"' "$work/package/package.json" || { echo "tweetnacl's license changed; check it" >&2; exit 1; }
if grep -q '</' "$work/package/nacl.min.js"; then
  echo "nacl.min.js contains '</': it cannot be inlined in a <script> as is" >&2
  exit 1
fi
cp "$work/package/LICENSE" "$STATIC/tweetnacl.LICENSE"

python3 - "$PAGE" "$work/package/nacl.min.js" "$VERSION" <<'PY'
import re
import sys

page_path, lib_path, version = sys.argv[1:]
page = open(page_path, encoding="utf-8").read()
lib = open(lib_path, encoding="utf-8").read().strip()
block = f"/* tweetnacl:begin */\n/* tweetnacl {version} nacl.min.js, public domain (The Unlicense) */\n{lib}\n/* tweetnacl:end */"
new, count = re.subn(r"/\* tweetnacl:begin \*/.*?/\* tweetnacl:end \*/", lambda _: block, page, flags=re.S)
if count != 1:
    sys.exit(f"{page_path}: expected one tweetnacl:begin/end block, found {count}")
open(page_path, "w", encoding="utf-8").write(new)
PY
echo "inlined tweetnacl@$VERSION ($(wc -c <"$work/package/nacl.min.js") bytes) into $PAGE"
