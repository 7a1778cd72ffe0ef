"""The trie against a brute-force oracle: scan every phrase with the prefix, sort by score then phrase."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from sixfold.typeahead.trie import RegionTrie, balanced_cuts, build_trie, write_artifact

pytestmark = pytest.mark.unit


def brute_force(scored: dict[str, float], prefix: str, k: int) -> list[tuple[str, float]]:
    hits = [(p, s) for p, s in scored.items() if p.startswith(prefix)]
    return sorted(hits, key=lambda ps: (-ps[1], ps[0]))[:k]


def every_prefix(phrases) -> set[str]:
    out = {""}
    for p in phrases:
        out.update(p[:i] for i in range(1, len(p) + 1))
        out.add(p + "zz")  # beyond a phrase: no answer
    return out


def check_all(scored: dict[str, float], shards: int, tmp_path, k: int = 10) -> None:
    artifact = tmp_path / f"a{shards}"
    shard_map = write_artifact({"global": build_trie(scored.items(), k)}, artifact, shards)
    entries = shard_map["regions"]["global"]["shards"]
    trie = RegionTrie(artifact / "global", entries, owned=None)
    for prefix in every_prefix(scored):
        for kk in (1, 3, k):
            assert trie.lookup(prefix, kk) == brute_force(scored, prefix, kk), (prefix, kk)


def test_small_known_trie_matches_the_oracle(tmp_path):
    scored = {"a": 1.0, "ab": 5.0, "abc": 3.0, "abd": 3.0, "b": 2.0, "bca": 9.0, "ab c": 4.0, "zz": 0.5}
    check_all(scored, 1, tmp_path, k=3)
    check_all(scored, 4, tmp_path, k=3)


def test_ties_break_by_phrase_ascending(tmp_path):
    scored = {f"tie{c}": 7.0 for c in "edcba"} | {"tiz": 7.0, "ti": 8.0}
    artifact = tmp_path / "t"
    m = write_artifact({"global": build_trie(scored.items(), 10)}, artifact, 2)
    trie = RegionTrie(artifact / "global", m["regions"]["global"]["shards"], None)
    assert [p for p, _ in trie.lookup("ti", 10)] == ["ti", "tiea", "tieb", "tiec", "tied", "tiee", "tiz"]


def test_compression_merges_single_child_chains():
    trie = build_trie([("internationalisation", 1.0), ("internet", 2.0)])
    # root, the branching point "intern", and the two phrases: no node per character
    assert trie.nodes == ["", "intern", "internationalisation", "internet"]


def test_unicode_and_many_random_phrases_match_the_oracle(tmp_path):
    rng = random.Random(3)
    alphabet = "abcé 日本ü"
    scored = {}
    while len(scored) < 400:
        phrase = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 7))).strip()
        if phrase:
            scored[phrase] = float(rng.choice([1, 2, 3, 5, 8, 13]))  # many ties on purpose
    check_all(scored, 7, tmp_path)


@hsettings(max_examples=40, deadline=None)
@given(st.dictionaries(st.text(alphabet="ab c", min_size=1, max_size=6), st.integers(1, 5), min_size=1, max_size=40),
       st.integers(1, 6))
def test_any_phrase_set_and_shard_count_matches_the_oracle(tmp_path_factory, scored, shards):
    check_all({p: float(s) for p, s in scored.items()}, shards, tmp_path_factory.mktemp("h"), k=4)


def test_shards_balance_load_and_route_like_the_map():
    loads = [1.0] * 90 + [100.0] + [1.0] * 9
    cuts = balanced_cuts(__import__("numpy").array(loads), 2)
    assert cuts[0] == 0 and len(cuts) == 2
    first, second = sum(loads[: cuts[1]]), sum(loads[cuts[1]:])
    assert (first, second) == (90, 109)  # the heavy node cannot be split; the cut lands nearest half


def test_a_server_loads_only_the_shards_it_owns(tmp_path):
    scored = {f"{c}{i}": float(i + 1) for c in "abcdefgh" for i in range(5)}
    m = write_artifact({"global": build_trie(scored.items())}, tmp_path, 4)
    entries = m["regions"]["global"]["shards"]
    owned = RegionTrie(tmp_path / "global", entries, owned={0})
    assert set(owned.shards) == {0}
    for prefix in every_prefix(scored):
        got = owned.lookup(prefix, 10)
        if owned.route(prefix) == 0:
            assert got == brute_force(scored, prefix, 10)
        else:
            assert got is None
