"""Hostile uploads against a real server process: memory stays bounded, bombs and broken bodies get a 4xx.

The server runs as its own process (uvicorn on the `sixfold serve` app factory), so its memory is
measured alone: `VmHWM` in /proc/<pid>/status is the peak resident set the process ever reached.
"""

from __future__ import annotations

import io
import os
import struct
import sys
import threading
import urllib.request
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image

from sixfold.platform.benchkit import free_port, running, wait_until
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[1]
MIB = 1024 * 1024
LIMIT = Settings.media_max_pixels


# ---- images -----------------------------------------------------------------------------------
def photo_like(size: tuple[int, int]) -> Image.Image:
    """Two gradients and a band of noise: compresses like a photo, not like a blank canvas."""
    x = Image.linear_gradient("L").resize(size)
    y = Image.linear_gradient("L").rotate(90).resize(size)
    z = Image.new("L", size, 90)
    z.paste(Image.effect_noise((size[0], max(1, size[1] // 25)), 40), (0, size[1] // 2))
    return Image.merge("RGB", [x, y, z])


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit PNG of `width` x `height` black pixels: a few KB on the wire, 4 bytes a pixel decoded."""
    rows = zlib.compressobj(9)
    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    idat = b"".join(rows.compress(row) for _ in range(height)) + rows.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def tagged(png: bytes, tag: int) -> bytes:
    """The same pixels in different bytes (a tEXt chunk after IHDR): identical bytes would reuse the
    first upload's renditions and never decode again."""
    return png[:33] + png_chunk(b"tEXt", b"copy\0" + str(tag).encode()) + png[33:]


@pytest.fixture(scope="module")
def big_png() -> bytes:
    """7000 x 7000 = 49 M pixels (under the limit): a few MB, 196 MB once decoded."""
    data = encode(photo_like((7000, 7000)), "PNG")
    assert len(data) < 16 * MIB
    return data


# ---- the server -------------------------------------------------------------------------------
@dataclass
class Server:
    base: str
    pid: int
    headers: dict[str, str]  # the uploader's bearer token, when the API issues one
    user_id: int

    def hwm_mib(self) -> float:
        """The process's peak resident set so far (VmHWM), in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError(f"no VmHWM in /proc/{self.pid}/status")

    def upload(self, data: bytes, content_type: str = "image/png",
               client: httpx.Client | None = None) -> httpx.Response:
        post = client.post if client is not None else httpx.post
        return post(f"{self.base}/v1/media?user_id={self.user_id}", content=data,
                    headers={**self.headers, "Content-Type": content_type}, timeout=120)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    """A fresh server process per test (its memory figures are its own), with one user who uploads."""
    port = free_port()
    env = {**os.environ, "SIXFOLD_HOME": str(tmp_path), "SIXFOLD_MEDIA_MAX_PIXELS": str(LIMIT),
           "SIXFOLD_MEDIA_DECODE_CONCURRENCY": "2"}
    cmd = [sys.executable, "-m", "uvicorn", "sixfold.api.app:create_asgi", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with running(cmd, env, log) as proc:
        # urllib: wait_until retries on its OSError while the port is not listening yet
        wait_until(lambda: urllib.request.urlopen(f"{base}/v1/health", timeout=2).status == 200,
                   proc, "uvicorn", log)
        made = httpx.post(f"{base}/v1/users", json={"username": "ana"}, timeout=10)
        assert made.status_code == 201, made.text
        user = made.json()
        headers = {"Authorization": f"Bearer {user['token']}"} if "token" in user else {}
        srv = Server(base, proc.pid, headers, user["user_id"])
        warm = srv.upload(encode(photo_like((64, 48)), "PNG"))  # imports and first-use allocations
        assert warm.status_code == 201, warm.text
        yield srv


def assert_error(r: httpx.Response, status: int | None = None) -> dict:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    error = r.json()["error"]
    assert isinstance(error["code"], str) and isinstance(error["message"], str) and error["message"]
    return error


# ---- memory -----------------------------------------------------------------------------------
def test_six_concurrent_7000px_pngs_stay_under_a_gib(server: Server, big_png: bytes) -> None:
    idle = server.hwm_mib()
    start = threading.Barrier(6)
    answers: list[httpx.Response | BaseException] = [RuntimeError("no answer")] * 6

    def send(i: int) -> None:
        with httpx.Client() as client:
            body = tagged(big_png, i)
            start.wait()
            try:
                answers[i] = server.upload(body, client=client)
            except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
                answers[i] = exc

    threads = [threading.Thread(target=send, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = server.hwm_mib()
    print(f"\nsix concurrent 7000x7000 PNG uploads ({len(big_png):,} bytes each): "
          f"VmHWM idle {idle:.0f} MiB, after {after:.0f} MiB, difference {after - idle:.0f} MiB")
    for r in answers:
        assert isinstance(r, httpx.Response), r
        assert r.status_code == 201, r.text
        body = r.json()
        assert (body["width"], body["height"]) == (7000, 7000)
        assert (body["renditions"]["feed"]["width"], body["renditions"]["thumb"]["width"]) == (1080, 150)
    assert len({r.json()["sha256"] for r in answers if isinstance(r, httpx.Response)}) == 6
    assert after - idle < 1024, f"VmHWM rose {after - idle:.0f} MiB (idle {idle:.0f}, after {after:.0f})"


@pytest.mark.parametrize("width,height", [(10_000, 10_000), (30_000, 30_000)])
def test_pixel_bomb_is_refused_from_its_header(server: Server, width: int, height: int) -> None:
    # 10000 x 10000 is refused by our check (it names W x H); 30000 x 30000 first trips Pillow's own
    # check (past twice MAX_IMAGE_PIXELS), which must also come back as a 413, not a 500
    bomb = png_bomb(width, height)
    assert len(bomb) < 200 * 1024
    idle = server.hwm_mib()
    r = server.upload(bomb)
    after = server.hwm_mib()
    print(f"\n{width}x{height} PNG bomb ({len(bomb):,} bytes): VmHWM idle {idle:.0f} MiB, "
          f"after {after:.0f} MiB, difference {after - idle:.0f} MiB")
    error = assert_error(r, 413)
    assert error["code"] == "payload_too_large"
    pixels = width * height
    assert f"{pixels:,} pixels" in error["message"] and f"{LIMIT:,} pixels" in error["message"]
    assert "resize" in error["message"]
    if pixels <= 2 * LIMIT:
        assert f"{width} x {height}" in error["message"]
    assert after - idle < 200, f"VmHWM rose {after - idle:.0f} MiB on a refused bomb"
    assert server.upload(encode(photo_like((40, 30)), "PNG")).status_code == 201  # still serving


def test_big_jpeg_is_accepted_and_shrunk(server: Server) -> None:
    data = encode(photo_like((6000, 4000)), "JPEG", quality=85)
    idle = server.hwm_mib()
    r = server.upload(data, "image/jpeg")
    after = server.hwm_mib()
    print(f"\n6000x4000 JPEG ({len(data):,} bytes): VmHWM idle {idle:.0f} MiB, after {after:.0f} MiB")
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["width"], body["height"], body["content_type"]) == (6000, 4000, "image/jpeg")
    for size, expected in (("feed", (1080, 720)), ("thumb", (150, 100))):
        got = httpx.get(f"{server.base}/v1/media/{body['media_id']}?size={size}", headers=server.headers)
        assert got.status_code == 200
        assert Image.open(io.BytesIO(got.content)).size == expected
    # decoded at 1/4 scale (1500 x 1000, 6 MB); the full 6000 x 4000 bitmap would be 92 MiB
    assert after - idle < 80, f"VmHWM rose {after - idle:.0f} MiB for one JPEG"


# ---- malformed bodies -------------------------------------------------------------------------
def multipart(boundary: str, parts: str) -> tuple[bytes, str]:
    return parts.replace("\n", "\r\n").encode(), f"multipart/form-data; boundary={boundary}"


MALFORMED: dict[str, tuple[bytes, str]] = {
    "empty body": (b"", "image/png"),
    "text declared as image/png": (b"hello, I am not a picture\n" * 10, "image/png"),
    "multipart without a file": multipart("xyz", '--xyz\nContent-Disposition: form-data; name="note"\n\nhi\n--xyz--\n'),
    "multipart with a garbage boundary": multipart("xyz", "--\x00\xff garbage \n\n\n--abc--"),
    "multipart without a boundary": (b"--xyz\r\n\r\n", "multipart/form-data"),
}


@pytest.mark.parametrize("case", [*MALFORMED, "truncated PNG"])
def test_malformed_upload_bodies_get_a_4xx(server: Server, case: str) -> None:
    if case == "truncated PNG":
        data, content_type = encode(photo_like((300, 200)), "PNG")[:100], "image/png"
    else:
        data, content_type = MALFORMED[case]
    error = assert_error(server.upload(data, content_type))
    assert error["code"] != "internal"
