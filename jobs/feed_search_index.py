"""spark-submit entry point: index the lake's posts in [start, end) for hashtag and geo search.

    spark-submit jobs/feed_search_index.py --start 2026-11-26T10:00:00Z --end 2026-11-26T11:00:00Z
"""

from __future__ import annotations

import argparse
import json

from sixfold.feed.search import build_search_index
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session
from sixfold.platform.store import open_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", type=parse_timestamp, default=None, help="ISO-8601 UTC, inclusive (default: all)")
    parser.add_argument("--end", type=parse_timestamp, default=None, help="ISO-8601 UTC, exclusive (default: all)")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="feed_search_index")
    store = open_store(settings)
    try:
        print(json.dumps(build_search_index(spark, settings, store, args.start, args.end)))
    finally:
        store.close()
        spark.stop()


if __name__ == "__main__":
    main()
