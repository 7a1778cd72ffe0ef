"""Land search events from the bus into the lake, continuously: `python streams/search_events.py [--once]`.

A thin door: the work is `sixfold.typeahead.collection.land_search_events`; offsets are committed
only after each batch's partitions (and users' recent queries) are durable. Ctrl-C or SIGTERM
stops it between batches.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime, timezone

from sixfold.platform.landing import LandingReport
from sixfold.platform.settings import Settings, SettingsError
from sixfold.typeahead.collection import LANDING_GROUP, land_search_events


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="land what is pending, then exit")
    parser.add_argument("--group", default=LANDING_GROUP, help="consumer group (offsets are per group)")
    parser.add_argument("--idle", type=float, default=1.0, help="seconds without events before a pass ends")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    stopping = False

    def stop(_signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)

    def say(report: LandingReport) -> None:
        print(f"{datetime.now(timezone.utc):%H:%M:%S} received {report.received} landed {report.landed} "
              f"rejected {report.rejected} partitions {sorted(report.partitions)}", flush=True)

    total = LandingReport()
    try:
        while not stopping:
            report = land_search_events(settings, group=args.group, idle_timeout_s=args.idle, on_batch=say)
            total.received += report.received
            total.landed += report.landed
            total.rejected += report.rejected
            if args.once:
                break
            if not report.received:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    print(f"done: received {total.received} landed {total.landed} rejected {total.rejected}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
