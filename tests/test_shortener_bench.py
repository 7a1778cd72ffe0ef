"""`sixfold bench shortener --quick` end to end (real server, nginx, wrk), and its nginx peer alone; no timing asserts."""

from __future__ import annotations

import shutil
import urllib.request
from pathlib import Path

import pytest
from benchrun import run_quick_bench

from sixfold.platform.benchkit import free_port, running, wait_until
from sixfold.shortener import bench_nginx
from sixfold.shortener.bench import check_redirects, long_url

HAS_NGINX = shutil.which("nginx") is not None or Path("/usr/sbin/nginx").exists()


@pytest.mark.unit
def test_map_entries_keep_keys_that_differ_only_by_case_apart() -> None:
    body = bench_nginx.map_entries([("K5abc", "https://a.example.com/1"), ("k5abc", "https://b.example.com/2"),
                                    ("Zz9xyz", "https://c.example.com/3?a=1&b=2")])
    assert '    /Zz9xyz "https://c.example.com/3?a=1&b=2";\n' in body
    assert '"~^/K5abc$" "https://a.example.com/1";' in body and '"~^/k5abc$" "https://b.example.com/2";' in body
    for unsafe in ('https://x.example.com/"', "https://x.example.com/$uri", "https://x.example.com/a b",
                   "https://x.example.com/;", "https://x.example.com/\\"):
        with pytest.raises(ValueError, match="nginx map"):
            bench_nginx.map_entries([("abcdef", unsafe)])


@pytest.mark.unit
def test_long_urls_are_fixed_by_seed_and_index_and_fit_an_nginx_map() -> None:
    urls = [long_url(7, i) for i in range(2_000)]
    assert urls == [long_url(7, i) for i in range(2_000)] and len(set(urls)) == len(urls)
    assert long_url(8, 0) != long_url(7, 0)
    assert all(u.startswith("https://") and len(u) < 2048 for u in urls)
    bench_nginx.map_entries((f"k{i}", u) for i, u in enumerate(urls))  # none refused


@pytest.mark.e2e
@pytest.mark.skipif(not HAS_NGINX, reason="needs nginx (Debian package nginx-light)")
def test_the_nginx_peer_redirects_each_key_to_its_own_url(tmp_path: Path) -> None:
    links = [("K5abcd", "https://a.example.com/1"), ("k5abcd", "https://b.example.com/2"),
             *((f"key{i}x", long_url(3, i)) for i in range(500))]
    binary, port = bench_nginx.nginx_binary(), free_port()
    conf = bench_nginx.write_config(tmp_path / "nginx", port, 1, links)
    bench_nginx.check_config(binary, tmp_path / "nginx", conf)
    with running(bench_nginx.command(binary, tmp_path / "nginx", conf), None, tmp_path / "nginx.log") as proc:
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}{bench_nginx.HEALTH_PATH}",
                                                  timeout=2).status == 200, proc, "nginx", tmp_path / "nginx.log")
        checks = check_redirects(port, [(i, key, target) for i, (key, target) in enumerate(links)])
    assert checks["right"] == checks["checked"] == len(links), checks["wrong"]
    assert checks["statuses"] == {"302": len(links)}
    assert checks["unknown_key"]["status"] == 404


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("wrk") is None or not HAS_NGINX, reason="needs wrk and nginx (Debian packages)")
def test_quick_shortener_bench_writes_every_section(tmp_path: Path) -> None:
    latest, stdout = run_quick_bench("shortener", tmp_path, 420)
    opts = latest["options"]
    seed = opts["seed"]

    links = latest["links"]
    assert links["created"] == opts["links"] and links["links_per_s"] > 0 and links["server_alive_after"]
    assert links["hot_keys"] == int(opts["links"] * opts["hot_share"])
    key_of = {index: key for index, key, _ in links["sample"]}
    assert all(target == long_url(seed, index) for index, _, target in links["sample"])

    runs = {"sixfold " + name: latest["sixfold"][name] for name in ("hot_cache_on", "hot_cache_off", "all_cache_off")}
    runs |= {"nginx " + name: latest["nginx"][name] for name in ("hot", "all")}
    runs |= {"mix " + name: latest["mixed"][name] for name in ("cache_on", "cache_off")}
    for name, figures in runs.items():
        assert figures["rps"] > 0 and figures["p50_ms"] > 0 and figures["p99_ms"] > 0, name
        assert figures["non_2xx"] == 0, name  # every answer a 2xx/3xx: redirects, and the mix's 201s
        assert figures["server_alive_after"], name
        assert figures["sent"]["reads"] > 0, name
        # both sides answered real redirects: a plain client, after the run, found each sampled key
        # redirecting (302) to the URL it was created for, and an unknown key answering 404
        checks = figures["checks"]
        assert checks["right"] == checks["checked"] == links["sample_checked"] > 0, (name, checks["wrong"])
        assert checks["statuses"] == {"302": checks["checked"]}, name
        assert checks["unknown_key"]["status"] == 404, name
        for index, key, location in checks["sample"]:
            assert location == long_url(seed, index), name
            assert key_of.setdefault(index, key) == key, name  # the same keys for both sides
    assert latest["nginx"]["hot"]["checks"]["sample"] == latest["sixfold"]["hot_cache_on"]["checks"]["sample"]
    for name in ("cache_on", "cache_off"):
        assert latest["mixed"][name]["sent"]["writes"] > 0, name
    assert latest["mixed"]["write_share"] == 1 / opts["write_every"]

    creations = latest["creations"]
    assert creations["rps"] > 0 and creations["non_2xx"] == 0 and creations["server_alive_after"]
    assert creations["sent"]["writes"] > 0 and creations["sent"]["reads"] == 0

    ratios = latest["ratios"]
    for name in ("hot_cache_on_over_nginx", "hot_cache_off_over_nginx", "all_cache_off_over_nginx",
                 "mixed_cache_on_over_nginx_hot", "mixed_cache_off_over_nginx_hot"):
        assert ratios[name] > 0, name
    targets = latest["targets"]
    assert targets["judged_on"].startswith("the mix") and set(targets) >= {
        "rps_met", "p99_met", "mixed_cache_off", "redirects_only_cached_set", "redirects_only_uncached_set"}
    assert "SIXFOLD_SHORTENER_LIMIT_PER_KEY=''" in latest["conditions"]["sixfold"]
    assert "share the same" in latest["host"]["note"]
    assert "Sixfold / nginx" in stdout and "redirects" in stdout


def test_vegeta_targets_interleave_one_write_in_every_n_requests() -> None:
    from sixfold.platform.benchkit import vegeta_targets

    reads = [("GET", f"/k{i}", "", "") for i in range(7)]
    writes = [("POST", "/v1/urls", "key-1", f'{{"long_url": "https://e.com/{j}"}}') for j in range(5)]
    targets = vegeta_targets("http://127.0.0.1:1", reads + writes, write_every=4, credential_header="X-Api-Key")
    kinds = [t["method"] for t in targets]
    assert len(targets) == 20 and [i for i, k in enumerate(kinds, start=1) if k == "POST"] == [4, 8, 12, 16, 20]
    assert [t["url"] for t in targets if t["method"] == "GET"][:8] == [f"http://127.0.0.1:1/k{i % 7}" for i in range(8)]
    post = targets[3]
    assert post["header"] == {"X-Api-Key": ["key-1"], "Content-Type": ["application/json"]}
    import base64

    assert base64.b64decode(post["body"]) == b'{"long_url": "https://e.com/0"}'
