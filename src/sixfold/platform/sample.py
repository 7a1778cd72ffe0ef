"""The sample pipeline's transformation: search events counted per region, 15-minute window and query.

A pure function (DataFrame in, DataFrame out) so a test can check it against a brute force.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from schemas.records import QUERY_COUNT

WINDOW = "15 minutes"


def window_counts(events: DataFrame) -> DataFrame:
    """Rows of `query_count`: how often each query was searched per region per UTC 15-minute window.

    `F.window` aligns windows to the epoch, so they start at :00, :15, :30 and :45 UTC.
    """
    return (
        events.groupBy("region", F.window("ts", WINDOW).start.alias("window_start"), "query")
        .agg(F.count(F.lit(1)).alias("count"))
        .select(*QUERY_COUNT.names)
    )
