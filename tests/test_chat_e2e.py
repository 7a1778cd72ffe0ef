"""Chat end to end over real WebSockets against a live `sixfold serve`: encryption and receipts.

The oracle for "the server only ever held ciphertext" is the disk, not the code: after the
conversation every byte under SIXFOLD_HOME (var/ with the SQLite store and its WAL, the spool,
the lake, logs; and the server's own log file) is read and must not contain any plaintext that
was typed, while it must contain the ciphertexts the devices sent (so the scan can fail).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import secrets
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts import bearer

from sixfold.chat.client import ChatClient, ChatRefused, SecureChat, register_device, sign_up
from sixfold.chat.e2e import DeviceKeys, SealedBodyError, address, open_sealed, seal
from sixfold.platform.benchkit import free_port, running, wait_until

pytestmark = pytest.mark.e2e
SIXFOLD = str(Path(sys.executable).parent / "sixfold")
WAIT_S = 15.0  # a failure bound on a loaded machine, not a performance target


@pytest.fixture
def serve(home: Path, tmp_path: Path) -> Iterator[Callable[[], tuple[subprocess.Popen, str, Path]]]:
    """`sixfold serve` in its own process on a free port: (process, base URL, its log file)."""
    started: list = []

    def start() -> tuple[subprocess.Popen, str, Path]:
        port = free_port()
        log = tmp_path / f"serve-{port}.log"
        context = running([SIXFOLD, "serve", "--port", str(port)], dict(os.environ), log)
        proc = context.__enter__()
        started.append(context)
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            try:
                return httpx.get(base + "/v1/health", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, proc, "sixfold serve", log)
        return proc, base, log

    yield start
    for context in started:
        context.__exit__(None, None, None)


# ---- unit: the envelope -----------------------------------------------------------------------------
@pytest.mark.unit
def test_an_envelope_opens_only_for_its_devices() -> None:
    ann, bob, eve = DeviceKeys.generate(), DeviceKeys.generate(), DeviceKeys.generate()
    body = seal("the plan, in café terms", ann, {"2/phone": bob.public_key})
    envelope = json.loads(body)
    assert set(envelope) == {"v", "from_key", "to"} and envelope["from_key"] == ann.public_key
    assert open_sealed(body, bob, "2/phone", expected_from_key=ann.public_key) == "the plan, in café terms"
    assert "café" not in body and "plan" not in body
    with pytest.raises(SealedBodyError, match="not sealed for"):
        open_sealed(body, eve, "3/phone")
    with pytest.raises(SealedBodyError, match="does not open"):
        open_sealed(body, eve, "2/phone")  # eve took bob's address, not his key
    with pytest.raises(SealedBodyError, match="registered key"):
        open_sealed(body, bob, "2/phone", expected_from_key=eve.public_key)
    tampered = json.loads(body)
    raw = bytearray(base64.b64decode(tampered["to"]["2/phone"]))
    raw[-1] ^= 1
    tampered["to"]["2/phone"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SealedBodyError, match="does not open"):
        open_sealed(json.dumps(tampered), bob, "2/phone")
    again = DeviceKeys.from_private_key(bob.private_key)
    assert again.public_key == bob.public_key and open_sealed(body, again, "2/phone") == "the plan, in café terms"
    # two seals of one text differ (fresh nonces), so equal messages are not visible as equal
    assert seal("same", ann, {"2/phone": bob.public_key}) != seal("same", ann, {"2/phone": bob.public_key})


# ---- live: three devices, both ways, then the disk ---------------------------------------------------
async def _message(device: SecureChat) -> tuple[dict[str, Any], str]:
    """The next `message` frame this device gets and its plaintext (acknowledged as delivered)."""
    while True:
        frame = await device.chat.receive(WAIT_S)
        if frame["type"] == "message":
            if frame["from"] != device.account.user_id:
                await device.chat.ack(frame["message_id"], "delivered")
            return frame, await device.read(frame)


def test_three_devices_read_what_was_sealed_for_them_and_the_disk_holds_only_ciphertext(serve, home: Path) -> None:
    proc, base, log = serve()
    typed: list[str] = []
    bodies: list[str] = []

    def say(text: str) -> str:
        text = f"{text} [{secrets.token_hex(6)}]"  # unique, so a hit on disk is this test's
        typed.append(text)
        return text

    async def conversation() -> None:
        ann, bob = await sign_up(base, "ann"), await sign_up(base, "bob")
        ann_phone = await SecureChat.open(base, ann, "phone")
        ann_laptop = await SecureChat.open(base, ann, "laptop")
        bob_phone = await SecureChat.open(base, bob, "phone")
        devices = (ann_phone, ann_laptop, bob_phone)
        try:
            # ann's phone -> bob: sealed for bob's phone and ann's laptop, never for the phone itself
            text = say("meet at the north gate at seven")
            sent = await ann_phone.send_text(text, to=bob.user_id)
            assert sent["status"] == "sent"
            got, plain = await _message(bob_phone)
            assert plain == text and got["message_id"] == sent["message_id"] and got["from_device"] == "phone"
            assert set(json.loads(got["body"])["to"]) == {address(bob.user_id, "phone"),
                                                          address(ann.user_id, "laptop")}
            bodies.append(got["body"])
            mine, plain = await _message(ann_laptop)
            assert plain == text and mine["message_id"] == sent["message_id"]
            with pytest.raises(SealedBodyError):  # the laptop's key does not open bob's entry
                open_sealed(got["body"], ann_laptop.keys, address(bob.user_id, "phone"))

            # bob -> ann: both of ann's devices read it
            text = say("ok, bringing the blue umbrella ☂ and the documents")
            sent = await bob_phone.send_text(text, to=ann.user_id)
            for device in (ann_phone, ann_laptop):
                got, plain = await _message(device)
                assert plain == text and got["from"] == bob.user_id and got["seq"] == sent["seq"]
            bodies.append(got["body"])

            # ann's laptop -> bob, in the same conversation: the phone sees its own user's message
            text = say("also the spare key is under the third flowerpot")
            sent = await ann_laptop.send_text(text, to=bob.user_id)
            for device in (bob_phone, ann_phone):
                got, plain = await _message(device)
                assert plain == text and got["from_device"] == "laptop"
            bodies.append(got["body"])
            assert sent["seq"] == 3 and sent["conversation_id"] == got["conversation_id"]

            # history (members only) is the same envelopes: nothing readable for the server to hand out
            history = httpx.get(f"{base}/v1/chat/conversations/{sent['conversation_id']}/messages",
                                headers=bearer(bob.token), timeout=10).json()["messages"]
            assert sorted(m["body"] for m in history) == sorted(bodies)
            assert [await bob_phone.read(m) for m in sorted(history, key=lambda m: m["seq"])
                    if address(bob.user_id, "phone") in json.loads(m["body"])["to"]] == [typed[0], typed[2]]
        finally:
            for device in devices:
                await device.close()

    asyncio.run(conversation())
    proc.send_signal(signal.SIGINT)  # a clean stop: SQLite's WAL checkpointed, logs flushed
    assert proc.wait(30) == 0

    scanned = [p for p in home.rglob("*") if p.is_file()]
    assert log in scanned and any(p.suffix in (".db", ".sqlite", ".sqlite3") or "sqlite" in p.name for p in scanned), \
        [str(p.relative_to(home)) for p in scanned]
    disk = b"\n".join(p.read_bytes() for p in scanned)
    for text in typed:
        for form in {text.encode(), json.dumps(text).encode()[1:-1], text.split(" [")[0].encode()}:
            assert form not in disk, f"plaintext {form!r} found on disk"
    ciphertexts = [entry for body in bodies for entry in json.loads(body)["to"].values()]
    assert all(entry.encode() in disk for entry in ciphertexts), "the ciphertexts should be on disk: the scan is blind"


# ---- live: receipts through the client, and a device that comes back -------------------------------
def test_receipts_reach_every_sender_device_and_a_dropped_device_gets_what_it_missed(serve) -> None:
    _, base, _ = serve()

    async def conversation() -> None:
        ann, bob = await sign_up(base, "ann"), await sign_up(base, "bob")
        ann_phone = await ChatClient.connect(base, await register_device(base, ann, "phone"))
        ann_laptop = await ChatClient.connect(base, await register_device(base, ann, "laptop"))
        bob_phone = await ChatClient.connect(base, await register_device(base, bob, "phone"))
        try:
            sent = await ann_phone.send("hello bob", to=bob.user_id, client_msg_id="hello-1")
            assert sent["status"] == "sent" and sent["client_msg_id"] == "hello-1"
            # a resend of the same client_msg_id is the same message, not a second one
            assert await ann_phone.send("hello bob", to=bob.user_id, client_msg_id="hello-1") == sent

            message = await bob_phone.receive(WAIT_S)
            assert (message["type"], message["body"], message["message_id"]) == ("message", "hello bob",
                                                                                 sent["message_id"])
            await bob_phone.ack(message["message_id"], "delivered")
            await bob_phone.ack(message["message_id"], "read")

            def receipts(frames: list[dict[str, Any]]) -> list[tuple[str, int, str]]:
                return [(f["status"], f["by"], f["by_device"]) for f in frames
                        if f["type"] == "ack" and f["message_id"] == sent["message_id"]]

            for device in (ann_phone, ann_laptop):
                frames = await device.receive_until(lambda f: f["type"] == "ack" and f["status"] == "read", WAIT_S)
                assert receipts(frames) == [("delivered", bob.user_id, "phone"), ("read", bob.user_id, "phone")]
                assert all(f["client_msg_id"] == "hello-1" for f in frames if f["type"] == "ack")

            # refusals come back with their reason: a send to nobody, a receipt for one's own message
            with pytest.raises(ChatRefused, match="not_found"):
                await ann_laptop.send("anyone there?", to=10**15)
            # (the laptop's copy of its own user's message is cleared by its ack, silently; the sending
            # device has no copy, so its ack is refused)
            await ann_laptop.ack(sent["message_id"], "delivered")
            await ann_phone.send_frame({"type": "ack", "message_id": sent["message_id"], "status": "read"})
            refused = await ann_phone.receive_until(lambda f: f["type"] == "error", WAIT_S)
            assert refused[-1]["code"] == "forbidden"

            # bob's phone drops; what ann sends meanwhile reaches it when the client reconnects by itself
            connects = bob_phone.connects
            await bob_phone.drop()
            later = [await ann_phone.send(f"while you were away {i}", to=bob.user_id) for i in range(3)]
            got = await bob_phone.receive_until(lambda f: f.get("message_id") == later[-1]["message_id"], WAIT_S)
            assert bob_phone.connects > connects
            assert [f["body"] for f in got if f["type"] == "message"] == [f"while you were away {i}" for i in range(3)]
            assert [f["seq"] for f in got if f["type"] == "message"] == [s["seq"] for s in later]

            # a send made while the socket is gone is sent again on reconnection, and stored once
            await bob_phone.drop()
            answer = await bob_phone.send("typed in the tunnel", to=ann.user_id, client_msg_id="tunnel-1")
            assert answer["status"] == "sent" and answer["seq"] == later[-1]["seq"] + 1
            assert bob_phone.connects == connects + 2
            got = await ann_phone.receive_until(lambda f: f.get("message_id") == answer["message_id"], WAIT_S)
            assert [f["body"] for f in got if f["type"] == "message"] == ["typed in the tunnel"]
            history = httpx.get(f"{base}/v1/chat/conversations/{answer['conversation_id']}/messages",
                                headers=bearer(ann.token), params={"limit": 100}, timeout=10).json()["messages"]
            assert [m["client_msg_id"] for m in history].count("tunnel-1") == 1
        finally:
            for device in (ann_phone, ann_laptop, bob_phone):
                await device.close()

    asyncio.run(conversation())
