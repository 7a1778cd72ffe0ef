"""spark-submit entry point: aggregate every 15-minute window in [start, end) into decayed frequencies.

    spark-submit jobs/typeahead_aggregate.py --start 2026-11-26T10:00:00Z --end 2026-11-26T10:15:00Z
"""

from __future__ import annotations

import argparse
import json

from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings
from sixfold.platform.spark import get_session
from sixfold.typeahead.pipeline import WINDOW, aggregate_window, window_floor


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", required=True, type=parse_timestamp, help="ISO-8601 UTC, inclusive")
    parser.add_argument("--end", required=True, type=parse_timestamp, help="ISO-8601 UTC, exclusive")
    args = parser.parse_args(argv)
    settings = Settings.from_env()
    spark = get_session(settings, app_name="typeahead_aggregate")
    window = window_floor(args.start)
    while window < args.end:
        print(json.dumps(aggregate_window(spark, settings, window)))
        window += WINDOW
    spark.stop()


if __name__ == "__main__":
    main()
