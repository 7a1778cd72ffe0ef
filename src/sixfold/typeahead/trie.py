"""The suggestion trie: compressed, top-k precomputed at every node, sharded by prefix range.

A compressed trie over a set of phrases has one node per phrase, one per branching point
(the longest common prefix of two lexicographic neighbours) and the root; single-child chains
are merged into one edge. Laid out in lexicographic order (a pre-order walk), the trie is just
a sorted array of node prefixes, and the node that answers a typed prefix `p` (its locus) is
the first node >= p, provided it starts with p. Each node stores the ranks of its subtree's
top k phrases (score descending, then phrase ascending), so a lookup is one binary search and
one slice, whatever the prefix.

Shards are contiguous ranges of that array, cut so each carries about the same query load; the
shard map (the course gives this role to ZooKeeper) records each range's first and last node.
"""

from __future__ import annotations

import bisect
import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.feather as feather

DEFAULT_K = 10
FORMAT_VERSION = 1


def common_prefix_length(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class BuiltTrie:
    """A whole trie for one region, before sharding."""

    phrases: list[str]  # by rank: best first (score desc, phrase asc)
    scores: list[float]
    nodes: list[str]  # node prefixes, sorted (pre-order); nodes[0] is the root ""
    top_offsets: np.ndarray  # int64, len(nodes) + 1
    top_ranks: np.ndarray  # int32, ranks into `phrases`
    loads: np.ndarray  # float64, expected query load per node

    def top(self, node: int) -> np.ndarray:
        return self.top_ranks[self.top_offsets[node]:self.top_offsets[node + 1]]


def build_trie(scored: Iterable[tuple[str, float]], k: int = DEFAULT_K) -> BuiltTrie:
    """Build the compressed trie with the top `k` at every node from (phrase, score) pairs.

    Phrases must be distinct and non-empty; scores positive.
    """
    by_rank = sorted(scored, key=lambda ps: (-ps[1], ps[0]))
    phrases = [p for p, _ in by_rank]
    scores = [float(s) for _, s in by_rank]
    if len(set(phrases)) != len(phrases):
        raise ValueError("phrases must be distinct")
    if any(not p for p in phrases):
        raise ValueError("phrases must be non-empty")
    rank_of = {p: r for r, p in enumerate(phrases)}
    lexical = sorted(phrases)

    # Node set of the compacted trie: root, every phrase, every LCP of lexicographic neighbours.
    node_set = {""}
    node_set.update(lexical)
    for a, b in zip(lexical, lexical[1:]):
        node_set.add(a[: common_prefix_length(a, b)])
    nodes = sorted(node_set)
    index = {prefix: i for i, prefix in enumerate(nodes)}

    # Parent of each node = the deepest earlier node that is a prefix of it (a stack walk in pre-order).
    parent = np.full(len(nodes), -1, dtype=np.int64)
    stack: list[int] = [0]
    for i in range(1, len(nodes)):
        prefix = nodes[i]
        while not prefix.startswith(nodes[stack[-1]]):
            stack.pop()
        parent[i] = stack[-1]
        stack.append(i)

    # Bottom-up: children come after their parent in pre-order, so walk backwards.
    candidates: list[list[int]] = [[] for _ in nodes]
    tops: list[list[int]] = [[] for _ in nodes]
    subtree_score = np.zeros(len(nodes), dtype=np.float64)
    for phrase in lexical:
        i = index[phrase]
        candidates[i].append(rank_of[phrase])
        subtree_score[i] += scores[rank_of[phrase]]
    for i in range(len(nodes) - 1, -1, -1):
        best = sorted(candidates[i])[:k]
        tops[i] = best
        candidates[i] = []  # free as we go
        p = parent[i]
        if p >= 0:
            candidates[p].extend(best)
            subtree_score[p] += subtree_score[i]

    # Load: every keystroke of a phrase from its parent node's prefix to this node's prefix lands here.
    edge = np.array([len(nodes[i]) - (len(nodes[parent[i]]) if parent[i] >= 0 else 0) for i in range(len(nodes))],
                    dtype=np.float64)
    loads = subtree_score * np.maximum(edge, 1.0)
    offsets = np.zeros(len(nodes) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in tops], out=offsets[1:])
    ranks = np.fromiter((r for t in tops for r in t), dtype=np.int32, count=int(offsets[-1]))
    return BuiltTrie(phrases, scores, nodes, offsets, ranks, loads)


def balanced_cuts(loads: np.ndarray, shards: int) -> list[int]:
    """Start indices of `shards` contiguous ranges with about equal total load (first is always 0)."""
    n = len(loads)
    shards = max(1, min(shards, n))
    cumulative = np.cumsum(loads)
    total = cumulative[-1] if n else 0.0
    cuts = [0]
    for s in range(1, shards):
        target = total * s / shards
        j = int(np.searchsorted(cumulative, target, side="left"))  # cumulative[j] >= target
        before = cumulative[j - 1] if j > 0 else 0.0
        # cut before node j or after it, whichever lands nearer the target
        cut = j if j > 0 and target - before <= cumulative[min(j, n - 1)] - target else j + 1
        cut = max(cut, cuts[-1] + 1)
        if cut >= n:
            break
        cuts.append(cut)
    return cuts


def locus(nodes: Sequence[str], prefix: str) -> int | None:
    """Index of the node answering `prefix` (the first node >= prefix that starts with it), or None."""
    i = bisect.bisect_left(nodes, prefix)
    if i < len(nodes) and nodes[i].startswith(prefix):
        return i
    return None


# ---- artifacts ---------------------------------------------------------------------------------
def write_region(trie: BuiltTrie, directory: Path, shards: int) -> list[dict]:
    """Write a region's phrase table and shards; return the shard entries for the shard map."""
    directory.mkdir(parents=True, exist_ok=True)
    feather.write_feather(
        pa.table({"phrase": pa.array(trie.phrases, pa.string()), "score": pa.array(trie.scores, pa.float64())}),
        directory / "phrases.arrow", compression="uncompressed",
    )
    cuts = balanced_cuts(trie.loads, shards)
    bounds = list(zip(cuts, cuts[1:] + [len(trie.nodes)]))
    entries = []
    for shard_id, (lo, hi) in enumerate(bounds):
        offsets = trie.top_offsets[lo:hi + 1] - trie.top_offsets[lo]
        ranks = trie.top_ranks[trie.top_offsets[lo]:trie.top_offsets[hi]]
        top = pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)), pa.array(ranks, pa.int32()))
        name = f"shard-{shard_id:03d}.arrow"
        feather.write_feather(pa.table({"node": pa.array(trie.nodes[lo:hi], pa.string()), "top": top}),
                              directory / name, compression="uncompressed")
        entries.append({"id": shard_id, "first": trie.nodes[lo], "last": trie.nodes[hi - 1], "nodes": hi - lo,
                        "load": float(trie.loads[lo:hi].sum()), "file": name})
    return entries


def write_artifact(tries: dict[str, BuiltTrie], directory: Path, shards: int, meta: dict | None = None) -> dict:
    """Write every region's trie and the shard map (`shard_map.json`, written last) into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    regions = {}
    for region, trie in sorted(tries.items()):
        regions[region] = {"phrases": len(trie.phrases), "shards": write_region(trie, directory / region, shards)}
    shard_map = {"format": FORMAT_VERSION, "k": DEFAULT_K, "regions": regions, **(meta or {})}
    tmp = directory / "shard_map.json.tmp"
    tmp.write_text(json.dumps(shard_map, indent=1, ensure_ascii=False))
    os.replace(tmp, directory / "shard_map.json")
    return shard_map


@dataclass
class Shard:
    nodes: list[str]
    offsets: np.ndarray
    ranks: np.ndarray

    @classmethod
    def load(cls, path: Path) -> "Shard":
        table = feather.read_table(path, memory_map=False)
        top = table.column("top").combine_chunks()
        return cls(table.column("node").to_pylist(), top.offsets.to_numpy().astype(np.int64),
                   top.values.to_numpy().astype(np.int32))


class RegionTrie:
    """The shards of one region that this server owns, plus the region's phrase table."""

    def __init__(self, directory: Path, entries: list[dict], owned: set[int] | None) -> None:
        table = feather.read_table(directory / "phrases.arrow", memory_map=False)
        self.phrases: list[str] = table.column("phrase").to_pylist()
        self.scores: list[float] = table.column("score").to_pylist()
        self.entries = entries
        self.firsts = [e["first"] for e in entries]
        self.shards: dict[int, Shard] = {
            e["id"]: Shard.load(directory / e["file"]) for e in entries if owned is None or e["id"] in owned
        }

    def index_of(self, phrase: str) -> int | None:
        """Rank of a phrase in the region's phrase table (built on first use)."""
        if not hasattr(self, "_rank"):
            self._rank = {p: r for r, p in enumerate(self.phrases)}
        return self._rank.get(phrase)

    def route(self, prefix: str) -> int:
        """The shard holding the locus of `prefix` (the shard map lookup a router would do)."""
        i = max(0, bisect.bisect_right(self.firsts, prefix) - 1)
        if prefix > self.entries[i]["last"] and i + 1 < len(self.entries):
            i += 1
        return self.entries[i]["id"]

    def lookup(self, prefix: str, k: int) -> list[tuple[str, float]] | None:
        """Top `k` (phrase, score) for `prefix`; None when the shard is not owned here."""
        shard = self.shards.get(self.route(prefix))
        if shard is None:
            return None
        node = locus(shard.nodes, prefix)
        if node is None:
            return []
        start = shard.offsets[node]
        ranks = shard.ranks[start:min(start + k, shard.offsets[node + 1])]
        return [(self.phrases[r], self.scores[r]) for r in ranks.tolist()]
