"""Compaction: a document's update log folded into one Loro snapshot (the `docs_compaction` DAG, daily).

For each document with updates past its snapshot: load it (snapshot + updates), export a snapshot
and replace the snapshot row, keep each folded version's metadata (`doc_versions`: the history
still lists it, and its frontiers restore it), then delete the folded update rows. History older
than the retained window (`docs_retain_days`) is dropped with a Loro shallow snapshot starting at
the newest version before the window: the content, the version vectors and every later version stay
exactly as they were, older versions can no longer be restored (410). The order of the writes makes
a crash at any point harmless: a load reads the snapshot and only the updates after its version.

A document with nothing new is left alone, so a rerun writes nothing and the bytes stay the same.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from loro import ExportMode, Frontiers, LoroDoc

from sixfold.docs import engine
from sixfold.docs.service import DOCS, SNAPSHOTS, UPDATES, VERSIONS
from sixfold.platform.schema import parse_timestamp
from sixfold.platform.settings import Settings


def compact_doc(store: Any, doc_id: str, now: datetime, retain_days: float) -> dict[str, Any]:
    """Fold one document's update log; returns what it folded and the state's size before and after."""
    snapshot = store.get(SNAPSHOTS, {"doc_id": doc_id})
    rows = store.query(UPDATES, {"doc_id": doc_id}, after=snapshot["version"] if snapshot else None)
    report: dict[str, Any] = {"doc_id": doc_id, "folded": len(rows), "bytes_before": None, "bytes_after": None,
                              "restorable_from": snapshot["restorable_from"] if snapshot else 0}
    if not rows:
        return report
    doc = LoroDoc()
    if snapshot is not None:
        doc.import_(snapshot["snapshot"])
    doc.import_batch([r["update"] for r in rows])
    version = rows[-1]["version"]
    before = (len(snapshot["snapshot"]) if snapshot else 0) + sum(len(r["update"]) for r in rows)

    cutoff = now - timedelta(days=retain_days)
    restorable = report["restorable_from"]
    old = [r for r in (*store.query(VERSIONS, {"doc_id": doc_id}), *rows) if r["at"] < cutoff]
    newest_old = max(old, key=lambda r: r["version"], default=None)
    if newest_old is not None and newest_old["version"] > restorable:
        data = doc.export(ExportMode.ShallowSnapshot(Frontiers.decode(newest_old["frontiers"])))
        restorable = newest_old["version"]
    else:
        data = doc.export(ExportMode.Snapshot())
    check = LoroDoc()
    check.import_(data)
    if engine.content(check) != engine.content(doc) or check.oplog_vv != doc.oplog_vv:
        raise RuntimeError(f"document {doc_id}: the snapshot does not reload to the same content and version; "
                           "nothing was changed")
    store.upsert_many(VERSIONS, [{k: r[k] for k in ("doc_id", "version", "author_id", "at", "frontiers", "summary")}
                                 for r in rows])
    store.upsert(SNAPSHOTS, {"doc_id": doc_id, "version": version, "snapshot": data, "restorable_from": restorable,
                             "made_at": now})
    for r in rows:
        store.delete(UPDATES, {"doc_id": doc_id, "version": r["version"]})
    report.update(bytes_before=before, bytes_after=len(data), restorable_from=restorable, version=version,
                  shallow=check.is_shallow())
    return report


def compact_all(settings: Settings, now: datetime | str | None = None,
                say: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Compact every document (the DAG's task); returns the totals."""
    from sixfold.platform.store import open_store

    when = parse_timestamp(now) if now is not None else datetime.now(UTC)
    store = open_store(settings)
    try:
        totals = {"documents": 0, "compacted": 0, "folded": 0, "bytes_before": 0, "bytes_after": 0}
        for row in store.scan(DOCS):
            report = compact_doc(store, row["doc_id"], when, settings.docs_retain_days)
            totals["documents"] += 1
            if report["folded"]:
                totals["compacted"] += 1
                totals["folded"] += report["folded"]
                totals["bytes_before"] += report["bytes_before"]
                totals["bytes_after"] += report["bytes_after"]
                if say:
                    say(f"docs_compaction: {row['doc_id']}: {report['folded']} updates, {report['bytes_before']:,} -> "
                        f"{report['bytes_after']:,} bytes{' (shallow)' if report['shallow'] else ''}")
        return totals
    finally:
        store.close()
