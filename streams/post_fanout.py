"""Hybrid fanout, continuously: `python streams/post_fanout.py [--once]`.

A thin door: `sixfold.feed.fanout.run_fanout` lands each batch of `post-created` in the lake and
pushes it into followers' timelines (celebrities' posts are pulled at read time instead), then
commits; `land_follow_events` lands the `follows` topic for the offline timeline job. Ctrl-C or
SIGTERM stops it between batches.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import UTC, datetime

from sixfold.feed.fanout import FANOUT_GROUP, FanoutReport, land_follow_events, run_fanout
from sixfold.platform.bus import open_bus
from sixfold.platform.settings import Settings, SettingsError
from sixfold.platform.store import open_store


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--once", action="store_true", help="process what is pending, then exit")
    parser.add_argument("--group", default=FANOUT_GROUP, help="consumer group of the fanout (offsets are per group)")
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

    def say(report: FanoutReport) -> None:
        print(f"{datetime.now(UTC):%H:%M:%S} posts {report.received} landed {report.landed} "
              f"rejected {report.rejected} pushed {report.pushed} entries, {report.pulled_posts} celebrity posts",
              flush=True)

    store, bus = open_store(settings), open_bus(settings)
    total = FanoutReport()
    try:
        while not stopping:
            report = run_fanout(settings, store, bus, group=args.group, idle_timeout_s=args.idle, on_batch=say)
            follows = land_follow_events(settings, bus, idle_timeout_s=min(args.idle, 0.2))
            total.received += report.received
            total.pushed += report.pushed
            total.rejected += report.rejected + follows.rejected
            if args.once:
                break
            if not report.received and not follows.received:
                time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    finally:
        store.close()
        bus.close()
    print(f"done: posts {total.received} pushed {total.pushed} entries, rejected {total.rejected}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
