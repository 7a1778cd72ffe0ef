"""Content-addressed blob storage every system shares: immutable blobs named by the SHA-256 of their bytes.

The feed keeps photos and their renditions here, chat keeps encrypted media and documents; the
same bytes are stored once whoever uploads them. On the embedded profile the blobs are files
under `settings.blob_dir`; an s3:// URL names the (not yet built) object store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sixfold.platform.settings import Settings


class BlobStore(ABC):
    """Immutable blobs named by the SHA-256 of their bytes, plus a small rendition manifest per original."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store `data` (once: the same bytes again are a no-op) and return its SHA-256 hex."""

    def adopt(self, path: Path, sha256: str) -> str:
        """Store the file at `path`, whose SHA-256 the caller computed while writing it, and consume it
        (a large upload is spooled to disk, never held whole in memory). Once per content, as `put`."""
        try:
            if not self.exists(sha256):
                self.put(Path(path).read_bytes())
            return sha256
        finally:
            Path(path).unlink(missing_ok=True)

    @abstractmethod
    def get(self, sha256: str) -> bytes | None: ...

    @abstractmethod
    def exists(self, sha256: str) -> bool: ...

    @abstractmethod
    def delete(self, sha256: str) -> bool:
        """Remove a blob; True if it was there."""

    @abstractmethod
    def put_manifest(self, sha256: str, manifest: dict[str, Any]) -> None: ...

    @abstractmethod
    def manifest(self, sha256: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def delete_manifest(self, sha256: str) -> bool: ...


def _check_hash(sha256: str) -> str:
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError(f"not a SHA-256 hex digest: {sha256!r}")
    return sha256


def _write_atomically(path: Path, data: bytes) -> None:
    """Write beside the target and rename over it, so a reader sees no blob or the whole blob."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


BLOB_WAIT_S = 10.0  # a blob call waits at most this long for a slot of the blob store's bulkhead


def _put_at(path: Path, data: bytes) -> None:
    if not path.exists():  # content-addressed: existing bytes are these bytes
        _write_atomically(path, data)


def _move_into(source: Path, target: Path) -> None:
    if target.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
    try:
        shutil.move(source, tmp)  # a rename on the same filesystem, else a copy
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None


def _unlink(path: Path) -> bool:
    try:
        path.unlink()
        return True
    except FileNotFoundError:
        return False


class FilesystemBlobStore(BlobStore):
    """Blobs under `root/ab/cd/<sha256>`; manifests under `root/manifests/ab/cd/<sha256>.json`.

    Every file operation goes through the guard of this root (`sixfold.platform.resilience`): a disk
    that keeps failing (a full or read-only volume, a hung network mount) opens its breaker, and
    requests get 503 at once instead of each waiting on it. Which calls are retried, and why, is
    said at each.
    """

    def __init__(self, root: Path) -> None:
        from sixfold.platform.resilience import guard

        self.root = Path(root)
        # a missing file is an answer (None, False), caught inside each operation, never a failure
        self._guard = guard("blobs", "blob store", str(self.root), timeout_s=BLOB_WAIT_S, failures=(OSError,))

    def path(self, sha256: str) -> Path:
        h = _check_hash(sha256)
        return self.root / h[:2] / h[2:4] / h

    def _manifest_path(self, sha256: str) -> Path:
        h = _check_hash(sha256)
        return self.root / "manifests" / h[:2] / h[2:4] / f"{h}.json"

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        # content-addressed and renamed into place whole: writing it again writes the same file (retried)
        self._guard.call(_put_at, self.path(sha), data, idempotent=True)
        return sha

    def adopt(self, path: Path, sha256: str) -> str:
        target = self.path(sha256)
        try:  # it moves (consumes) its source: not repeatable, never retried
            self._guard.call(_move_into, Path(path), target, idempotent=False)
            return sha256
        finally:
            Path(path).unlink(missing_ok=True)

    def get(self, sha256: str) -> bytes | None:
        return self._guard.call(_read, self.path(sha256), idempotent=True)  # a read (retried)

    def exists(self, sha256: str) -> bool:
        return self._guard.call(self.path(sha256).is_file, idempotent=True)  # a read (retried)

    def delete(self, sha256: str) -> bool:
        # its answer (was it there?) would be wrong after a retry of a first attempt that did delete: not retried
        return self._guard.call(_unlink, self.path(sha256), idempotent=False)

    def put_manifest(self, sha256: str, manifest: dict[str, Any]) -> None:
        # the same JSON renamed over the same name: writing it twice is writing it once (retried)
        self._guard.call(_write_atomically, self._manifest_path(sha256),
                         json.dumps(manifest, sort_keys=True).encode(), idempotent=True)

    def manifest(self, sha256: str) -> dict[str, Any] | None:
        raw = self._guard.call(_read, self._manifest_path(sha256), idempotent=True)  # a read (retried)
        return None if raw is None else json.loads(raw)

    def delete_manifest(self, sha256: str) -> bool:
        return self._guard.call(_unlink, self._manifest_path(sha256), idempotent=False)  # as delete: not retried

    def blob_files(self) -> Iterator[Path]:
        """Every stored blob (not manifests, not half-written temp files)."""
        for path in self.root.glob("??/??/*"):
            if path.is_file() and not path.name.startswith("."):
                yield path


class S3BlobStore:
    """S3-compatible blob storage: not built yet (will implement BlobStore)."""

    def __init__(self, url: str) -> None:
        raise NotImplementedError(
            f"S3-compatible blob storage ({url}) is not implemented yet; unset SIXFOLD_BLOB_URL "
            "(settings.blob_url) to keep blobs on the filesystem under SIXFOLD_HOME/var/blobs"
        )


def open_blob_store(settings: Settings, namespace: str = "") -> BlobStore:
    """The configured blob store: the filesystem under settings.blob_dir unless an s3:// URL is set.

    A system that keeps its own references passes a `namespace` (chat: "chat"), so one system's
    release of a blob it no longer uses can never remove another system's copy of the same bytes;
    within a namespace, equal content is stored once."""
    url = str(getattr(settings, "blob_url", "") or "")
    if url.startswith(("s3://", "s3a://", "http://", "https://")):
        return S3BlobStore(f"{url.rstrip('/')}/{namespace}" if namespace else url)
    return FilesystemBlobStore(settings.blob_dir / namespace if namespace else settings.blob_dir)
