"""Chat media through the asset service: stored once by content hash in the shared blob store, limits by
kind checked from Content-Length before reading and again while the body streams, bytes back by hash.
The oracle is hashlib over what was sent and the blob files on disk."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient

from sixfold.api.app import create_app
from sixfold.chat.media import LIMITS, ChatMedia
from sixfold.platform.blobs import FilesystemBlobStore
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def blob_files(settings: Settings) -> list[Path]:
    return list(FilesystemBlobStore(settings.blob_dir / "chat").blob_files())  # chat keeps its own namespace


def spooled(settings: Settings) -> list[Path]:
    root = settings.var / "tmp" / "chat-uploads"
    return list(root.iterdir()) if root.exists() else []


def test_an_upload_is_stored_once_and_read_back_by_its_hash(client: TestClient, settings: Settings) -> None:
    (_, ann_t), (_, bob_t) = signup(client, "ann"), signup(client, "bob")
    as_ann, as_bob = Authed(client, ann_t), Authed(client, bob_t)
    ciphertext = os.urandom(300_000)  # what a client sends: bytes it encrypted itself
    sha = hashlib.sha256(ciphertext).hexdigest()
    first = as_ann.post("/v1/chat/media", content=ciphertext, headers={"content-type": "application/octet-stream"})
    assert first.status_code == 201, first.text
    assert first.json() == {"media_id": sha, "size_bytes": len(ciphertext), "kind": "media"}
    again = as_bob.post("/v1/chat/media", params={"kind": "document"}, content=ciphertext)
    assert again.status_code == 201 and again.json() == {"media_id": sha, "size_bytes": len(ciphertext),
                                                         "kind": "document"}
    assert [p.name for p in blob_files(settings)] == [sha]  # one blob for both uploads
    assert spooled(settings) == []  # nothing left half-way
    got = as_bob.get(f"/v1/chat/media/{sha}")
    assert got.status_code == 200 and got.content == ciphertext
    assert got.headers["etag"] == f'"{sha}"'
    assert client.get(f"/v1/chat/media/{sha}").status_code == 401
    assert client.post("/v1/chat/media", content=b"x").status_code == 401
    assert as_ann.get(f"/v1/chat/media/{'0' * 64}").status_code == 404
    assert as_ann.get("/v1/chat/media/not-a-hash").status_code == 422
    assert as_ann.post("/v1/chat/media", content=b"").status_code == 422
    assert as_ann.post("/v1/chat/media", params={"kind": "video"}, content=b"x").status_code == 422


def test_limits_by_kind_from_content_length_and_while_streaming(client: TestClient, settings: Settings) -> None:
    _, token = signup(client, "ann")
    as_ann = Authed(client, token)
    # declared too large: refused before the body is read
    for kind, limit in LIMITS.items():
        refused = as_ann.post("/v1/chat/media", params={"kind": kind}, content=b"x",
                              headers={"content-length": str(limit + 1)})
        assert refused.status_code == 413, refused.text
        assert f"{limit:,} bytes" in refused.json()["error"]["message"]
    # no Content-Length (chunked): counted while streaming, refused past the limit
    def chunks(total: int, size: int = 1024 * 1024):
        sent = 0
        while sent < total:
            yield b"\0" * min(size, total - sent)
            sent += size

    over = as_ann.post("/v1/chat/media", content=chunks(LIMITS["media"] + 1))
    assert over.status_code == 413 and "16 MB" in over.json()["error"]["message"]
    assert blob_files(settings) == [] and spooled(settings) == []
    exactly = as_ann.post("/v1/chat/media", content=chunks(LIMITS["media"]))
    assert exactly.status_code == 201 and exactly.json()["size_bytes"] == LIMITS["media"]
    document = as_ann.post("/v1/chat/media", params={"kind": "document"}, content=chunks(LIMITS["media"] + 1))
    assert document.status_code == 201 and document.json()["size_bytes"] == LIMITS["media"] + 1
    assert as_ann.post("/v1/chat/media", params={"kind": "document"}, content=b"x",
                       headers={"content-length": "lots"}).status_code == 400
    assert len(blob_files(settings)) == 2 and spooled(settings) == []


@pytest.mark.unit
def test_the_same_bytes_are_one_blob_whoever_stores_them(settings: Settings, tmp_path: Path) -> None:
    """The blob store is shared: a blob the feed stored is the blob a chat upload of the same bytes names."""
    blobs = FilesystemBlobStore(settings.blob_dir)
    data = b"the same bytes"
    sha = blobs.put(data)
    media = ChatMedia(blobs, tmp_path / "spool")
    assert media.put("media", data) == {"media_id": sha, "size_bytes": len(data), "kind": "media"}
    assert media.read(sha) == blobs.path(sha) and blobs.get(sha) == data
    assert [p.name for p in blobs.blob_files()] == [sha]
    assert list((tmp_path / "spool").iterdir()) == []
