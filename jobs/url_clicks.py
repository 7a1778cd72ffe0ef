"""spark-submit entry point: count the landed clicks of every hour in [start, end) per key, referrer and browser.

    spark-submit jobs/url_clicks.py --start 2026-03-04T09:00:00Z --end 2026-03-04T11:00:00Z
"""

from __future__ import annotations

import argparse
import json

from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session
from sixfold.platform.store import open_store
from sixfold.shortener.click_job import count_clicks


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, type=parse_timestamp, help="ISO-8601 UTC hour, inclusive")
    parser.add_argument("--end", required=True, type=parse_timestamp, help="ISO-8601 UTC hour, exclusive")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="url_clicks")
    store = open_store(settings)
    try:
        print(json.dumps(count_clicks(spark, settings, store, args.start, args.end, say=print)))
    finally:
        store.close()
        spark.stop()


if __name__ == "__main__":
    main()
