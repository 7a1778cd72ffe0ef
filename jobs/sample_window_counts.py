"""spark-submit entry point: count search events per (region, 15-minute window, query) for [start, end).

    spark-submit jobs/sample_window_counts.py --start 2026-01-01T10:00:00Z --end 2026-01-01T10:15:00Z
"""

from __future__ import annotations

import argparse

from schemas.records import LAKE_TABLES
from sixfold.platform.lake import SparkLake
from sixfold.platform.sample import window_counts
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, type=parse_timestamp, help="ISO-8601, inclusive")
    parser.add_argument("--end", required=True, type=parse_timestamp, help="ISO-8601, exclusive")
    args = parser.parse_args(argv)

    settings = Settings.from_env()
    spark = get_session(settings, app_name="sample_window_counts")
    lake = SparkLake(spark, settings)
    events = lake.read(LAKE_TABLES["search_events"], args.start, args.end)
    counts = window_counts(events).cache()
    written = lake.overwrite_partitions(LAKE_TABLES["sample_window_counts"], counts)
    print(
        f"sample_window_counts [{args.start.isoformat()}, {args.end.isoformat()}): "
        f"{counts.count()} counts into {len(written)} partition(s) {written}"
    )
    spark.stop()


if __name__ == "__main__":
    main()
