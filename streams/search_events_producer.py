"""Replay a search log onto the `search-events` topic, as the search front ends would:
`python streams/search_events_producer.py FILE [--rate N]` (JSON lines {user_id, query, region, ts}).

A thin door: each line goes through `check_search_event` (the HTTP endpoint's check); bad lines go
to `search-events.dlq` with the reason. `--rate` paces the replay in events per second.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from sixfold.platform.bus import open_bus
from sixfold.platform.configuration import startup_settings
from sixfold.platform.settings import SettingsError
from sixfold.typeahead.collection import ingest_lines, read_lines


def paced(lines: Iterator[bytes], rate: float | None) -> Iterator[bytes]:
    started = time.monotonic()
    for n, line in enumerate(lines):
        if rate:
            ahead = n / rate - (time.monotonic() - started)
            if ahead > 0:
                time.sleep(ahead)
        yield line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", help="JSON lines of search events")
    parser.add_argument("--rate", type=float, default=None, help="events per second (default: as fast as possible)")
    args = parser.parse_args(argv)
    if not Path(args.file).is_file():
        print(f"no such file: {args.file}", file=sys.stderr)
        return 2
    try:
        settings = startup_settings()  # every bad value at once, before anything is published
    except SettingsError as exc:
        for _var, reason in exc.problems:
            print(f"configuration error: {reason}", file=sys.stderr)
        return 2
    bus = open_bus(settings)
    try:
        report = ingest_lines(bus, paced(read_lines(args.file), args.rate))
    finally:
        bus.close()
    print(f"read {report.read}, published {report.published}, rejected {report.rejected} (see search-events.dlq)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
