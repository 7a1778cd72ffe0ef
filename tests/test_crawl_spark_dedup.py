"""The Spark dedup job against a brute force in plain Python: every pair compared, no bands."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.records import LAKE_TABLES
from sixfold.crawler.dedup import hamming, to_signed, to_unsigned
from sixfold.crawler.spark_dedup import near_duplicates, run_dedup
from sixfold.platform.lake import ArrowLake
from sixfold.platform.schema import spark_struct
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.spark

PAGES = LAKE_TABLES["crawl_pages"]
T0 = datetime(2026, 11, 27, 3, 0, tzinfo=UTC)


def page(url: str, at: datetime, fingerprint: int | None, sha: str | None) -> dict[str, Any]:
    return {"url": url, "final_url": url, "status": 200, "fetched_at": at, "cycle_id": "c1", "depth": 1,
            "content_type": "text/html", "content_sha256": sha,
            "simhash": None if fingerprint is None else to_signed(fingerprint), "title": "t", "description": None,
            "text": None, "out_links": [], "duplicate_of": None, "duplicate_kind": None, "error": None,
            "bytes": 10, "fetch_ms": 1.0}


def synthetic_pages(seed: int = 4) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    rows: list[dict[str, Any]] = []
    originals = [rng.getrandbits(64) for _ in range(12)]
    for i, h in enumerate(originals):
        rows.append(page(f"http://h/p{i}", T0 + timedelta(seconds=10 * i), h, f"sha{i}"))
    for i in range(12):  # variants 0..5 bits away, fetched later; some are byte-identical copies
        flips = i % 6
        h = originals[i]
        for bit in rng.sample(range(64), flips):
            h ^= 1 << bit
        exact = flips == 0
        rows.append(page(f"http://h/v{i}", T0 + timedelta(seconds=200 + i), h, f"sha{i}" if exact else f"vsha{i}"))
    rows.append(page("http://h/p3", T0 + timedelta(seconds=500), originals[3] ^ (2**64 - 1), "sha3-new"))  # revisit
    rows.append(page("http://h/file.pdf", T0 + timedelta(seconds=7), None, None))  # no text, no SimHash
    rows.append(page("http://h/same-time", T0, originals[0] ^ 1, "st"))  # ties with p0 on time: url decides
    return rows


def brute_force(rows: list[dict[str, Any]], distance: int) -> set[tuple[str, str, str, int]]:
    latest: dict[str, dict[str, Any]] = {}
    first: dict[str, datetime] = {}
    for r in rows:
        if r["simhash"] is None:
            continue
        first[r["url"]] = min(first.get(r["url"], r["fetched_at"]), r["fetched_at"])
        if r["url"] not in latest or r["fetched_at"] > latest[r["url"]]["fetched_at"]:
            latest[r["url"]] = r
    out = set()
    for url, r in latest.items():
        earlier = [o for o in latest.values() if (first[o["url"]], o["url"]) < (first[url], url)
                   and hamming(to_unsigned(o["simhash"]), to_unsigned(r["simhash"])) <= distance]
        if earlier:
            o = min(earlier, key=lambda o: (first[o["url"]], o["url"]))
            kind = "exact" if o["content_sha256"] == r["content_sha256"] else "near"
            out.add((url, o["url"], kind, hamming(to_unsigned(o["simhash"]), to_unsigned(r["simhash"]))))
    return out


@pytest.mark.parametrize("distance", [0, 3])
def test_near_duplicates_match_brute_force(spark, distance: int) -> None:
    rows = synthetic_pages()
    frame = spark.createDataFrame(rows, spark_struct(PAGES.record))
    got = {(r["url"], r["duplicate_of"], r["kind"], r["distance"])
           for r in near_duplicates(frame, distance).collect()}
    expected = brute_force(rows, distance)
    assert got == expected
    # the fixture has byte-identical copies (distance 0) and variants 1..5 bits away
    assert {kind for *_, kind, _ in expected} == ({"exact"} if distance == 0 else {"exact", "near"})


def test_dedup_job_writes_its_partition_and_a_rerun_is_the_same(spark, tmp_path) -> None:
    settings = Settings.from_env({"SIXFOLD_HOME": str(tmp_path)})
    rows = synthetic_pages(9)
    lake = ArrowLake(settings)
    lake.overwrite_partitions(PAGES, rows)
    as_of = "2026-11-27T04:00:00Z"
    first = run_dedup(spark, settings, as_of)
    written = {(r["url"], r["duplicate_of"], r["kind"], r["distance"])
               for r in lake.read(LAKE_TABLES["crawl_duplicates"]).to_pylist()}
    assert written == brute_force(rows, settings.crawler_simhash_distance)
    assert first["exact"] + first["near"] == len(written)
    again = run_dedup(spark, settings, as_of)
    assert again == first
    assert len(lake.read(LAKE_TABLES["crawl_duplicates"]).to_pylist()) == len(written)
