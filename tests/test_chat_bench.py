"""`sixfold bench chat --quick` end to end (sixfold serve, ejabberd, the relay, real sockets); no timing asserts."""

from __future__ import annotations

import asyncio
import math

import pytest
import yaml
from benchrun import run_quick_bench

from sixfold.chat import bench_xmpp
from sixfold.chat.bench import SIDES, Tracker, all_acknowledged, pairs, percentiles

HAS_EJABBERD = bench_xmpp.unavailable() is None


@pytest.mark.unit
def test_percentiles_are_nearest_rank_over_the_raw_latencies() -> None:
    latencies = [float(i) for i in range(1, 1001)]  # 1..1000 ms, shuffled order must not matter
    figures = percentiles(latencies[::-1])
    assert (figures["p50_ms"], figures["p90_ms"], figures["p99_ms"], figures["p99_9_ms"]) == (500, 900, 990, 999)
    assert figures["max_ms"] == 1000 and math.isclose(figures["mean_ms"], 500.5)
    assert percentiles([7.0]) == {"p50_ms": 7.0, "p90_ms": 7.0, "p99_ms": 7.0, "p99_9_ms": 7.0, "max_ms": 7.0,
                                  "mean_ms": 7.0}
    assert percentiles([]) == {}


@pytest.mark.unit
def test_clients_pair_up_and_each_receipt_counts_once() -> None:
    assert pairs(6) == [1, 0, 3, 2, 5, 4]

    async def scenario() -> Tracker:
        tracker = Tracker(expected=2)
        tracker.sending("a")
        tracker.sending("b")
        tracker.delivered("a")
        tracker.delivered("a")  # a duplicate receipt
        tracker.delivered("zzz")  # a receipt for nothing this phase sent
        assert not tracker.complete.is_set()
        tracker.delivered("b")
        return tracker

    tracker = asyncio.run(scenario())
    assert tracker.complete.is_set() and len(tracker.latencies_ms) == 2
    assert (tracker.duplicates, tracker.unknown) == (1, 1)
    phase = {"messages": 2, "delivered": 2, "received": 2, "receipts_sent": 2, "sent_acks": 2, "duplicates": 0,
             "unknown": 0, "errors": 0}
    assert all_acknowledged(phase, sent_acks=True)
    assert not all_acknowledged({**phase, "received": 1}, sent_acks=True)
    assert not all_acknowledged({**phase, "duplicates": 1}, sent_acks=True)
    assert all_acknowledged({**phase, "sent_acks": 0}, sent_acks=False)  # XMPP has no server `sent` ack


@pytest.mark.unit
def test_the_ejabberd_config_is_yaml_with_the_ports_and_no_shaper() -> None:
    config = yaml.safe_load(bench_xmpp.CONFIG.format(domain=bench_xmpp.DOMAIN, c2s_port=15222, http_port=15280))
    c2s, http = config["listen"]
    assert (c2s["port"], c2s["module"], c2s["shaper"], c2s["starttls"]) == (15222, "ejabberd_c2s", "none", False)
    assert http["port"] == 15280 and http["request_handlers"] == {"/api": "mod_http_api"}
    assert config["hosts"] == [bench_xmpp.DOMAIN] and "mod_offline" in config["modules"]
    assert config["api_permissions"]["the bench registers its users"]["what"] == ["register", "status"]


@pytest.mark.e2e
def test_quick_chat_bench_delivers_and_acknowledges_every_message_on_every_side(tmp_path) -> None:
    latest, stdout = run_quick_bench("chat", tmp_path, 240)
    opts = latest["options"]
    n = opts["connections"]
    ran = [side for side in SIDES if "paced" in latest[side]]
    assert "sixfold" in ran and "relay" in ran
    if HAS_EJABBERD:
        assert "ejabberd" in ran, latest["ejabberd"]
    else:
        assert latest["ejabberd"]["skipped"] and "ejabberd did not run" in stdout
    for side in ran:
        figures = latest[side]
        assert figures["connections"] == n and figures["server_alive_after"], side
        assert figures["all_acknowledged"] == {"paced": True, "saturated": True}, (side, figures)
        paced, saturated = figures["paced"], figures["saturated"]
        assert paced["messages"] == n * paced["per_client"] and paced["per_client"] >= 1, side
        assert saturated["messages"] == n * opts["burst"], side
        for phase in (paced, saturated):
            # every message reached its peer, was acknowledged by it and its receipt came back once
            assert phase["delivered"] == phase["received"] == phase["receipts_sent"] == phase["messages"], side
            assert phase["lost"] == phase["duplicates"] == phase["unknown"] == phase["errors"] == 0, side
            assert 0 < phase["p50_ms"] <= phase["p99_ms"] <= phase["max_ms"] and phase["rate"] > 0, side
            if side != "ejabberd":
                assert phase["sent_acks"] == phase["messages"], side
        memory = figures["memory"]
        assert memory["rss_none_bytes"] > 0 and memory["rss_idle_bytes"] > 0, side
        assert memory["per_idle_connection_bytes"] == (memory["rss_idle_bytes"] - memory["rss_none_bytes"]) / n
        assert figures["server"] and "loadavg_1m" in figures, side
    ratios, targets = latest["ratios"], latest["targets"]
    assert ratios["saturated_rate_sixfold_over_relay"] > 0
    assert targets["p99_ms"] == 50 and targets["connections"] == n and isinstance(targets["p99_met"], bool)
    if "ejabberd" in ran:
        assert ratios["saturated_rate_sixfold_over_ejabberd"] > 0 and isinstance(targets["rate_met"], bool)
    else:
        assert targets["rate_met"] is None and targets["rate_not_judged"]
    assert "share the same" in latest["host"]["note"]
    printed = " ".join(stdout.split())
    assert "sixfold bench chat" in printed and "target p99 < 50 ms" in printed and "target rate >= ejabberd's" in printed
