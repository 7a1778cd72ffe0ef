"""Land the documents' view events from the bus into the lake, continuously: `python streams/docs_views.py [--once]`.

A thin door: the work is `sixfold.docs.views.land_views`; offsets are committed only after each
batch's hourly partitions are durable. Ctrl-C or SIGTERM stops it between batches. On the embedded
profile `sixfold serve` runs the same work in a thread. (The other docs topic, `docs-updates`, is
consumed by each serving process itself: it feeds that process's documents in memory.)
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial

from sixfold.docs.views import LANDING_GROUP, landing_work
from sixfold.platform.consumer import run_consumer
from sixfold.platform.landing import LandingReport


def say(report: LandingReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} received {report.received} landed {report.landed} "
          f"rejected {report.rejected} partitions {sorted(report.partitions)}", flush=True)


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, LANDING_GROUP, partial(landing_work, on_batch=say)))
