"""Hybrid fanout, continuously: `python streams/post_fanout.py [--once]`.

A thin door: `sixfold.feed.fanout.run_fanout` lands each batch of `post-created` in the lake,
pushes it into followers' timelines (celebrities' posts are pulled at read time instead) and indexes
it for search, then commits; `run_post_deletions` does the same for `post-deleted` (entries, media);
`land_follow_events` lands the `follows` topic for the offline timeline job. Ctrl-C or
SIGTERM stops it between batches. On the embedded profile `sixfold serve` runs the same work in
a thread; run this one on the cluster profile (a compose service) or with `serve --no-consumers`.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from functools import partial

from sixfold.feed.fanout import FANOUT_GROUP, FanoutReport, fanout_work
from sixfold.platform.consumer import run_consumer


def say(report: FanoutReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} posts {report.received} landed {report.landed} "
          f"rejected {report.rejected} pushed {report.pushed} entries, {report.pulled_posts} celebrity posts",
          flush=True)


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, FANOUT_GROUP, partial(fanout_work, on_batch=say)))
