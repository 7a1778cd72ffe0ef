"""The document engine: one Loro CRDT per document, its text in the container "content".

Pure functions over `loro.LoroDoc`, no store and no server: checking and applying positional
edits (`[[pos, delete_count, insert_text], ...]` in Unicode code points), what an update changed
("+12 -3 chars"), the content at an old version (checkout on a fork), and comment anchors (Loro
cursors) resolved against the current text. The service (`service.py`) adds locks and persistence.

Loro's Python bindings raise a bare `BaseException` for a refused operation (bytes it cannot
decode, a version before a shallow snapshot's start); `loro_call` turns that into `LoroRefused`,
so callers can answer 4xx without catching what they must not (KeyboardInterrupt, SystemExit).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from loro import Cursor, ExportMode, Frontiers, LoroDoc, Side, VersionVector

TEXT = "content"
MAX_OPS = 10_000  # operations in one edits request: the trace benchmark's batch
T = TypeVar("T")


class LoroRefused(ValueError):
    """Loro refused an operation: undecodable bytes, a version outside the retained history, ..."""


class EditRejected(ValueError):
    """An edit batch that cannot apply; `index` is the first offending operation (None: the batch itself)."""

    def __init__(self, message: str, index: int | None = None) -> None:
        super().__init__(message)
        self.index = index


def loro_call(call: Callable[[], T], what: str) -> T:
    try:
        return call()
    except (KeyboardInterrupt, SystemExit, GeneratorExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - Loro's bindings raise BaseException for refusals
        raise LoroRefused(f"{what}: {exc}") from None


def new_doc() -> LoroDoc:
    return LoroDoc()


def content(doc: LoroDoc) -> str:
    return doc.get_text(TEXT).to_string()


def length(doc: LoroDoc) -> int:
    return doc.get_text(TEXT).len_unicode


# ---- positional edits -----------------------------------------------------------------------------
Edit = tuple[int, int, str]


def check_edits(raw: Any, length_now: int) -> tuple[list[Edit], int, int]:
    """Validated edits, the characters they insert and delete; EditRejected naming the first bad one.

    Every operation is checked against the running length (what the text is once the operations
    before it applied), so a batch either applies whole or not at all.
    """
    if isinstance(raw, dict) and set(raw) == {"edits"}:
        raw = raw["edits"]
    if not isinstance(raw, list):
        raise EditRejected("the body is a list of [pos, delete_count, insert_text] operations "
                           "(or {\"edits\": [...]})")
    if len(raw) > MAX_OPS:
        raise EditRejected(f"{len(raw):,} operations in one request; at most {MAX_OPS:,} (send several requests)")
    edits: list[Edit] = []
    running, inserted, deleted = length_now, 0, 0
    for i, op in enumerate(raw):
        if not (isinstance(op, list) and len(op) == 3 and type(op[0]) is int and type(op[1]) is int
                and isinstance(op[2], str)):
            raise EditRejected(f"operation {i}: {str(op)[:80]} is not [pos, delete_count, insert_text] "
                               "(two integers and a string)", i)
        pos, count, text = op
        if pos < 0 or count < 0:
            raise EditRejected(f"operation {i}: pos {pos} and delete_count {count} must not be negative", i)
        if pos + count > running:
            raise EditRejected(f"operation {i}: [{pos}, {count}, ...] is out of range: the text has {running} "
                               f"characters (code points) at that point, so pos + delete_count must be at most "
                               f"{running}", i)
        n = len(text)
        running += n - count
        inserted += n
        deleted += count
        edits.append((pos, count, text))
    return edits, inserted, deleted


def apply_edits(doc: LoroDoc, edits: list[Edit]) -> None:
    """Apply checked edits in order as one commit."""
    text = doc.get_text(TEXT)
    delete, insert = text.delete, text.insert
    for pos, count, s in edits:
        if count:
            delete(pos, count)
        if s:
            insert(pos, s)
    doc.commit()


def summary(inserted: int, deleted: int) -> str:
    return f"+{inserted} -{deleted} chars"


def changed_chars(doc: LoroDoc, before: Frontiers, after: Frontiers) -> tuple[int, int]:
    """(inserted, deleted) characters of "content" between two versions of `doc`."""
    inserted = deleted = 0
    for container, diff in doc.diff(before, after).get_diff():
        if str(container) != str(doc.get_text(TEXT).id) or not hasattr(diff, "diff"):
            continue
        for item in diff.diff:
            if hasattr(item, "insert"):
                inserted += len(item.insert)
            elif hasattr(item, "delete"):
                deleted += item.delete
    return inserted, deleted


# ---- versions -------------------------------------------------------------------------------------
def updates_since(doc: LoroDoc, vv: VersionVector | None) -> bytes:
    """What a client at `vv` lacks. A shallow document cannot give a whole history as updates: a client
    that has nothing (or less than the shallow start) gets a (shallow) snapshot, which it imports the same way."""
    if doc.is_shallow() and (vv is None or not vv.includes_vv(doc.shallow_since_vv)):
        return doc.export(ExportMode.Snapshot())
    return doc.export(ExportMode.Updates(from_=vv if vv is not None else VersionVector()))


def decode_vv(raw: bytes) -> VersionVector:
    return loro_call(lambda: VersionVector.decode(raw), "the version vector cannot be decoded")


def content_at(doc: LoroDoc, frontiers: bytes) -> str:
    """The text at an old version: checked out on a fork, the live document untouched."""
    if not frontiers:
        return ""
    fork = doc.fork()
    loro_call(lambda: fork.checkout(Frontiers.decode(frontiers)), "that version is not in the retained history")
    return content(fork)


# ---- comment anchors ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    start: int | None
    end: int | None

    @property
    def orphaned(self) -> bool:
        return self.start is None


def anchor(doc: LoroDoc, start: int, end: int) -> tuple[bytes, bytes]:
    """Cursors on the first and the last character of [start, end) (start < end <= length)."""
    text = doc.get_text(TEXT)
    first, last = text.get_cursor(start, Side.Middle), text.get_cursor(end - 1, Side.Middle)
    if first is None or last is None:
        raise ValueError(f"no cursor for [{start}, {end})")
    return first.encode(), last.encode()


def resolve(doc: LoroDoc, start_cursor: bytes, end_cursor: bytes) -> Anchor:
    """Where an anchored range is now. A deleted first character resolves to where it was (the range
    starts at the first survivor); a deleted last character to the gap it left (the range ends at the
    last survivor). Text typed just before or after the range stays outside it; a range whose every
    character is gone is orphaned."""
    first = doc.get_cursor_pos(Cursor.decode(start_cursor))
    last = doc.get_cursor_pos(Cursor.decode(end_cursor))
    start = first.current.pos
    end = last.current.pos + (1 if last.update is None else 0)
    if end <= start:
        return Anchor(None, None)
    return Anchor(start, end)
