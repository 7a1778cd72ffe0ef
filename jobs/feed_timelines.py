"""spark-submit entry point: regenerate every active user's pushed timeline from the lake.

    spark-submit jobs/feed_timelines.py [--per-user 500]
"""

from __future__ import annotations

import argparse
import json

from sixfold.feed.timeline_job import PER_USER, generate_timelines
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session
from sixfold.platform.store import open_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-user", type=int, default=PER_USER, help="newest posts kept per timeline")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="feed_timelines")
    store = open_store(settings)
    try:
        print(json.dumps(generate_timelines(spark, settings, store, args.per_user, say=print)))
    finally:
        store.close()
        spark.stop()


if __name__ == "__main__":
    main()
