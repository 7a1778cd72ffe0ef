"""spark-submit entry point: exact and near duplicates over every crawled page in var/lake/crawl/pages/.

    spark-submit jobs/crawl_dedup.py [--as-of 2026-11-27T03:00:00Z]
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime

from sixfold.crawler.spark_dedup import run_dedup
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", default=None, help="ISO-8601 UTC time of this run (default: now); same value, "
                                                      "same output partition")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="crawl_dedup")
    try:
        print(json.dumps(run_dedup(spark, settings, args.as_of or datetime.now(UTC))))
    finally:
        spark.stop()


if __name__ == "__main__":
    main()
