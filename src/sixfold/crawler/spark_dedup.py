"""The crawl's batch duplicate elimination in Spark: exact and near duplicates over all crawled pages.

`near_duplicates` is pure (DataFrame in, DataFrame out). Each URL's latest fetch is compared,
through the same banded SimHash index as the online crawler (`dedup.band_slices`: pages within
`distance` bits share a band exactly), with every page first fetched before it; a page whose
set of such earlier pages is not empty is a duplicate of the earliest of them (by first fetch,
then URL), `exact` when the bodies' sha256 are equal. Unlike the online pass, which could only
compare with what it had seen so far, the batch answer is a function of the whole crawl, so a
rerun over the same pages gives the same rows.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from schemas.records import LAKE_TABLES
from sixfold.crawler.dedup import band_slices
from sixfold.platform.lake import SparkLake
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PAGES = LAKE_TABLES["crawl_pages"]
DUPLICATES = LAKE_TABLES["crawl_duplicates"]


def near_duplicates(pages: DataFrame, distance: int = 3) -> DataFrame:
    """Pages (crawl_page rows) -> (url, duplicate_of, kind, distance) for every duplicate page."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    per_url = Window.partitionBy("url")
    latest = (
        pages.where(F.col("simhash").isNotNull())
        .withColumn("first_fetched", F.min("fetched_at").over(per_url))
        .withColumn("rank", F.row_number().over(per_url.orderBy(F.col("fetched_at").desc())))
        .where(F.col("rank") == 1)
        .select("url", "simhash", "content_sha256", "first_fetched")
    )
    bands = F.array(*[
        F.struct(F.lit(i).alias("band"),
                 F.shiftrightunsigned(F.col("simhash"), shift).bitwiseAND(F.lit((1 << width) - 1)).alias("value"))
        for i, (shift, width) in enumerate(band_slices(distance))
    ])
    banded = latest.select("*", F.explode(bands).alias("b")).select(
        "url", "simhash", "content_sha256", "first_fetched", F.col("b.band").alias("band"),
        F.col("b.value").alias("value"))
    left, right = banded.alias("l"), banded.alias("r")
    earlier = (F.col("r.first_fetched") < F.col("l.first_fetched")) | (
        (F.col("r.first_fetched") == F.col("l.first_fetched")) & (F.col("r.url") < F.col("l.url")))
    pairs = (
        left.join(right, (F.col("l.band") == F.col("r.band")) & (F.col("l.value") == F.col("r.value")) & earlier)
        .select(F.col("l.url").alias("url"), F.col("r.url").alias("other"),
                F.col("r.first_fetched").alias("other_first"),
                F.bit_count(F.col("l.simhash").bitwiseXOR(F.col("r.simhash"))).cast("int").alias("distance"),
                F.coalesce(F.col("l.content_sha256") == F.col("r.content_sha256"), F.lit(False)).alias("exact"))
        .where(F.col("distance") <= distance)
        .dropDuplicates(["url", "other"])
    )
    best = pairs.groupBy("url").agg(F.min(F.struct("other_first", "other", "distance", "exact")).alias("m"))
    return best.select(
        "url", F.col("m.other").alias("duplicate_of"),
        F.when(F.col("m.exact"), F.lit("exact")).otherwise(F.lit("near")).alias("kind"),
        F.col("m.distance").alias("distance"),
    )


def run_dedup(spark: SparkSession, settings: Settings, as_of: datetime | str) -> dict[str, Any]:
    """Read every crawled page from the lake, write the verdict into `crawl/duplicates` at `as_of`'s hour
    (a rerun with the same `as_of` replaces that partition)."""
    from pyspark.sql import functions as F

    when = parse_timestamp(as_of)
    lake = SparkLake(spark, settings)
    pages = lake.read(PAGES)
    verdict = near_duplicates(pages, settings.crawler_simhash_distance).withColumn("as_of", F.lit(when)).cache()
    written = lake.overwrite_partitions(DUPLICATES, verdict)
    counts = {row["kind"]: row["count"] for row in verdict.groupBy("kind").count().collect()}
    verdict.unpersist()
    return {"pages": pages.select("url").distinct().count(), "exact": counts.get("exact", 0),
            "near": counts.get("near", 0), "partitions": written, "as_of": when.isoformat()}
