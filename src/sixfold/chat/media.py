"""Chat's asset service: media and documents stored once by content hash in the shared blob store.

Clients encrypt an attachment themselves and upload the ciphertext; a message then carries its
`media_id` (the SHA-256 of those bytes) and the key, encrypted for each device like any body. The
server never sees plaintext, so the only thing it can check is size: at most 16 MB for media and
100 MB for documents, refused from `Content-Length` before a byte is read and again while the
body streams (a client may send none, or lie). An upload is spooled to disk while it is hashed,
never held whole in memory, then moved into the blob store, where the same bytes are one blob
whoever sent them.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import Any, Literal

from sixfold.chat.service import ChatError
from sixfold.platform.blobs import BlobStore, FilesystemBlobStore

Kind = Literal["media", "document"]
LIMITS: dict[str, int] = {"media": 16 * 1024 * 1024, "document": 100 * 1024 * 1024}
LIMIT_TEXT = {"media": "16 MB", "document": "100 MB"}


def limit_of(kind: str) -> int:
    if kind not in LIMITS:
        raise ChatError(422, f"kind {kind!r}: use media (at most 16 MB) or document (at most 100 MB)")
    return LIMITS[kind]


def too_large(kind: str, size: int | None = None) -> ChatError:
    what = f"{size:,} bytes" if size is not None else "the body"
    return ChatError(413, f"{what} is too large for kind={kind}: the limit is {LIMITS[kind]:,} bytes "
                          f"({LIMIT_TEXT[kind]}){'; send larger files as kind=document' if kind == 'media' else ''}",
                     "too_large")


def check_declared(kind: str, content_length: str | None) -> None:
    """Refuse an upload by its `Content-Length` before reading it (413 past the kind's limit)."""
    limit = limit_of(kind)
    if content_length is None:
        return
    try:
        declared = int(content_length)
    except ValueError:
        raise ChatError(400, f"Content-Length {content_length!r} is not a number") from None
    if declared > limit:
        raise too_large(kind, declared)


class Upload:
    """An upload being received: spooled to a file beside the blobs and hashed as it comes, within a limit."""

    def __init__(self, kind: str, spool_dir: Path) -> None:
        self.kind, self.limit = kind, limit_of(kind)
        spool_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".upload-", dir=spool_dir)
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > self.limit:
            raise too_large(self.kind)
        self.hash.update(chunk)
        self.file.write(chunk)

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class ChatMedia:
    def __init__(self, blobs: BlobStore, spool_dir: Path) -> None:
        self.blobs, self.spool_dir = blobs, spool_dir

    def begin(self, kind: str) -> Upload:
        return Upload(kind, self.spool_dir)

    def keep(self, upload: Upload) -> dict[str, Any]:
        """Store a complete upload (once per content) and describe it; the spooled file is consumed."""
        try:
            upload.file.flush()
            os.fsync(upload.file.fileno())
            upload.file.close()
            if upload.size == 0:
                raise ChatError(422, "the upload is empty; send the encrypted file as the request body")
            sha = self.blobs.adopt(upload.path, upload.hash.hexdigest())
        finally:
            upload.discard()
        return {"media_id": sha, "size_bytes": upload.size, "kind": upload.kind}

    def put(self, kind: str, data: bytes) -> dict[str, Any]:
        """An upload already in memory (small ones, tests)."""
        upload = self.begin(kind)
        try:
            upload.write(data)
        except ChatError:
            upload.discard()
            raise
        return self.keep(upload)

    def read(self, media_id: str) -> Path | bytes:
        """The stored bytes: a file to stream when the blobs are files (up to 100 MB), else the bytes."""
        if len(media_id) != 64 or any(c not in "0123456789abcdef" for c in media_id):
            raise ChatError(422, f"media_id {media_id!r}: a media id is the 64 lower-case hex digits of its SHA-256")
        if isinstance(self.blobs, FilesystemBlobStore):
            path = self.blobs.path(media_id)
            if path.is_file():
                return path
            raise ChatError(404, f"no media {media_id}", "not_found")
        data = self.blobs.get(media_id)
        if data is None:
            raise ChatError(404, f"no media {media_id}", "not_found")
        return data
