"""Media uploads (sniffing, limits, content-addressed blobs, renditions, caching) and 24-hour stories."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from accounts import Authed
from fastapi.testclient import TestClient
from PIL import Image

from schemas.records import SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.feed.media import MAX_UPLOAD_BYTES, FilesystemBlobStore, MediaLibrary, S3BlobStore
from sixfold.feed.stories import StoryService, purge_expired
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore, open_store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
USERS, FOLLOWING, POSTS = SERVING_TABLES["users"], SERVING_TABLES["following"], SERVING_TABLES["posts"]


def image_bytes(fmt: str, size: tuple[int, int] = (64, 48), mode: str = "RGB") -> bytes:
    """A real, photo-like image (gradients and grain), encoded by Pillow."""
    grain = Image.effect_noise(size, 40)
    x = Image.linear_gradient("L").resize(size)
    y = Image.linear_gradient("L").rotate(90).resize(size)
    bands = [x, y, grain] + ([Image.new("L", size, 200)] if mode == "RGBA" else [])
    img = Image.merge(mode, bands)
    if fmt == "GIF":
        img = img.convert("P")
    out = io.BytesIO()
    img.save(out, fmt)
    return out.getvalue()


def add_user(settings: Settings, user_id: int, name: str | None = None) -> str:
    """Add a user straight to the store; returns a token for them."""
    from sixfold.platform.identity import Credentials

    store = open_store(settings)
    store.upsert(USERS, {"user_id": user_id, "username": name or f"user{user_id}", "created_at": T0})
    token = Credentials(store).issue(user_id)
    store.close()
    return token


def follow(settings: Settings, follower: int, followee: int) -> None:
    store = open_store(settings)
    store.upsert(FOLLOWING, {"follower_id": follower, "followee_id": followee, "created_at": T0})
    store.close()


def blob_files(settings: Settings) -> list[Path]:
    return list(FilesystemBlobStore(settings.blob_dir).blob_files())


@pytest.fixture
def client(settings: Settings):
    """A client acting as user 1, ana."""
    token = add_user(settings, 1, "ana")
    with TestClient(create_app(settings)) as c:
        yield Authed(c, token)


def upload(client: TestClient, data: bytes, content_type: str = "image/png", user_id: int = 1):
    return client.post(f"/v1/media?user_id={user_id}", content=data, headers={"Content-Type": content_type})


# ---- media ------------------------------------------------------------------------------------
@pytest.mark.e2e
@pytest.mark.parametrize("fmt,mime", [("JPEG", "image/jpeg"), ("PNG", "image/png"), ("GIF", "image/gif"),
                                      ("WEBP", "image/webp")])
def test_upload_and_serve_every_accepted_type(client: TestClient, fmt: str, mime: str) -> None:
    data = image_bytes(fmt)
    r = upload(client, data, "application/octet-stream")  # the header is not trusted: the bytes decide
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["content_type"] == mime and (body["width"], body["height"]) == (64, 48)
    assert body["size_bytes"] == len(data)
    got = client.get(f"/v1/media/{body['media_id']}")
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == mime
    assert got.headers["etag"].strip('"') == body["sha256"]
    assert got.headers["cache-control"] == "public, max-age=31536000, immutable"
    again = client.get(f"/v1/media/{body['media_id']}", headers={"If-None-Match": got.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == got.headers["etag"]
    for size, bound in (("thumb", 150), ("feed", 1080)):
        rendition = client.get(f"/v1/media/{body['media_id']}?size={size}")
        assert rendition.status_code == 200
        img = Image.open(io.BytesIO(rendition.content))
        assert max(img.size) <= bound and rendition.headers["content-type"] in ("image/jpeg", "image/webp")


@pytest.mark.e2e
def test_renditions_are_smaller_and_bounded(client: TestClient) -> None:
    data = image_bytes("PNG", (1600, 1200))
    body = upload(client, data).json()
    sizes = {}
    for size, bound in (("thumb", 150), ("feed", 1080)):
        r = client.get(f"/v1/media/{body['media_id']}?size={size}")
        img = Image.open(io.BytesIO(r.content))
        assert max(img.size) == bound  # aspect kept, longest side at the bound
        assert abs(img.size[1] - bound * 3 / 4) <= 1
        assert len(r.content) < len(data)
        assert r.headers["etag"].strip('"') != body["sha256"]
        sizes[size] = len(r.content)
    assert sizes["thumb"] < sizes["feed"]
    # a transparent PNG keeps its alpha in a WebP rendition
    alpha = upload(client, image_bytes("PNG", (300, 200), "RGBA")).json()
    r = client.get(f"/v1/media/{alpha['media_id']}?size=thumb")
    assert r.headers["content-type"] == "image/webp"
    assert Image.open(io.BytesIO(r.content)).mode == "RGBA"


@pytest.mark.e2e
def test_same_bytes_twice_two_media_ids_one_blob(client: TestClient, settings: Settings) -> None:
    data = image_bytes("JPEG", (400, 300))
    first, second = upload(client, data, "image/jpeg").json(), upload(client, data, "image/jpeg").json()
    assert first["media_id"] != second["media_id"]
    assert first["sha256"] == second["sha256"]
    files = blob_files(settings)
    assert sum(1 for p in files if p.name == first["sha256"]) == 1
    assert len(files) == 3  # the original, thumb and feed, each once
    assert files[0].relative_to(settings.blob_dir).parts[:2] == (files[0].name[:2], files[0].name[2:4])
    assert not list(settings.blob_dir.rglob(".tmp-*"))


@pytest.mark.e2e
def test_multipart_upload_with_form_user_id(client: TestClient) -> None:
    data = image_bytes("PNG")
    r = client.post("/v1/media", data={"user_id": "1"}, files={"file": ("a.png", data, "image/png")})
    assert r.status_code == 201, r.text
    assert client.get(f"/v1/media/{r.json()['media_id']}").content == data


@pytest.mark.e2e
def test_rejections_carry_the_reason(client: TestClient) -> None:
    big = upload(client, b"\0" * (MAX_UPLOAD_BYTES + 1))
    assert big.status_code == 413
    assert big.json()["error"]["code"] == "payload_too_large"
    assert f"{MAX_UPLOAD_BYTES:,}" in big.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit is enforced on the bytes read
        for _ in range(17):
            yield b"\0" * (1024 * 1024)

    streamed = client.post("/v1/media?user_id=1", content=chunks(), headers={"Content-Type": "image/png"})
    assert streamed.status_code == 413

    text = upload(client, b"hello, not an image", "text/plain")
    assert text.status_code == 415
    assert text.json()["error"]["code"] == "unsupported_media_type"
    assert "image/jpeg" in text.json()["error"]["message"] and "image/webp" in text.json()["error"]["message"]

    jpeg = image_bytes("JPEG", (200, 200))
    broken = upload(client, jpeg[: len(jpeg) // 2], "image/jpeg")
    assert broken.status_code == 422
    assert broken.json()["error"]["code"] == "invalid_request"
    assert "cannot be decoded" in broken.json()["error"]["message"]

    assert upload(client, image_bytes("PNG"), user_id=999).status_code == 403  # not ana
    # without user_id the uploader is the token's owner
    own = client.post("/v1/media", content=image_bytes("PNG"), headers={"Content-Type": "image/png"})
    assert own.status_code == 201
    assert upload(client, image_bytes("PNG"), user_id="x").status_code == 422


@pytest.mark.e2e
def test_get_unknown_id_and_bad_size(client: TestClient) -> None:
    assert client.get("/v1/media/12345").status_code == 404
    assert client.get("/v1/media/12345").json()["error"]["code"] == "not_found"
    mid = upload(client, image_bytes("PNG")).json()["media_id"]
    bad = client.get(f"/v1/media/{mid}?size=huge")
    assert bad.status_code == 422 and "size" in bad.json()["error"]["message"]


@pytest.mark.unit
def test_s3_blob_store_is_not_implemented_and_says_which_setting() -> None:
    with pytest.raises(NotImplementedError, match="SIXFOLD_BLOB_URL"):
        S3BlobStore("s3://bucket/blobs")


# ---- stories ----------------------------------------------------------------------------------
class Clock:
    def __init__(self, at: datetime) -> None:
        self.t = at.timestamp()

    def __call__(self) -> float:
        return self.t

    def set(self, at: datetime) -> None:
        self.t = at.timestamp()


def media_for(settings: Settings, store: SQLiteStore, owner: int, data: bytes) -> int:
    library = MediaLibrary(store, FilesystemBlobStore(settings.blob_dir))
    return library.upload(owner, data)["media_id"]


@pytest.mark.unit
def test_story_visible_until_exactly_24_hours(settings: Settings) -> None:
    for uid in (1, 2, 3):
        add_user(settings, uid)
    follow(settings, 1, 2)  # 1 follows 2, not 3
    store = SQLiteStore(settings.sqlite_path)
    clock = Clock(T0)
    service = StoryService(store, clock=clock)
    mine = service.post(1, media_for(settings, store, 1, image_bytes("PNG", (10, 10))))
    clock.set(T0 + timedelta(minutes=5))
    theirs = service.post(2, media_for(settings, store, 2, image_bytes("JPEG", (20, 10))))
    service.post(3, media_for(settings, store, 3, image_bytes("GIF", (10, 20))))  # not followed: never shown
    assert mine["expires_at"] == "2026-03-02T12:00:00.000Z"

    clock.set(T0 + timedelta(hours=23, minutes=59, seconds=59))
    feed = service.feed(1)
    assert [g["author_id"] for g in feed["authors"]] == [2, 1]  # newest story first
    assert feed["authors"][0]["stories"][0]["story_id"] == theirs["story_id"]
    assert feed["next_cursor"] is None

    clock.set(T0 + timedelta(hours=24))
    assert [g["author_id"] for g in service.feed(1)["authors"]] == [2]
    clock.set(T0 + timedelta(minutes=5, hours=24))
    assert service.feed(1)["authors"] == []
    store.close()


@pytest.mark.unit
def test_story_feed_groups_by_author_and_paginates(settings: Settings) -> None:
    for uid in (1, 2, 3, 4):
        add_user(settings, uid)
        follow(settings, 1, uid) if uid != 1 else None
    store = SQLiteStore(settings.sqlite_path)
    clock = Clock(T0)
    service = StoryService(store, clock=clock)
    for minute, author in enumerate((2, 3, 2, 4, 1)):
        clock.set(T0 + timedelta(minutes=minute))
        service.post(author, media_for(settings, store, author, image_bytes("PNG", (8 + minute, 8))))
    first = service.feed(1, limit=2)
    assert [g["author_id"] for g in first["authors"]] == [1, 4]
    rest = service.feed(1, limit=2, cursor=first["next_cursor"])
    assert [g["author_id"] for g in rest["authors"]] == [2, 3]
    assert len(rest["authors"][0]["stories"]) == 2
    ids = [s["story_id"] for s in rest["authors"][0]["stories"]]
    assert ids == sorted(ids, reverse=True)
    assert rest["next_cursor"] is None
    store.close()


@pytest.mark.e2e
def test_stories_over_http(client: TestClient, settings: Settings) -> None:
    bo = Authed(client.client, add_user(settings, 2, "bo"))
    follow(settings, 2, 1)
    mid = upload(client, image_bytes("PNG")).json()["media_id"]
    r = client.post("/v1/stories", json={"user_id": 1, "media_id": mid})
    assert r.status_code == 201, r.text
    story = r.json()
    assert set(story) == {"story_id", "expires_at"}
    feed = bo.get("/v1/stories/feed/2").json()
    assert feed["authors"][0]["username"] == "ana"
    assert feed["authors"][0]["stories"][0]["story_id"] == story["story_id"]
    assert client.post("/v1/stories", json={"user_id": 2, "media_id": mid}).status_code == 403
    assert client.post("/v1/stories", json={"user_id": 1, "media_id": 42}).status_code == 404
    assert client.post("/v1/stories", json={"user_id": 1}).status_code == 422
    assert client.get("/v1/stories/feed/2").status_code == 403  # bo's story feed is bo's
    assert client.client.get("/v1/stories/feed/1").status_code == 401  # no token
    # media and story ids carry the worker id this server process leased (Snowflake layout: 10 bits
    # above the 12-bit sequence), so two server processes never hand out one id in the same millisecond
    import os

    from sixfold.platform.worker_ids import WORKERS

    leases = [r for r in open_store(settings).scan(WORKERS) if r["owner"].split(":")[1] == str(os.getpid())]
    assert len(leases) == 1
    worker = leases[0]["worker"]
    assert (mid >> 12) & 1023 == worker and (story["story_id"] >> 12) & 1023 == worker


@pytest.mark.unit
def test_purge_deletes_expired_stories_and_unreferenced_blobs_only(settings: Settings) -> None:
    add_user(settings, 1)
    store = SQLiteStore(settings.sqlite_path)
    blobs = FilesystemBlobStore(settings.blob_dir)
    clock = Clock(T0)
    service = StoryService(store, clock=clock)
    only_story = media_for(settings, store, 1, image_bytes("PNG", (300, 200)))
    shared_bytes = image_bytes("JPEG", (400, 300))
    story_copy = media_for(settings, store, 1, shared_bytes)
    post_copy = media_for(settings, store, 1, shared_bytes)  # the same bytes, a post's media
    store.upsert(POSTS, {"post_id": 1, "author_id": 1, "created_at": T0, "media_ids": [str(post_copy)]})
    in_post = media_for(settings, store, 1, image_bytes("PNG", (500, 300)))  # a story of a post's own media
    store.upsert(POSTS, {"post_id": 2, "author_id": 1, "created_at": T0, "media_ids": [str(in_post)]})
    for mid in (only_story, story_copy, in_post):
        service.post(1, mid)
    clock.set(T0 + timedelta(hours=1))
    live_media = media_for(settings, store, 1, image_bytes("PNG", (600, 300)))
    live = service.post(1, live_media)
    before = {p.name for p in blob_files(settings)}
    only_hashes = {store.get(SERVING_TABLES["media"], {"media_id": only_story})["sha256"]}
    only_hashes |= {m["sha256"] for m in blobs.manifest(next(iter(only_hashes))).values()}

    assert purge_expired(settings, T0 + timedelta(hours=23)) == {"stories": 0, "media": 0, "blobs": 0}
    counts = purge_expired(settings, T0 + timedelta(hours=24))
    assert counts == {"stories": 3, "media": 2, "blobs": 3}  # only_story's original + thumb + feed
    assert {p.name for p in blob_files(settings)} == before - only_hashes
    media = SERVING_TABLES["media"]
    assert store.get(media, {"media_id": only_story}) is None and store.get(media, {"media_id": story_copy}) is None
    for mid in (post_copy, in_post, live_media):
        assert client_bytes(settings, mid)  # still served
    assert [s["story_id"] for s in store.query(SERVING_TABLES["stories"], {"author_id": 1})] == [live["story_id"]]

    assert purge_expired(settings, T0 + timedelta(hours=24)) == {"stories": 0, "media": 0, "blobs": 0}
    assert purge_expired(settings, T0) == {"stories": 0, "media": 0, "blobs": 0}  # an older backfill: no harm
    store.close()


def client_bytes(settings: Settings, media_id: int) -> bytes:
    store = SQLiteStore(settings.sqlite_path)
    try:
        return MediaLibrary(store, FilesystemBlobStore(settings.blob_dir)).read(media_id, "feed")[0]
    finally:
        store.close()


@pytest.mark.airflow
def test_story_expiry_dag_purges_after_expiry(airflow: Settings) -> None:
    settings = airflow
    add_user(settings, 1)
    store = SQLiteStore(settings.sqlite_path)
    service = StoryService(store, clock=Clock(T0))
    mid = media_for(settings, store, 1, image_bytes("PNG", (300, 200)))
    service.post(1, mid)
    assert len(blob_files(settings)) == 3

    from airflow.models.dagbag import DagBag

    from sixfold.platform.airflow_env import DAGS_FOLDER

    bag = DagBag(dag_folder=str(DAGS_FOLDER), include_examples=False)
    assert "story_expiry.py" not in str(bag.import_errors)
    dag = bag.dags["story_expiry"]
    task = dag.get_task("purge")
    assert task.retries >= 1 and task.execution_timeout is not None and dag.catchup is False

    run = dag.test(logical_date=T0 + timedelta(hours=23, minutes=45))  # interval before expiry: kept
    assert run.state == "success"
    assert run.data_interval_end == T0 + timedelta(hours=23, minutes=45)
    assert store.query(SERVING_TABLES["stories"], {"author_id": 1})
    run = dag.test(logical_date=T0 + timedelta(hours=24))  # the interval ending at expiry: purged
    assert run.state == "success"
    assert run.data_interval_end == T0 + timedelta(hours=24)
    assert store.query(SERVING_TABLES["stories"], {"author_id": 1}) == []
    assert blob_files(settings) == []
    store.close()
