"""`sixfold bench pipeline --quick` end to end: ingest + land at two sizes, the Kafka part (skipped
without a broker, as it says), Spark against DuckDB on the same rows; no timing asserts.

The figures are checked against facts recorded apart from them: the landed windows against the
checked input rows, the two engines' outputs against each other row by row, and the ratios and
rates recomputed from the raw seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from benchrun import run_quick_bench

from sixfold.typeahead.bench_pipeline import PipelineBenchOptions, parse_producer_performance

pytestmark = pytest.mark.e2e


@pytest.mark.unit
def test_producer_performance_summary_is_parsed() -> None:
    out = ("49981 records sent, 9996.2 records/sec (1.12 MB/sec), 5.2 ms avg latency, 210.0 ms max latency.\n"
           "500000 records sent, 187617.2 records/sec (21.07 MB/sec), 91.39 ms avg latency, 433.00 ms max latency, "
           "80 ms 50th, 210 ms 95th, 301 ms 99th, 420 ms 99.9th.\n")
    got = parse_producer_performance(out)
    assert got["records"] == 500_000 and got["records_per_s"] == 187617.2
    assert (got["p50_ms"], got["p99_ms"], got["p99_9_ms"]) == (80, 301, 420)
    with pytest.raises(ValueError, match="no summary"):
        parse_producer_performance("nothing useful")


def test_quick_pipeline_bench(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("pipeline", tmp_path, 300)
    quick = PipelineBenchOptions.quick()

    land = latest["landing"]
    assert [r["events"] for r in land["runs"]] == list(quick.land_events)
    for r in land["runs"]:
        assert r["finished"]
        assert r["read"] == r["events"] and r["published"] + r["rejected_at_ingest"] == r["read"]
        assert r["received"] == r["published"]
        # the window holds exactly the checked input's rows, whatever the landing layout
        assert r["check"]["equal"] and r["check"]["missing"] == r["check"]["extra"] == 0
        assert r["check"]["landed_distinct"] == r["check"]["expected_distinct"] > 0
        assert r["events_per_s"] == pytest.approx(r["events"] / (r["ingest_s"] + r["land_s"]), rel=1e-9)
        assert r["peak_rss_mib"] > 0
    first, last = land["runs"][0], land["runs"][-1]
    assert land["rate_ratio_largest_over_smallest"] == pytest.approx(last["events_per_s"] / first["events_per_s"])

    kafka = latest["kafka"]
    if kafka["skipped"]:
        assert "sixfold services up --only kafka" in kafka["reason"]
        assert "Kafka part skipped" in stdout.replace("\n", " ")
    else:
        assert kafka["ours"]["published"] == quick.kafka_events
        assert kafka["producer_performance"]["records"] == quick.kafka_events

    agg = latest["aggregation"]
    assert agg["rows"] == quick.agg_rows
    check = agg["cross_check"]
    assert check["equal"], check
    for name in ("query_counts", "phrase_frequencies"):
        assert check[name]["spark_rows"] == check[name]["duckdb_rows"] > 0
    ledger = agg["spark"]["ledger"]
    assert ledger["events_in"] == quick.agg_rows == ledger["counted"] + ledger["rejected"]
    assert ledger["phrases"] == check["query_counts"]["spark_rows"]
    for engine in ("spark", "duckdb"):
        runs = agg[engine]["all_seconds"]
        assert len(runs) == 3 and agg[engine]["seconds"] == runs[0] and agg[engine]["warm_seconds"] == min(runs[1:])
    assert agg["ratio_cold"] == pytest.approx(agg["spark"]["seconds"] / agg["duckdb"]["seconds"])
    assert agg["ratio_warm"] == pytest.approx(agg["spark"]["warm_seconds"] / agg["duckdb"]["warm_seconds"])
    assert "Spark" in stdout and "DuckDB" in stdout
