"""Keep users' recent searches from the bus, continuously: `python streams/search_events_recent.py [--once]`.

A thin door: the work is `sixfold.typeahead.collection.remember_search_events`, a consumer group of
its own beside the landing's (`streams/search_events.py`), so the store's writes and the lake's files
overlap. Offsets are committed only after each batch is in the store (an idempotent upsert: a
replayed batch is harmless). Ctrl-C or SIGTERM stops it between batches. On the embedded profile
`sixfold serve` runs the same work in a thread.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial

from sixfold.platform.consumer import run_consumer
from sixfold.typeahead.collection import RECENT_GROUP, RecentReport, recent_work


def say(report: RecentReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} received {report.received} remembered {report.remembered} "
          f"skipped {report.skipped}", flush=True)


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, RECENT_GROUP, partial(recent_work, on_batch=say)))
