"""Land search events from the bus into the lake, continuously: `python streams/search_events.py [--once]`.

A thin door: the work is `sixfold.typeahead.collection.land_search_events`; offsets are committed
only after each batch's partitions (and users' recent queries) are durable. Ctrl-C or SIGTERM
stops it between batches.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack
from datetime import UTC, datetime

from sixfold.platform.consumer import Pass, run_consumer
from sixfold.platform.landing import LandingReport
from sixfold.platform.settings import Settings
from sixfold.typeahead.collection import LANDING_GROUP, land_search_events


def say(report: LandingReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} received {report.received} landed {report.landed} "
          f"rejected {report.rejected} partitions {sorted(report.partitions)}", flush=True)


def landing(settings: Settings, group: str, idle_s: float, _resources: ExitStack) -> Pass:
    def one_pass() -> dict[str, int]:
        report = land_search_events(settings, group=group, idle_timeout_s=idle_s, on_batch=say)
        return {"received": report.received, "landed": report.landed, "rejected": report.rejected}

    return one_pass


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, LANDING_GROUP, landing))
