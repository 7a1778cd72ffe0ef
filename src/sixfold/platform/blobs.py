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


class FilesystemBlobStore(BlobStore):
    """Blobs under `root/ab/cd/<sha256>`; manifests under `root/manifests/ab/cd/<sha256>.json`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, sha256: str) -> Path:
        h = _check_hash(sha256)
        return self.root / h[:2] / h[2:4] / h

    def _manifest_path(self, sha256: str) -> Path:
        h = _check_hash(sha256)
        return self.root / "manifests" / h[:2] / h[2:4] / f"{h}.json"

    def put(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        path = self.path(sha)
        if not path.exists():  # content-addressed: existing bytes are these bytes
            _write_atomically(path, data)
        return sha

    def adopt(self, path: Path, sha256: str) -> str:
        target = self.path(sha256)
        try:
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.parent / f".tmp-{uuid.uuid4().hex}"
                try:
                    shutil.move(path, tmp)  # a rename on the same filesystem, else a copy
                    with open(tmp, "rb") as f:
                        os.fsync(f.fileno())
                    os.replace(tmp, target)
                finally:
                    tmp.unlink(missing_ok=True)
            return sha256
        finally:
            Path(path).unlink(missing_ok=True)

    def get(self, sha256: str) -> bytes | None:
        try:
            return self.path(sha256).read_bytes()
        except FileNotFoundError:
            return None

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def delete(self, sha256: str) -> bool:
        try:
            self.path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

    def put_manifest(self, sha256: str, manifest: dict[str, Any]) -> None:
        _write_atomically(self._manifest_path(sha256), json.dumps(manifest, sort_keys=True).encode())

    def manifest(self, sha256: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._manifest_path(sha256).read_bytes())
        except FileNotFoundError:
            return None

    def delete_manifest(self, sha256: str) -> bool:
        try:
            self._manifest_path(sha256).unlink()
            return True
        except FileNotFoundError:
            return False

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
