"""The run loop every stream consumer in `streams/` shares: arguments, settings, stopping cleanly.

A consumer names its default consumer group and gives `work`, which opens what it needs (closed
on exit through the ExitStack it is handed) and returns one pass: consume until idle, land or
apply, commit, and say how many events it handled. The loop repeats passes until Ctrl-C or
SIGTERM (between passes, never inside a batch), or once with `--once`.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack

from sixfold.platform.settings import Settings, SettingsError

Pass = Callable[[], dict[str, int]]  # one pass; its counts include "received"
Work = Callable[[Settings, str, float, ExitStack], Pass]


def run_consumer(doc: str, default_group: str, work: Work, argv: list[str] | None = None,
                 idle_sleep_s: float = 0.5) -> int:
    parser = argparse.ArgumentParser(description=doc.strip().splitlines()[0])
    parser.add_argument("--once", action="store_true", help="process what is pending, then exit")
    parser.add_argument("--group", default=default_group, help="consumer group (offsets are per group)")
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
    total: Counter[str] = Counter()
    with ExitStack() as resources:
        one_pass = work(settings, args.group, args.idle, resources)
        try:
            while not stopping:
                counts = one_pass()
                total.update(counts)
                if args.once:
                    break
                if not counts.get("received"):
                    time.sleep(idle_sleep_s)
        except KeyboardInterrupt:
            pass
    print("done: " + ", ".join(f"{k} {v:,}" for k, v in total.items()), flush=True)
    return 0
