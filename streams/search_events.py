"""Land search events from the bus into the lake, continuously: `python streams/search_events.py [--once]`.

A thin door: the work is `sixfold.typeahead.collection.land_search_events`; offsets are committed
only after each batch's files are durable. Users' recent queries are another group's work
(`streams/search_events_recent.py`). Ctrl-C or SIGTERM
stops it between batches. On the embedded profile `sixfold serve` runs the same work in a thread.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial

from sixfold.platform.consumer import run_consumer
from sixfold.platform.landing import LandingReport
from sixfold.typeahead.collection import LANDING_GROUP, landing_work


def say(report: LandingReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} received {report.received} landed {report.landed} "
          f"rejected {report.rejected} partitions {sorted(report.partitions)}", flush=True)


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, LANDING_GROUP, partial(landing_work, on_batch=say)))
