"""The document service: documents, members and roles, durable updates, history, restore, comments.

Each serving process keeps its hot documents in memory (an LRU of `LiveDoc`, a LoroDoc each) and
works on one under that document's lock; everything here is synchronous (the API and the hub call
it off the event loop). The order of an update, so that nothing acknowledged is ever lost:

1. the change is applied to the in-memory LoroDoc (edits checked first against the running length,
   so a bad batch changes nothing; binary updates imported);
2. the update bytes are appended to `doc_updates` under the next version (the store's atomic add,
   so several processes agree) and published on `docs-updates` keyed by the document;
3. only then is it acknowledged (the version returned, the WebSocket `ack`), and forwarded to the
   other connections (`on_update`, the hub), still under the lock so they see updates in order.

If step 2 fails the in-memory copy is dropped, so the next request reloads what is durable. A
document loads as its snapshot row (the `docs_compaction` DAG's) plus the updates after it. Other
processes' updates arrive through `apply_remote` (the hub's consumer of `docs-updates`).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from loro import ExportMode, LoroDoc

from schemas.records import EVENTS, SERVING_TABLES
from sixfold.docs import engine
from sixfold.platform import schema
from sixfold.platform.errors import RequestError

DOCS = SERVING_TABLES["docs"]
MEMBERS = SERVING_TABLES["doc_members"]
SEQUENCES = SERVING_TABLES["doc_sequences"]
UPDATES = SERVING_TABLES["doc_updates"]
VERSIONS = SERVING_TABLES["doc_versions"]
SNAPSHOTS = SERVING_TABLES["doc_snapshots"]
COMMENTS = SERVING_TABLES["doc_comments"]
USERS = SERVING_TABLES["users"]
UPDATE_EVENT = EVENTS["docs-updates"]
TOPIC = UPDATE_EVENT.topic
ROLES = ("owner", "editor", "viewer")
WRITERS = ("owner", "editor")
MAX_TITLE = 200
MAX_COMMENT = 10_000
log = logging.getLogger("sixfold.docs")


def not_found(doc_id: str) -> RequestError:
    return RequestError(404, f"no document {doc_id!r}: POST /v1/docs creates one")


def now() -> datetime:
    return datetime.now(UTC)


@dataclass
class LiveDoc:
    """A document in this process's memory; every field is read and written under `lock`."""

    doc_id: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    doc: LoroDoc | None = None
    version: int = 0
    restorable_from: int = 0
    connections: set = field(default_factory=set)  # the hub's, pinned in memory while any is open


OnUpdate = Callable[[LiveDoc, bytes, Any], None]  # (doc, update bytes, the connection it came from or None)


class DocService:
    def __init__(self, store: Any, bus: Any, sequencer: Any, origin: str, cache_docs: int = 1000,
                 clock: Callable[[], datetime] = now) -> None:
        self.store, self.bus, self.sequencer, self.origin = store, bus, sequencer, origin
        self.cache_docs = cache_docs
        self.clock = clock
        self.on_update: OnUpdate = lambda _live, _update, _source: None
        self._live: OrderedDict[str, LiveDoc] = OrderedDict()
        self._live_lock = threading.Lock()
        self._meta: dict[str, dict[str, Any]] = {}  # a document's row never changes once made

    # ---- documents and roles -------------------------------------------------------------------
    def create(self, owner_id: int, title: Any = None, public: Any = False) -> dict[str, Any]:
        title = "Untitled" if title is None else title
        if not isinstance(title, str) or len(title) > MAX_TITLE:
            raise RequestError(422, f"title must be text of at most {MAX_TITLE} characters")
        if not isinstance(public, bool):
            raise RequestError(422, "public must be true or false")
        doc_id = str(self.sequencer.next_id())
        at = self.clock()
        with self.store.batch():
            self.store.upsert(DOCS, {"doc_id": doc_id, "title": title, "owner_id": owner_id, "public": public,
                                     "created_at": at})
            self.store.upsert(MEMBERS, {"doc_id": doc_id, "user_id": owner_id, "role": "owner", "added_at": at})
        return {"doc_id": doc_id, "version": 0, "title": title, "public": public}

    def meta(self, doc_id: str) -> dict[str, Any]:
        row = self._meta.get(doc_id)
        if row is None:
            row = self.store.get(DOCS, {"doc_id": doc_id})
            if row is None:
                raise not_found(doc_id)
            if len(self._meta) > 100_000:
                self._meta.clear()
            self._meta[doc_id] = row
        return row

    def role(self, doc_id: str, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        row = self.store.get(MEMBERS, {"doc_id": doc_id, "user_id": user_id})
        return row["role"] if row else None

    def require_reader(self, doc_id: str, user_id: int | None) -> str | None:
        """The reader's role (None: a non-member reading a public document); 401, 403 or 404 otherwise."""
        if user_id is None:
            row = self.store.get(DOCS, {"doc_id": doc_id})
            if row is None or not row["public"]:
                raise RequestError(401, "this document is not public: send `Authorization: Bearer <token>` of a "
                                        "member (POST /v1/users gives one)",
                                   headers={"WWW-Authenticate": 'Bearer realm="sixfold"'})
            return None
        meta = self.meta(doc_id)
        role = self.role(doc_id, user_id)
        if role is None and not meta["public"]:
            raise RequestError(403, f"user {user_id} is not a member of document {doc_id}; its owner can add you "
                                    f"(POST /v1/docs/{doc_id}/members)")
        return role

    def require_member(self, doc_id: str, user_id: int) -> str:
        self.meta(doc_id)
        role = self.role(doc_id, user_id)
        if role is None:
            raise RequestError(403, f"user {user_id} is not a member of document {doc_id}; its owner can add you "
                                    f"(POST /v1/docs/{doc_id}/members)")
        return role

    def require_writer(self, doc_id: str, user_id: int) -> str:
        role = self.require_member(doc_id, user_id)
        if role not in WRITERS:
            raise RequestError(403, f"user {user_id} is a {role} of document {doc_id}: only its owner and editors "
                                    "may change it")
        return role

    def add_member(self, doc_id: str, acting: int, user_id: Any, role: Any) -> dict[str, Any]:
        if self.require_member(doc_id, acting) != "owner":
            raise RequestError(403, f"user {acting} is not the owner of document {doc_id}: only its owner adds members")
        if role not in ("editor", "viewer"):
            raise RequestError(422, f"role must be editor or viewer, got {role!r} (a document has one owner)")
        if user_id == acting:
            raise RequestError(422, f"user {user_id} owns document {doc_id}; the owner's role does not change")
        if self.store.get(USERS, {"user_id": user_id}) is None:
            raise RequestError(404, f"user {user_id} does not exist")
        row = {"doc_id": doc_id, "user_id": user_id, "role": role, "added_at": self.clock()}
        self.store.upsert(MEMBERS, row)
        return {"doc_id": doc_id, "user_id": user_id, "role": role}

    def members(self, doc_id: str, acting: int) -> list[dict[str, Any]]:
        self.require_member(doc_id, acting)
        return [{"user_id": r["user_id"], "role": r["role"], "added_at": r["added_at"]}
                for r in self.store.query(MEMBERS, {"doc_id": doc_id})]

    # ---- documents in memory -------------------------------------------------------------------
    def live(self, doc_id: str) -> LiveDoc:
        """The document in memory, loaded on first use (the caller checked it exists)."""
        with self._live_lock:
            live = self._live.get(doc_id)
            if live is not None:
                self._live.move_to_end(doc_id)
            else:
                live = self._live[doc_id] = LiveDoc(doc_id)
                self._evict()
        if live.doc is None:
            with live.lock:
                self._ready(live)
        return live

    def loaded(self, doc_id: str) -> LiveDoc | None:
        return self._live.get(doc_id)

    def _evict(self) -> None:
        """Past the capacity, drop the least recently used documents nobody is connected to or working on."""
        excess = len(self._live) - self.cache_docs
        for doc_id in list(self._live):
            if excess <= 0:
                return
            live = self._live[doc_id]
            if live.connections or not live.lock.acquire(blocking=False):
                continue
            try:
                del self._live[doc_id]
                excess -= 1
            finally:
                live.lock.release()

    def forget(self, live: LiveDoc) -> None:
        """Drop an in-memory copy that may hold what is not durable: its next use reloads what is."""
        live.doc = None

    def _ready(self, live: LiveDoc) -> LoroDoc:
        """The document's LoroDoc, (re)loaded if it was dropped; called under its lock."""
        if live.doc is None:
            self._load(live)
        assert live.doc is not None
        return live.doc

    def _load(self, live: LiveDoc) -> None:
        doc = engine.new_doc()
        snapshot = self.store.get(SNAPSHOTS, {"doc_id": live.doc_id})
        version, restorable = 0, 0
        if snapshot is not None:
            engine.loro_call(lambda: doc.import_(snapshot["snapshot"]), f"document {live.doc_id}'s snapshot")
            version, restorable = snapshot["version"], snapshot["restorable_from"]
        rows = self.store.query(UPDATES, {"doc_id": live.doc_id}, after=version if snapshot else None,
                                columns=("version", "update"))
        if rows:
            engine.loro_call(lambda: doc.import_batch([r["update"] for r in rows]), f"document {live.doc_id}'s updates")
            version = max(version, rows[-1]["version"])
        live.doc, live.version, live.restorable_from = doc, version, restorable

    # ---- reading ------------------------------------------------------------------------------
    def read(self, doc_id: str, user_id: int | None) -> dict[str, Any]:
        self.require_reader(doc_id, user_id)
        meta = self.meta(doc_id)
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            return {"doc_id": doc_id, "title": meta["title"], "content": engine.content(live.doc),
                    "version": live.version, "public": meta["public"]}

    def updates_since(self, doc_id: str, user_id: int | None, vv: bytes | None) -> bytes:
        self.require_reader(doc_id, user_id)
        since = engine.decode_vv(vv) if vv else None
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            return engine.updates_since(live.doc, since)

    # ---- writing ------------------------------------------------------------------------------
    def edit(self, doc_id: str, user_id: int, raw: Any) -> int:
        """Apply `[[pos, delete_count, insert_text], ...]` as one durable update; returns the version."""
        self.require_writer(doc_id, user_id)
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            try:
                edits, inserted, deleted = engine.check_edits(raw, engine.length(live.doc))
            except engine.EditRejected as exc:
                raise RequestError(422, str(exc)) from None
            if not edits:
                return live.version
            before = live.doc.oplog_vv
            engine.apply_edits(live.doc, edits)
            update = live.doc.export(ExportMode.Updates(from_=before))
            return self._durable(live, user_id, update, engine.summary(inserted, deleted), update, None)

    def import_update(self, live: LiveDoc, user_id: int, raw: bytes, source: Any = None) -> int:
        """Import a client's Loro update bytes (a writer's, checked by the caller) and make what is new durable."""
        with live.lock:
            self._ready(live)
            doc = live.doc
            before_vv, before = doc.oplog_vv, doc.oplog_frontiers
            status = engine.loro_call(lambda: doc.import_(raw), "these bytes are not a Loro update")
            if doc.oplog_vv == before_vv:  # nothing new (a repeat, or it waits for updates it depends on)
                if status.pending is not None:
                    log.info("docs %s: an update from user %s waits for updates it depends on", live.doc_id, user_id)
                return live.version
            inserted, deleted = engine.changed_chars(doc, before, doc.oplog_frontiers)
            update = doc.export(ExportMode.Updates(from_=before_vv))
            return self._durable(live, user_id, update, engine.summary(inserted, deleted), raw, source)

    def _durable(self, live: LiveDoc, author: int, update: bytes, summary: str, forward: bytes, source: Any) -> int:
        """Append the update, publish it, then hand it to the connections; called under the document's lock."""
        at = self.clock()
        try:
            with self.store.batch():
                version = self.store.add(SEQUENCES, {"doc_id": live.doc_id}, "last_version", 1)
                self.store.upsert(UPDATES, {"doc_id": live.doc_id, "version": version, "author_id": author, "at": at,
                                            "update": update, "frontiers": live.doc.oplog_frontiers.encode(),
                                            "summary": summary})
            self.bus.produce(TOPIC, schema.to_json_row(UPDATE_EVENT.record, {
                "doc_id": live.doc_id, "version": version, "author_id": author, "at": at, "origin": self.origin,
                "update": update}), key=live.doc_id)
        except BaseException:
            self.forget(live)  # the in-memory copy holds what is not durable: the next use reloads
            raise
        live.version = max(live.version, version)
        self.on_update(live, forward, source)
        return version

    def apply_remote(self, event: dict[str, Any]) -> bool:
        """Another process's durable update (from `docs-updates`): into this process's copy, if it has one."""
        if event["origin"] == self.origin:
            return False
        live = self._live.get(event["doc_id"])
        if live is None:
            return False  # not in memory here: its next load reads the store, which has it
        with live.lock:
            if live.doc is None:
                return False
            before = live.doc.oplog_vv
            engine.loro_call(lambda: live.doc.import_(event["update"]), "a docs-updates event")
            live.version = max(live.version, event["version"])
            if live.doc.oplog_vv != before:
                self.on_update(live, event["update"], None)
        return True

    # ---- history and restore ------------------------------------------------------------------
    def history(self, doc_id: str, user_id: int, limit: int = 100, before: int | None = None) -> dict[str, Any]:
        self.require_member(doc_id, user_id)
        cols = ("version", "author_id", "at", "summary")
        rows = [*self.store.query(VERSIONS, {"doc_id": doc_id}, columns=cols),
                *self.store.query(UPDATES, {"doc_id": doc_id}, columns=cols)]
        seen: dict[int, dict[str, Any]] = {r["version"]: r for r in rows}  # a row both folded and not: one version
        versions = sorted((v for v in seen if before is None or v < before), reverse=True)
        page = versions[:limit]
        return {"doc_id": doc_id,
                "versions": [{k: seen[v][k] for k in cols} for v in page],
                "next_cursor": str(page[-1]) if len(versions) > limit else None}

    def frontiers_of(self, doc_id: str, version: int) -> bytes:
        if version == 0:
            return b""
        row = (self.store.get(UPDATES, {"doc_id": doc_id, "version": version})
               or self.store.get(VERSIONS, {"doc_id": doc_id, "version": version}))
        if row is None:
            raise RequestError(404, f"document {doc_id} has no version {version}; GET /v1/docs/{doc_id}/history "
                                    "lists them")
        return row["frontiers"]

    def content_at(self, doc_id: str, version: int) -> str:
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            if version > live.version:
                raise RequestError(404, f"document {doc_id} has no version {version}; its latest is {live.version}")
            if 0 < version < live.restorable_from or (version == 0 and live.restorable_from > 0):
                raise RequestError(410, f"version {version} of document {doc_id} was compacted into a shallow "
                                        f"snapshot; versions from {live.restorable_from} on can be restored")
            frontiers = self.frontiers_of(doc_id, version)
            try:
                return engine.content_at(live.doc, frontiers)
            except engine.LoroRefused as exc:
                raise RequestError(410, f"version {version} of document {doc_id} is not in the retained "
                                        f"history ({exc})") from None

    def restore(self, doc_id: str, user_id: int, version: Any) -> int:
        """A new version, by the restoring user, whose content equals `version`'s (nothing erased)."""
        if type(version) is not int or version < 0:
            raise RequestError(422, f"version must be a whole number of at least 0, got {version!r}")
        self.require_writer(doc_id, user_id)
        old = self.content_at(doc_id, version)
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            text = live.doc.get_text(engine.TEXT)
            current = text.to_string()
            if current == old:
                return live.version
            before_vv, before = live.doc.oplog_vv, live.doc.oplog_frontiers
            text.update(old, use_refined_diff=len(old) + len(current) < 50_000, timeout_ms=2_000)
            if text.to_string() != old:  # a diff that timed out and fell short: replace the rest outright
                text.delete(0, text.len_unicode)
                text.insert(0, old)
            live.doc.commit()
            inserted, deleted = engine.changed_chars(live.doc, before, live.doc.oplog_frontiers)
            update = live.doc.export(ExportMode.Updates(from_=before_vv))
            return self._durable(live, user_id, update, f"restored version {version}: "
                                 + engine.summary(inserted, deleted), update, None)

    # ---- comments -----------------------------------------------------------------------------
    def comment(self, doc_id: str, user_id: int, start: Any, end: Any, text: Any) -> dict[str, Any]:
        self.require_member(doc_id, user_id)
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_COMMENT:
            raise RequestError(422, f"text must be 1 to {MAX_COMMENT:,} characters")
        if type(start) is not int or type(end) is not int:
            raise RequestError(422, "start and end must be whole numbers (code point offsets)")
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            n = engine.length(live.doc)
            if not 0 <= start < end <= n:
                raise RequestError(422, f"the range [{start}, {end}) is not in the text: it needs 0 <= start < end "
                                        f"<= {n} (the text's length in code points)")
            first, last = engine.anchor(live.doc, start, end)
            quote = engine.content(live.doc)[start:end]
        row = {"doc_id": doc_id, "comment_id": self.sequencer.next_id(), "author_id": user_id, "text": text,
               "start_cursor": first, "end_cursor": last, "quote": quote, "at": self.clock()}
        self.store.upsert(COMMENTS, row)
        return self._shown(row, engine.Anchor(start, end))

    def comments(self, doc_id: str, user_id: int | None) -> list[dict[str, Any]]:
        self.require_reader(doc_id, user_id)
        rows = self.store.query(COMMENTS, {"doc_id": doc_id})
        live = self.live(doc_id)
        with live.lock:
            self._ready(live)
            return [self._shown(r, engine.resolve(live.doc, r["start_cursor"], r["end_cursor"])) for r in rows]

    @staticmethod
    def _shown(row: dict[str, Any], where: engine.Anchor) -> dict[str, Any]:
        return {"comment_id": str(row["comment_id"]), "author_id": row["author_id"], "text": row["text"],
                "start": where.start, "end": where.end, "quote": row["quote"], "at": row["at"],
                "orphaned": where.orphaned}

