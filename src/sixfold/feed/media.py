"""Photo uploads: content-addressed blob storage, type sniffing, renditions, and media metadata.

An upload is checked at the edge (size, real type sniffed from the bytes, decodable), stored
once per distinct content (the blob's name is its SHA-256), shrunk into a `thumb` and a `feed`
rendition at upload time (also stored by hash), and described by one `media` row. The bytes of
an image never change, so every served size is cacheable forever under its hash.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from schemas.records import SERVING_TABLES
from sixfold.feed.users import FeedError
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
MAX_PIXELS = 50_000_000  # a larger "image" is a decompression bomb, not a photo
RENDITIONS: dict[str, int] = {"thumb": 150, "feed": 1080}  # name -> longest side in px
Size = Literal["original", "feed", "thumb"]

# Pillow format -> MIME type, for the types we accept (checked against the bytes, not the header)
ACCEPTED: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
ACCEPTED_LIST = ", ".join(ACCEPTED.values())

MEDIA = SERVING_TABLES["media"]
USERS = SERVING_TABLES["users"]


class MediaError(FeedError):
    """Rejected media or a missing one; `status` is the HTTP status that says why."""


# ---- blob store ---------------------------------------------------------------------------------
class BlobStore(ABC):
    """Immutable blobs named by the SHA-256 of their bytes, plus a small rendition manifest per original."""

    @abstractmethod
    def put(self, data: bytes) -> str:
        """Store `data` (once: the same bytes again are a no-op) and return its SHA-256 hex."""

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


def open_blob_store(settings: Settings) -> BlobStore:
    """The configured blob store: the filesystem under settings.blob_dir unless an s3:// URL is set."""
    url = str(getattr(settings, "blob_url", "") or "")
    if url.startswith(("s3://", "s3a://", "http://", "https://")):
        return S3BlobStore(url)
    return FilesystemBlobStore(settings.blob_dir)


# ---- images -----------------------------------------------------------------------------------
def _sniff(data: bytes) -> str | None:
    """The accepted format the bytes claim by their magic number, or None."""
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    return None


@dataclass(frozen=True)
class Decoded:
    format: str
    content_type: str
    width: int
    height: int
    image: Any  # PIL.Image.Image, fully loaded


def decode_image(data: bytes, declared_type: str | None = None) -> Decoded:
    """Sniff and fully decode an upload; 415 for a type we do not take, 422 for broken bytes."""
    from PIL import Image, UnidentifiedImageError

    fmt = _sniff(data)
    if fmt is None:
        what = f"declared {declared_type}" if declared_type else "no declared type"
        raise MediaError(415, f"unsupported media type ({what}; the bytes are not an image we accept); "
                              f"upload one of {ACCEPTED_LIST}")
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt])
        width, height = image.size
        if width * height > MAX_PIXELS:
            raise MediaError(422, f"image is {width}x{height} px; at most {MAX_PIXELS:,} pixels are accepted")
        image.load()  # decodes every byte of the first frame: a truncated file fails here
    except MediaError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise MediaError(422, f"the bytes look like {ACCEPTED[fmt]} but cannot be decoded ({exc}); "
                              "upload the complete, uncorrupted file") from None
    return Decoded(fmt, ACCEPTED[fmt], width, height, image)


def render(image: Any, longest_side: int) -> tuple[bytes, str, int, int]:
    """A compressed rendition at most `longest_side` px: JPEG, or WebP when the image has transparency."""
    from PIL import Image, ImageOps

    frame = ImageOps.exif_transpose(image)  # also takes the first frame of an animation
    has_alpha = frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info)
    frame = frame.convert("RGBA" if has_alpha else "RGB")
    frame.thumbnail((longest_side, longest_side), Image.Resampling.LANCZOS)
    out = io.BytesIO()
    if has_alpha:
        frame.save(out, "WEBP", quality=80, method=4)
        content_type = "image/webp"
    else:
        frame.save(out, "JPEG", quality=82, optimize=True, progressive=True)
        content_type = "image/jpeg"
    return out.getvalue(), content_type, frame.width, frame.height


# ---- the media library ------------------------------------------------------------------------
class MediaLibrary:
    """Uploads and reads of media: metadata rows in the serving store, bytes in the blob store."""

    def __init__(self, store: ServingStore, blobs: BlobStore, sequencer: Sequencer | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        import time

        self.store = store
        self.blobs = blobs
        self.clock = clock or time.time
        self.sequencer = sequencer or Sequencer(clock_ms=lambda: int(self.clock() * 1000))

    def upload(self, owner_id: int, data: bytes, declared_type: str | None = None) -> dict[str, Any]:
        if len(data) > MAX_UPLOAD_BYTES:
            raise MediaError(413, f"upload is {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes (16 MB)")
        if not data:
            raise MediaError(422, "the upload is empty; send the image bytes")
        if self.store.get(USERS, {"user_id": owner_id}) is None:
            raise MediaError(404, f"user {owner_id} does not exist; create it with POST /v1/users first")
        decoded = decode_image(data, declared_type)
        sha = self.blobs.put(data)
        manifest = self.blobs.manifest(sha)
        if manifest is None or any(not self.blobs.exists(m["sha256"]) for m in manifest.values()):
            manifest = {}
            for name, side in RENDITIONS.items():
                body, content_type, w, h = render(decoded.image, side)
                manifest[name] = {"sha256": self.blobs.put(body), "content_type": content_type,
                                  "width": w, "height": h, "size_bytes": len(body)}
            self.blobs.put_manifest(sha, manifest)
        row = {
            "media_id": self.sequencer.next_id(), "owner_id": owner_id, "sha256": sha,
            "content_type": decoded.content_type, "width": decoded.width, "height": decoded.height,
            "size_bytes": len(data), "created_at": datetime.fromtimestamp(self.clock(), tz=UTC),
        }
        self.store.upsert(MEDIA, row)
        return {**describe(row), "renditions": manifest}

    def get_row(self, media_id: int) -> dict[str, Any]:
        row = self.store.get(MEDIA, {"media_id": media_id})
        if row is None:
            raise MediaError(404, f"media {media_id} does not exist")
        return row

    def variant(self, media_id: int, size: Size) -> tuple[str, str]:
        """(sha256, content_type) of one size of a media item."""
        row = self.get_row(media_id)
        if size == "original":
            return row["sha256"], row["content_type"]
        manifest = self.blobs.manifest(row["sha256"]) or {}
        if size not in manifest:
            raise MediaError(404, f"media {media_id} has no {size!r} rendition; use size=original")
        return manifest[size]["sha256"], manifest[size]["content_type"]

    def read(self, media_id: int, size: Size) -> tuple[bytes, str, str]:
        """(bytes, content_type, sha256) of one size of a media item."""
        sha, content_type = self.variant(media_id, size)
        data = self.blobs.get(sha)
        if data is None:
            raise MediaError(404, f"the bytes of media {media_id} ({size}) are gone")
        return data, content_type, sha


def describe(row: dict[str, Any]) -> dict[str, Any]:
    return {"media_id": row["media_id"], "owner_id": row["owner_id"], "sha256": row["sha256"],
            "content_type": row["content_type"], "width": row["width"], "height": row["height"],
            "size_bytes": row["size_bytes"], "created_at": row["created_at"].isoformat().replace("+00:00", "Z")}


def etag_matches(if_none_match: str | None, sha256: str) -> bool:
    """RFC 9110 weak comparison of If-None-Match against the blob's ETag."""
    if not if_none_match:
        return False
    for tag in if_none_match.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        tag = tag.removeprefix("W/")
        if tag.strip('"') == sha256:
            return True
    return False
