"""Serving suggestions from the newest swapped-in trie, with personalisation and regions.

Artifacts live in `var/typeahead/artifacts/<version>/`; `var/typeahead/CURRENT` names the
primary (serving) and secondary (previous) versions and is replaced atomically, which is the
swap. A server loads the new primary completely off the request path and then switches one
reference, so no request sees a half-loaded trie and none is dropped during a swap.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from schemas.records import SERVING_TABLES
from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.settings import Settings
from sixfold.typeahead.collection import GLOBAL, normalize_query
from sixfold.typeahead.trie import DEFAULT_K, RegionTrie

MAX_PREFIX = 200
PERSONAL_SLOTS = 3  # at most this many of a user's own recent queries lead the list
RECENT_LOOKBACK = 50


class SuggestionError(ValueError):
    """Bad request parameters; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotOwned(SuggestionError):
    """The prefix's shard is not owned by this server: the request goes to an owner (typeahead/sharding.py)."""

    def __init__(self, shard: int, region: str, prefix: str) -> None:
        super().__init__(503, f"prefix {prefix!r} belongs to shard {shard} of region {region!r}, which this server "
                              f"does not own")
        self.shard = shard
        self.region = region


def normalize_prefix(text: str) -> str:
    """Query normalisation (collection.normalize_query), but a trailing space is kept: "new " asks
    for the next word."""
    prefix = normalize_query(text)
    if prefix and text[-1:].isspace():
        prefix += " "
    return prefix


def region_name(region: str | None) -> str:
    """The trie region a `region` parameter asks for (absent or empty: the global one)."""
    return GLOBAL if region is None or region == "" else normalize_prefix(region).strip()


class ArtifactStore:
    """Versioned trie artifacts and the primary/secondary pointer."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.var / "typeahead"
        self.artifacts = self.root / "artifacts"
        self.pointer = self.root / "CURRENT"

    def new_version(self) -> tuple[str, Path]:
        version = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
        path = self.artifacts / version
        path.mkdir(parents=True)
        return version, path

    def current(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.pointer.read_text())
        except FileNotFoundError:
            return None

    def path(self, version: str) -> Path:
        return self.artifacts / version

    def swap(self, version: str, keep: int = 2) -> dict[str, Any]:
        """Make `version` the primary; the old primary becomes the secondary. Older ones are removed."""
        if not (self.path(version) / "shard_map.json").exists():
            raise FileNotFoundError(f"artifact {version} is incomplete (no shard_map.json); refusing to swap")
        previous = self.current()
        pointer = {"primary": version, "secondary": previous["primary"] if previous else None,
                   "swapped_at": datetime.now(timezone.utc).isoformat()}
        tmp = self.pointer.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(pointer))
        os.replace(tmp, self.pointer)
        alive = {pointer["primary"], pointer["secondary"]}
        versions = sorted(p.name for p in self.artifacts.iterdir() if p.is_dir()) if self.artifacts.exists() else []
        stale = [v for v in versions if v not in alive]
        for v in stale[: max(0, len(stale) - max(0, keep - len(alive)))]:
            if v < version:  # never remove one a concurrent build is still writing
                shutil.rmtree(self.path(v), ignore_errors=True)
        return pointer


@dataclass
class LoadedTrie:
    version: str
    k: int
    regions: dict[str, RegionTrie]


def load_trie(path: Path, version: str, owned: set[int] | None) -> LoadedTrie:
    shard_map = json.loads((path / "shard_map.json").read_text())
    regions = {name: RegionTrie(path / name, info["shards"], owned) for name, info in shard_map["regions"].items()}
    return LoadedTrie(version, int(shard_map.get("k", DEFAULT_K)), regions)


class Suggester:
    """Answers suggestion requests from the primary trie; reloads when the pointer changes."""

    def __init__(self, settings: Settings, owned: set[int] | None = None, store: Any = None,
                 poll_interval_s: float = 1.0) -> None:
        self.artifacts = ArtifactStore(settings)
        self.owned = owned
        self.store = store
        self.poll_interval_s = poll_interval_s
        self._trie: LoadedTrie | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.unpersonalised = 0  # personal answers given without the user's recent queries (the store failed)
        self.refresh()

    @property
    def version(self) -> str | None:
        trie = self._trie
        return trie.version if trie else None

    def refresh(self) -> bool:
        """Load the primary if it changed; True when a new trie was swapped in."""
        pointer = self.artifacts.current()
        if not pointer or (self._trie and self._trie.version == pointer["primary"]):
            return False
        with self._lock:
            if self._trie and self._trie.version == pointer["primary"]:
                return False
            loaded = load_trie(self.artifacts.path(pointer["primary"]), pointer["primary"], self.owned)
            self._trie = loaded  # one reference switch: requests see the old trie or the new, never a mix
        return True

    def watch(self) -> None:
        """Poll the pointer in a background thread (servers call this once)."""
        if self._watcher:
            return

        def loop() -> None:
            while not self._stop.wait(self.poll_interval_s):
                try:
                    self.refresh()
                except Exception:  # noqa: BLE001 - a bad artifact must not kill the server; keep the old one
                    pass

        self._watcher = threading.Thread(target=loop, name="trie-watch", daemon=True)
        self._watcher.start()

    def close(self) -> None:
        self._stop.set()

    def shard_ids(self) -> set[int]:
        """Every shard id of the loaded trie, in any region (empty before the first trie)."""
        trie = self._trie
        return {e["id"] for regional in trie.regions.values() for e in regional.entries} if trie else set()

    def suggest(self, prefix: str, k: int = DEFAULT_K, region: str | None = None,
                user_id: str | None = None) -> dict[str, Any]:
        trie = self._trie
        if trie is None:
            raise SuggestionError(503, "no trie has been built yet; run `sixfold typeahead build` (or the typeahead DAG)")
        if not 1 <= k <= trie.k:
            raise SuggestionError(422, f"k must be between 1 and {trie.k} (the trie precomputes the top {trie.k})")
        if len(prefix) > MAX_PREFIX:
            raise SuggestionError(422, f"prefix is longer than {MAX_PREFIX} characters")
        normalized = normalize_prefix(prefix)
        name = region_name(region)
        regional = trie.regions.get(name)
        if regional is None:
            known = ", ".join(sorted(trie.regions))
            raise SuggestionError(404, f"no suggestions for region {region!r}; known regions: {known}")
        found = regional.lookup(normalized, k)
        if found is None:
            raise NotOwned(regional.route(normalized), name, normalized)
        if user_id:
            found = self._personalise(found, normalized, k, user_id, regional)
        return {"prefix": prefix, "suggestions": [{"phrase": p, "score": s} for p, s in found]}

    def _personalise(self, found: list[tuple[str, float]], prefix: str, k: int, user_id: str,
                     regional: RegionTrie) -> list[tuple[str, float]]:
        if self.store is None:
            return found
        try:
            recent = self.store.query(SERVING_TABLES["user_recent_queries"], {"user_id": user_id},
                                      limit=RECENT_LOOKBACK)
        except ServiceUnavailable:  # the store is failing (slow, down, breaker open): everyone's suggestions
            self.unpersonalised += 1
            return found
        mine: list[str] = []
        for row in recent:  # newest first
            q = row["query"]
            if q.startswith(prefix) and q not in mine:
                mine.append(q)
            if len(mine) == min(PERSONAL_SLOTS, k):
                break
        if not mine:
            return found
        scores = dict(found)
        lead = [(q, scores.get(q, regional_score(regional, q))) for q in mine]
        rest = [(p, s) for p, s in found if p not in mine]
        return (lead + rest)[:k]


def regional_score(regional: RegionTrie, phrase: str) -> float:
    """The phrase's score in this region's trie, or 0.0 when it is not a suggestion there."""
    index = regional.index_of(phrase)
    return regional.scores[index] if index is not None else 0.0
