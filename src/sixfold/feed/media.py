"""Photo uploads: content-addressed blob storage, type sniffing, renditions, and media metadata.

An upload is checked at the edge (size, real type sniffed from the bytes, decodable), stored
once per distinct content (the blob's name is its SHA-256), shrunk into a `thumb` and a `feed`
rendition at upload time (also stored by hash), and described by one `media` row. The bytes of
an image never change, so every served size is cacheable forever under its hash.
"""

from __future__ import annotations

import hashlib
import io
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from schemas.records import SERVING_TABLES
from sixfold.feed.users import FeedError

# the blob store moved to the platform (chat shares it); its names stay importable from here
from sixfold.platform.blobs import BlobStore, FilesystemBlobStore, S3BlobStore, open_blob_store  # noqa: F401
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import ServingStore

MAX_UPLOAD_BYTES = 16 * 1024 * 1024
RENDITIONS: dict[str, int] = {"thumb": 150, "feed": 1080}  # name -> longest side in px
Size = Literal["original", "feed", "thumb"]

# Pillow format -> MIME type, for the types we accept (checked against the bytes, not the header)
ACCEPTED: dict[str, str] = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
ACCEPTED_LIST = ", ".join(ACCEPTED.values())

MEDIA = SERVING_TABLES["media"]
USERS = SERVING_TABLES["users"]


class MediaError(FeedError):
    """Rejected media or a missing one; `status` is the HTTP status that says why."""


# ---- images -----------------------------------------------------------------------------------
# Memory, not CPU, is what a hostile upload attacks: a 200 KB PNG can claim 7000 x 7000 pixels, and a
# decoded bitmap costs 4 bytes a pixel whatever the file's size. So the header is checked before any
# pixel is decoded, a JPEG is decoded at the smallest scale that still covers the feed size, every
# other format is decoded once and shrunk tile by tile (no full-size copy), and a semaphore bounds
# how many uploads hold a decoded bitmap at once.
REDUCING_GAP = 2  # shrink by whole factors to >= 2x the feed size, then resample: Pillow's thumbnail default
TILE_PX = 1024  # source pixels per tile side when shrinking: a tile's copies stay a few MB
DECODE_WAIT_S = 30.0  # an upload waits this long for a free decoder before it is told to retry


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
class Probe:
    """What an upload's header says, read without decoding a pixel."""

    format: str
    content_type: str
    width: int
    height: int


@dataclass(frozen=True)
class Rendition:
    body: bytes
    content_type: str
    width: int
    height: int


def _undecodable(fmt: str, exc: BaseException) -> MediaError:
    return MediaError(422, f"the bytes look like {ACCEPTED[fmt]} but cannot be decoded ({exc}); "
                           "upload the complete, uncorrupted file")


def _too_many_pixels(what: str, max_pixels: int) -> MediaError:
    return MediaError(413, f"the image is {what}; the limit is {max_pixels:,} pixels: resize it before "
                           f"uploading (the feed shows at most {RENDITIONS['feed']} px on the long side)")


def probe(data: bytes, declared_type: str | None, max_pixels: int) -> Probe:
    """Type and size from the magic number and the header alone: 415 for a type we do not take, 413 past
    `max_pixels`, 422 for a header that does not parse. Nothing is decoded, so a bomb costs nothing here."""
    from PIL import Image, UnidentifiedImageError

    fmt = _sniff(data)
    if fmt is None:
        what = f"declared {declared_type}" if declared_type else "no declared type"
        raise MediaError(415, f"unsupported media type ({what}; the bytes are not an image we accept); "
                              f"upload one of {ACCEPTED_LIST}")
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:  # lazy: parses the header only
            width, height = image.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow refuses at open past twice MAX_IMAGE_PIXELS (our limit), before we see the size; its
        # message carries the pixel count
        claimed = re.search(r"\((\d+) pixels\)", str(exc))
        what = f"{int(claimed[1]):,} pixels" if claimed else f"too large to decode ({exc})"
        raise _too_many_pixels(what, max_pixels) from None
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        raise _undecodable(fmt, exc) from None
    if width * height > max_pixels:
        raise _too_many_pixels(f"{width} x {height} = {width * height:,} pixels", max_pixels)
    return Probe(fmt, ACCEPTED[fmt], width, height)


def _fit(size: tuple[int, int], longest_side: int) -> tuple[int, int]:
    """`size` scaled down (never up) to at most `longest_side` on its long side, aspect kept."""
    scale = min(1.0, longest_side / max(size))
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def _shrink(image: Any, factor: int, mode: str) -> Any:
    """`image` in `mode`, box-averaged `factor` times smaller, one tile at a time: converting the mode
    or premultiplying alpha (Pillow's `reduce` does, for RGBA) on the whole bitmap would copy all of it."""
    from PIL import Image

    if factor == 1:
        return image.convert(mode)
    width, height = image.size
    shrunk = Image.new(mode, (-(-width // factor), -(-height // factor)))
    step = factor * max(1, TILE_PX // factor)  # a multiple of factor: each tile lands on whole pixels
    for top in range(0, height, step):
        for left in range(0, width, step):
            tile = image.crop((left, top, min(left + step, width), min(top + step, height)))
            shrunk.paste(tile.convert(mode).reduce(factor), (left // factor, top // factor))
    return shrunk


def _encode(frame: Any) -> Rendition:
    """JPEG, or WebP when the frame has transparency."""
    out = io.BytesIO()
    if frame.mode == "RGBA":
        frame.save(out, "WEBP", quality=80, method=4)
        content_type = "image/webp"
    else:
        frame.save(out, "JPEG", quality=82, optimize=True, progressive=True)
        content_type = "image/jpeg"
    return Rendition(out.getvalue(), content_type, frame.width, frame.height)


def make_renditions(data: bytes, fmt: str) -> dict[str, Rendition]:
    """Every rendition of the first frame, decoded once: a JPEG at the smallest scale covering the largest
    rendition, anything else at full size and shrunk at once; each rendition is made from the one above
    it, largest first. 422 when the bytes do not decode. Holds at most one full-size bitmap."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    largest = max(RENDITIONS.values())
    try:
        with Image.open(io.BytesIO(data), formats=[fmt]) as image:
            if fmt == "JPEG":  # libjpeg decodes at 1/2, 1/4 or 1/8 scale for free
                image.draft(None, _fit(image.size, largest))
            image.load()  # decodes every byte of the first frame: a truncated file fails here
            factor = max(1, max(image.size) // (largest * REDUCING_GAP))
            has_alpha = image.mode in ("RGBA", "RGBa", "LA", "La", "PA") or "transparency" in image.info
            frame = _shrink(image, factor, "RGBA" if has_alpha else "RGB")
            frame.info.update(image.info)  # the EXIF orientation, applied below on the small frame
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError) as exc:
        raise _undecodable(fmt, exc) from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:  # an oversized GIF frame
        raise MediaError(413, f"a frame of the image is too large to decode ({exc}); "
                              "resize it before uploading") from None
    ImageOps.exif_transpose(frame, in_place=True)
    made: dict[str, Rendition] = {}
    for name, side in sorted(RENDITIONS.items(), key=lambda item: -item[1]):
        frame.thumbnail((side, side), Image.Resampling.LANCZOS)  # in place: the next one starts from this
        made[name] = _encode(frame)
    frame.close()
    return {name: made[name] for name in RENDITIONS}


# ---- the media library ------------------------------------------------------------------------
_PROCESS_SEQUENCER = Sequencer()  # for libraries given no sequencer and no clock: apps pass their leased one


class MediaLibrary:
    """Uploads and reads of media: metadata rows in the serving store, bytes in the blob store.

    At most `decode_concurrency` uploads of this library decode at once (each holds one bitmap of at
    most `max_pixels`), so memory stays bounded however many arrive together."""

    def __init__(self, store: ServingStore, blobs: BlobStore, sequencer: Sequencer | None = None,
                 clock: Callable[[], float] | None = None, *,
                 max_pixels: int = Settings.media_max_pixels,
                 decode_concurrency: int = Settings.media_decode_concurrency) -> None:
        import time

        from PIL import Image

        self.store = store
        self.blobs = blobs
        self.clock = clock or time.time
        if sequencer is None and clock is None:  # libraries built without one share the process's
            sequencer = _PROCESS_SEQUENCER  # (two own sequencers hand out the same id in one millisecond)
        self.sequencer = sequencer or Sequencer(clock_ms=lambda: int(self.clock() * 1000))
        self.max_pixels = max_pixels
        self.decode_concurrency = decode_concurrency
        self.decoders = threading.BoundedSemaphore(decode_concurrency)
        # the decoding itself runs on these few threads, not on whichever request thread got a slot: glibc
        # gives each thread its own malloc arena and keeps memory freed there, so bitmaps decoded on many
        # threads leave a bitmap's worth in each (six concurrent 7000 x 7000 PNGs: a peak of 840 MiB
        # above idle when decoded on the request threads, 460 MiB on two decoder threads)
        self.decode_threads = ThreadPoolExecutor(decode_concurrency, thread_name_prefix="sixfold-media-decode")
        # Pillow's own bomb check (a warning past this, an error past twice this) is process-wide; keep it
        # in step with ours, which answers first with the image's size
        Image.MAX_IMAGE_PIXELS = max_pixels

    def upload(self, owner_id: int, data: bytes, declared_type: str | None = None) -> dict[str, Any]:
        if len(data) > MAX_UPLOAD_BYTES:
            raise MediaError(413, f"upload is {len(data):,} bytes; the limit is {MAX_UPLOAD_BYTES:,} bytes (16 MB)")
        if not data:
            raise MediaError(422, "the upload is empty; send the image bytes")
        if self.store.get(USERS, {"user_id": owner_id}) is None:
            raise MediaError(404, f"user {owner_id} does not exist; create it with POST /v1/users first")
        probed = probe(data, declared_type, self.max_pixels)
        sha = hashlib.sha256(data).hexdigest()
        manifest = self.blobs.manifest(sha)
        if manifest is None or any(not self.blobs.exists(m["sha256"]) for m in manifest.values()):
            made = self._decode(data, probed.format)
            self.blobs.put(data)
            manifest = {name: {"sha256": self.blobs.put(r.body), "content_type": r.content_type,
                               "width": r.width, "height": r.height, "size_bytes": len(r.body)}
                        for name, r in made.items()}
            self.blobs.put_manifest(sha, manifest)
        else:  # these very bytes decoded before: their renditions stand
            self.blobs.put(data)
        row = {
            "media_id": self.sequencer.next_id(), "owner_id": owner_id, "sha256": sha,
            "content_type": probed.content_type, "width": probed.width, "height": probed.height,
            "size_bytes": len(data), "created_at": datetime.fromtimestamp(self.clock(), tz=UTC),
        }
        self.store.upsert(MEDIA, row)
        return {**describe(row), "renditions": manifest}

    def _decode(self, data: bytes, fmt: str) -> dict[str, Rendition]:
        """make_renditions on a decoder thread once a slot is free; 503 when none frees up in time."""
        if not self.decoders.acquire(timeout=DECODE_WAIT_S):
            raise MediaError(503, f"all {self.decode_concurrency} image decoders stayed busy for "
                                  f"{DECODE_WAIT_S:.0f} s; retry the upload in a few seconds")
        try:  # a slot per decoder thread: the job never queues behind another
            return self.decode_threads.submit(make_renditions, data, fmt).result()
        finally:
            self.decoders.release()

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


# ---- releasing a deleted post's media -------------------------------------------------------------
def blob_hashes(blobs: BlobStore, sha256: str) -> set[str]:
    """The original's hash and its renditions' hashes: every blob one media row holds on to."""
    manifest = blobs.manifest(sha256) or {}
    return {sha256} | {m["sha256"] for m in manifest.values()}


def release_post_media(store: ServingStore, blobs: BlobStore, deleted: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Delete the media rows of deleted posts (POST_DELETION rows) that nothing uses any more, then the
    blobs no remaining media row holds; returns {"media", "blobs"} deleted.

    A media id stays while a post or a story of its owner refers to it (a story awaiting the purge
    too; the purge releases it later). Only the owner's posts and stories are looked at: a post or a
    story may only carry its own author's uploads (PostService and StoryService refuse others'), so
    no one else's can hold the id, and the check reads two partitions instead of every post. A blob
    stays while any other media row (the same bytes uploaded again, by anyone) holds it, which takes
    one read of every media row, as the story purge does; it runs only for a batch that frees media.
    Blobs go before media rows, so a run cut short is finished by the replay. Like the purge, a post
    made with the media id while this runs may lose its image.
    """
    posts_table, author_posts, stories = (SERVING_TABLES[n] for n in ("posts", "author_posts", "stories"))
    candidates: dict[int, set[int]] = {}  # owner -> media ids their deleted posts carried
    for post in deleted:
        ids = {int(m) for m in post.get("media_ids") or () if str(m).isdigit()}
        candidates.setdefault(post["author_id"], set()).update(ids)
    doomed: list[dict[str, Any]] = []
    for owner, ids in sorted(candidates.items()):
        if not ids:
            continue
        post_ids = [r["post_id"] for r in store.query(author_posts, {"author_id": owner}, columns=("post_id",))]
        in_use = {int(m) for row in store.get_many(posts_table, [{"post_id": p} for p in post_ids]) if row
                  for m in row.get("media_ids") or () if str(m).isdigit()}
        in_use |= {r["media_id"] for r in store.query(stories, {"author_id": owner}, columns=("media_id",))}
        for media_id in sorted(ids - in_use):
            row = store.get(MEDIA, {"media_id": media_id})
            if row is not None and row["owner_id"] == owner:
                doomed.append(row)
    if not doomed:
        return {"media": 0, "blobs": 0}
    return {"media": len(doomed), "blobs": delete_media(store, blobs, doomed, store.scan(MEDIA))}


def delete_media(store: ServingStore, blobs: BlobStore, doomed: list[dict[str, Any]],
                 media_rows: Iterable[Mapping[str, Any]]) -> int:
    """Delete the `doomed` media rows and every blob of theirs (original, renditions, manifest) that no
    other row of `media_rows` holds; returns how many blobs were deleted."""
    gone = {m["media_id"] for m in doomed}
    kept: set[str] = set()
    for m in media_rows:
        if m["media_id"] not in gone:
            kept |= blob_hashes(blobs, m["sha256"])
    blob_count = 0
    for m in doomed:
        if m["sha256"] in kept:
            continue
        for sha in sorted(blob_hashes(blobs, m["sha256"]) - kept):
            blob_count += blobs.delete(sha)
        blobs.delete_manifest(m["sha256"])
    for m in doomed:
        store.delete(MEDIA, {"media_id": m["media_id"]})
    return blob_count


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
