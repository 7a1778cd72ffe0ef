"""Build the suggestion trie (top 10 per node, sharded by load) from the state as of a window.

    python jobs/typeahead_build.py --window-start 2026-11-26T10:00:00Z [--swap]

Prints the new artifact version. Without --swap it is only built and validated (the DAG swaps in
a separate task after validation).
"""

from __future__ import annotations

import argparse
import json

from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.typeahead.pipeline import build_artifact, swap, validate_artifact


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window-start", required=True, type=parse_timestamp, help="the state's window, ISO-8601 UTC")
    parser.add_argument("--swap", action="store_true", help="make the new trie the primary after validation")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    version = build_artifact(settings, args.window_start)
    report = validate_artifact(settings, version, args.window_start)
    if args.swap:
        report["pointer"] = swap(settings, version)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
