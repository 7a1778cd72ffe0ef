"""Hybrid fanout, continuously: `python streams/post_fanout.py [--once]`.

A thin door: `sixfold.feed.fanout.run_fanout` lands each batch of `post-created` in the lake and
pushes it into followers' timelines (celebrities' posts are pulled at read time instead), then
commits; `land_follow_events` lands the `follows` topic for the offline timeline job. Ctrl-C or
SIGTERM stops it between batches.
"""

from __future__ import annotations

import sys
from contextlib import ExitStack, closing
from datetime import UTC, datetime

from sixfold.feed.fanout import FANOUT_GROUP, FanoutReport, land_follow_events, run_fanout
from sixfold.platform.bus import open_bus
from sixfold.platform.consumer import Pass, run_consumer
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store


def say(report: FanoutReport) -> None:
    print(f"{datetime.now(UTC):%H:%M:%S} posts {report.received} landed {report.landed} "
          f"rejected {report.rejected} pushed {report.pushed} entries, {report.pulled_posts} celebrity posts",
          flush=True)


def fanout(settings: Settings, group: str, idle_s: float, resources: ExitStack) -> Pass:
    store = resources.enter_context(closing(open_store(settings)))
    bus = resources.enter_context(closing(open_bus(settings)))

    def one_pass() -> dict[str, int]:
        posts = run_fanout(settings, store, bus, group=group, idle_timeout_s=idle_s, on_batch=say)
        follows = land_follow_events(settings, bus, idle_timeout_s=min(idle_s, 0.2))
        return {"received": posts.received + follows.received, "posts": posts.received, "pushed": posts.pushed,
                "follow events": follows.received, "rejected": posts.rejected + follows.rejected}

    return one_pass


if __name__ == "__main__":
    sys.exit(run_consumer(__doc__, FANOUT_GROUP, fanout))
