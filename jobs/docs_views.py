"""spark-submit entry point: count the landed views of every UTC day in [start, end) per document.

    spark-submit jobs/docs_views.py --start 2026-03-04T00:00:00Z --end 2026-03-05T00:00:00Z
"""

from __future__ import annotations

import argparse
import json

from sixfold.docs.views import count_views
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session
from sixfold.platform.store import open_store


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, type=parse_timestamp, help="ISO-8601 UTC day, inclusive")
    parser.add_argument("--end", required=True, type=parse_timestamp, help="ISO-8601 UTC day, exclusive")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="docs_views")
    store = open_store(settings)
    try:
        print(json.dumps(count_views(spark, settings, store, args.start, args.end, say=print)))
    finally:
        store.close()
        spark.stop()


if __name__ == "__main__":
    main()
