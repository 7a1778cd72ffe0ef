"""Group message fanout, continuously: `python streams/chat_group_fanout.py [--once]`.

A thin door: `sixfold.chat.groups.fan_out` consumes `chat-group-messages` (keyed by group), queues
a pending entry for every member device but the sender's, routes each to the gateway holding the
device or, for one connected nowhere, to `notifications`, then commits. Ctrl-C or SIGTERM stops it
between batches. On the embedded profile `sixfold serve` runs the same work in a thread.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial

from sixfold.chat.groups import FANOUT_GROUP, FanoutReport, fanout_work
from sixfold.platform.consumer import run_consumer


def say(report: FanoutReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} group messages {report.received} fanned out {report.messages} "
          f"deliveries {report.deliveries} rejected {report.rejected}", flush=True)


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, FANOUT_GROUP, partial(fanout_work, on_batch=say)))
