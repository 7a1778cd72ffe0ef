"""Chat over real WebSockets: order, offline delivery, receipts, refusals, and no acknowledged message
lost when the gateway is SIGKILLed. The oracle is what the test sent and which acks it received."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sixfold.api.app import create_app
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.e2e
SIXFOLD = str(Path(sys.executable).parent / "sixfold")


@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def device(client, token: str, user: int, name: str) -> str:
    answer = Authed(client, token).post("/v1/chat/devices", json={"user_id": user, "device_id": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def people(client, *names: str) -> dict[str, tuple[int, str]]:
    return {n: signup(client, n) for n in names}


def send(ws, to: int, body: str, cid: str) -> None:
    ws.send_text(json.dumps({"type": "send", "client_msg_id": cid, "to": to, "body": body}))


def test_a_message_and_its_receipts_reach_every_device_and_a_resend_is_no_duplicate(client) -> None:
    p = people(client, "ann", "bob")
    (ann, ann_t), (bob, bob_t) = p["ann"], p["bob"]
    phone, laptop, bobs = device(client, ann_t, ann, "phone"), device(client, ann_t, ann, "laptop"), \
        device(client, bob_t, bob, "tab")
    with client.websocket_connect(f"/v1/chat/ws?token={phone}") as a, \
            client.websocket_connect(f"/v1/chat/ws?token={bobs}") as b:
        send(a, bob, "hello", "m1")
        sent = a.receive_json()
        assert sent["status"] == "sent" and sent["client_msg_id"] == "m1" and sent["seq"] == 1
        got = b.receive_json()
        assert (got["type"], got["body"], got["from"], got["from_device"]) == ("message", "hello", ann, "phone")
        b.send_text(json.dumps({"type": "ack", "message_id": got["message_id"], "status": "delivered"}))
        receipt = a.receive_json()
        assert (receipt["status"], receipt["by"], receipt["client_msg_id"]) == ("delivered", bob, "m1")
        send(a, bob, "hello", "m1")  # a resend after a lost ack
        again = a.receive_json()
        assert again == sent
        b.send_text(json.dumps({"type": "ack", "message_id": got["message_id"], "status": "read"}))
        assert a.receive_json()["status"] == "read"
    # the laptop was offline throughout: it gets the message (from its own user's other device) and both receipts
    with client.websocket_connect(f"/v1/chat/ws?token={laptop}") as lap:
        frames = [lap.receive_json() for _ in range(3)]
        lap.send_text(json.dumps({"type": "ack", "message_id": frames[0]["message_id"], "status": "delivered"}))
        lap.send_text(json.dumps({"type": "ping"}))
        assert lap.receive_json() == {"type": "pong"}  # its own user's message: acknowledged without a receipt
    assert [f["type"] for f in frames] == ["message", "ack", "ack"]
    assert frames[0]["body"] == "hello" and [f["status"] for f in frames[1:]] == ["delivered", "read"]
    with client.websocket_connect(f"/v1/chat/ws?token={laptop}") as lap:
        lap.send_text(json.dumps({"type": "ping"}))
        assert lap.receive_json() == {"type": "pong"}  # nothing is replayed again
    history = Authed(client, bob_t).get(f"/v1/chat/conversations/{sent['conversation_id']}/messages").json()
    assert [m["body"] for m in history["messages"]] == ["hello"]  # one message, not two


def test_offline_messages_arrive_in_order_exactly_once_across_reconnects(client) -> None:
    p = people(client, "ann", "bob")
    (ann, ann_t), (bob, bob_t) = p["ann"], p["bob"]
    a_tok, b_tok = device(client, ann_t, ann, "a"), device(client, bob_t, bob, "b")
    sent = [f"message {i}" for i in range(20)]
    with client.websocket_connect(f"/v1/chat/ws?token={a_tok}") as a:
        for i, body in enumerate(sent):
            send(a, bob, body, f"c{i}")
            assert a.receive_json()["status"] == "sent"
    received = []
    with client.websocket_connect(f"/v1/chat/ws?token={b_tok}") as b:
        for _ in range(20):
            frame = b.receive_json()
            received.append(frame)
            if len(received) <= 8:  # acknowledge the first eight only, then drop off
                b.send_text(json.dumps({"type": "ack", "message_id": frame["message_id"], "status": "delivered"}))
        b.send_text(json.dumps({"type": "ping"}))
        assert b.receive_json() == {"type": "pong"}  # the acks were handled before we leave
    assert [f["body"] for f in received] == sent and [f["seq"] for f in received] == list(range(1, 21))
    with client.websocket_connect(f"/v1/chat/ws?token={b_tok}") as b:
        again = [b.receive_json() for _ in range(12)]
        for frame in again:
            b.send_text(json.dumps({"type": "ack", "message_id": frame["message_id"], "status": "delivered"}))
        b.send_text(json.dumps({"type": "ping"}))
        assert b.receive_json() == {"type": "pong"}  # and nothing else was pending
    assert [f["body"] for f in again] == sent[8:]
    with client.websocket_connect(f"/v1/chat/ws?token={b_tok}") as b:
        b.send_text(json.dumps({"type": "ping"}))
        assert b.receive_json() == {"type": "pong"}  # everything acknowledged: nothing comes again


def test_concurrent_senders_keep_one_order_per_conversation(client) -> None:
    p = people(client, "ann", "bob")
    (ann, ann_t), (bob, bob_t) = p["ann"], p["bob"]
    tokens = [device(client, ann_t, ann, f"d{i}") for i in range(3)] + [device(client, bob_t, bob, "b0")]
    watcher = device(client, bob_t, bob, "watch")
    acks: dict[str, int] = {}
    lock = threading.Lock()

    def talk(token: str, me: str, to: int) -> None:
        with client.websocket_connect(f"/v1/chat/ws?token={token}") as ws:
            for i in range(15):
                send(ws, to, f"{me}-{i}", f"{me}-{i}")
                while True:
                    frame = ws.receive_json()
                    if frame["type"] == "ack" and frame.get("status") == "sent":
                        with lock:
                            acks[f"{me}-{i}"] = frame["seq"]
                        break

    with client.websocket_connect(f"/v1/chat/ws?token={watcher}") as w:
        threads = [threading.Thread(target=talk, args=(t, f"s{n}", bob if n < 3 else ann))
                   for n, t in enumerate(tokens)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        seen = []
        while len(seen) < 60:
            frame = w.receive_json()
            if frame["type"] == "message":
                seen.append(frame)
    assert sorted(f["seq"] for f in seen) == list(range(1, 61))  # one conversation, no gaps
    assert [f["seq"] for f in seen] == list(range(1, 61))  # the watcher got them in seq order
    assert {f["body"]: f["seq"] for f in seen} == acks  # the order the sent acks announced
    for n in range(4):  # each sender's own messages kept their order
        mine = [f["body"] for f in seen if f["body"].startswith(f"s{n}-")]
        assert mine == [f"s{n}-{i}" for i in range(15)]


def test_receipts_and_sends_that_are_not_yours_are_refused(client) -> None:
    p = people(client, "ann", "bob", "eve")
    (ann, ann_t), (bob, bob_t), (eve, eve_t) = p["ann"], p["bob"], p["eve"]
    a, b, e = device(client, ann_t, ann, "a"), device(client, bob_t, bob, "b"), device(client, eve_t, eve, "e")
    with client.websocket_connect(f"/v1/chat/ws?token={a}") as wa, client.websocket_connect(f"/v1/chat/ws?token={e}") as we:
        send(wa, bob, "for bob only", "x1")
        message_id = wa.receive_json()["message_id"]
        we.send_text(json.dumps({"type": "ack", "message_id": message_id, "status": "read"}))
        forged = we.receive_json()
        assert forged["type"] == "error" and forged["status"] == 403 and "not a member" in forged["message"]
        wa.send_text(json.dumps({"type": "ack", "message_id": message_id, "status": "delivered"}))
        assert wa.receive_json()["status"] == 403  # the sender cannot tick its own message
        for bad, status in [("{nope", 400), (json.dumps({"type": "ack", "message_id": message_id, "status": "seen"}), 422),
                            (json.dumps({"type": "send", "client_msg_id": "big", "to": bob, "body": "x" * 70_000}), 413),
                            (json.dumps({"type": "send", "client_msg_id": "n", "to": 123, "body": "?"}), 404),
                            (json.dumps({"type": "dance"}), 400)]:
            wa.send_text(bad)
            answer = wa.receive_json()
            assert answer["type"] == "error" and answer["status"] == status, (bad, answer)
        send(wa, bob, "still works", "x2")
        assert wa.receive_json()["status"] == "sent"
    with client.websocket_connect(f"/v1/chat/ws?token={b}") as wb:
        assert [wb.receive_json()["body"] for _ in range(2)] == ["for bob only", "still works"]
    conversation = f"d:{min(ann, bob)}:{max(ann, bob)}"
    assert Authed(client, eve_t).get(f"/v1/chat/conversations/{conversation}/messages").status_code == 403
    with pytest.raises(WebSocketDisconnect) as refused:
        with client.websocket_connect("/v1/chat/ws?token=sfd_nope") as ws:
            ws.receive_json()
    assert refused.value.code == 4401
    with pytest.raises(WebSocketDisconnect):  # a user token is not a device token
        with client.websocket_connect(f"/v1/chat/ws?token={ann_t}") as ws:
            ws.receive_json()


# ---- a real server, SIGKILLed mid-stream ------------------------------------------------------------
def test_a_gateway_killed_mid_stream_loses_no_acknowledged_message(home: Path, tmp_path: Path) -> None:
    import httpx
    from websockets.sync.client import connect

    from sixfold.platform.benchkit import free_port, wait_until

    port = free_port()
    env = {**os.environ, "SIXFOLD_HOME": str(home)}

    def start() -> subprocess.Popen:
        log = open(tmp_path / "serve.log", "ab")
        proc = subprocess.Popen([SIXFOLD, "serve", "--port", str(port)], env=env, stdout=log, stderr=log,
                                start_new_session=True)

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/v1/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, proc, "sixfold serve", tmp_path / "serve.log")
        return proc

    proc = start()
    try:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
        (ann, ann_t), (bob, bob_t) = signup(http, "ann"), signup(http, "bob")
        a_tok, b_tok = device(http, ann_t, ann, "a"), device(http, bob_t, bob, "b")
        acked: list[str] = []
        sender = connect(f"ws://127.0.0.1:{port}/v1/chat/ws?token={a_tok}")
        killed = False
        try:
            for i in range(400):
                sender.send(json.dumps({"type": "send", "client_msg_id": f"k{i}", "to": bob, "body": f"m{i}"}))
                if i == 150:
                    os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: sends in flight, acks unread
                    killed = True
                frame = json.loads(sender.recv(timeout=5))
                if frame.get("status") == "sent":
                    acked.append(f"m{i}")
        except Exception:  # noqa: BLE001 - the connection dies with the server
            assert killed
        finally:
            sender.close()
        proc.wait(10)
        assert killed and len(acked) >= 100
        proc = start()
        got = []
        with connect(f"ws://127.0.0.1:{port}/v1/chat/ws?token={b_tok}") as receiver:
            while True:
                try:
                    frame = json.loads(receiver.recv(timeout=3))
                except TimeoutError:
                    break
                got.append(frame["body"])
        assert set(acked) <= set(got)  # every acknowledged message survived
        assert len(got) == len(set(got))  # none twice
        order = [int(b[1:]) for b in got]
        assert order == sorted(order)  # and in the order they were sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)


def test_two_gateways_route_to_each_other_through_the_event_log(home: Path, tmp_path: Path) -> None:
    """Ann on one `sixfold serve`, Bob on another: the registry says where Bob is, and the message and
    its receipts cross through the chat-deliveries topic, in order."""
    import httpx
    from websockets.sync.client import connect

    from sixfold.platform.benchkit import free_port, running, wait_until

    servers = []
    with running([SIXFOLD, "serve", "--port", str(p1 := free_port())], {**os.environ}, tmp_path / "one.log") as one, \
            running([SIXFOLD, "serve", "--port", str(p2 := free_port()), "--no-consumers"], {**os.environ},
                    tmp_path / "two.log") as two:
        for proc, port, log in ((one, p1, "one.log"), (two, p2, "two.log")):
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

            def healthy(client=client) -> bool:
                try:
                    return client.get("/v1/health").status_code == 200
                except httpx.TransportError:
                    return False

            wait_until(healthy, proc, "sixfold serve", tmp_path / log)
            servers.append(client)
        (ann, ann_t), (bob, bob_t) = signup(servers[0], "ann"), signup(servers[0], "bob")
        a_tok, b_tok = device(servers[0], ann_t, ann, "a"), device(servers[1], bob_t, bob, "b")
        with connect(f"ws://127.0.0.1:{p1}/v1/chat/ws?token={a_tok}") as a, \
                connect(f"ws://127.0.0.1:{p2}/v1/chat/ws?token={b_tok}") as b:
            bodies = [f"across {i}" for i in range(10)]
            for i, body in enumerate(bodies):
                a.send(json.dumps({"type": "send", "client_msg_id": f"x{i}", "to": bob, "body": body}))
                assert json.loads(a.recv(timeout=10))["status"] == "sent"
            got = [json.loads(b.recv(timeout=10)) for _ in bodies]
            assert [g["body"] for g in got] == bodies and [g["seq"] for g in got] == list(range(1, 11))
            b.send(json.dumps({"type": "ack", "message_id": got[-1]["message_id"], "status": "read"}))
            receipt = json.loads(a.recv(timeout=10))
            assert (receipt["status"], receipt["by"], receipt["client_msg_id"]) == ("read", bob, "x9")


def test_a_group_message_reaches_every_member_through_the_live_fanout_consumer(home: Path, tmp_path: Path) -> None:
    """`sixfold serve` runs the group fanout consumer itself: a message to a group of three (one member with
    two devices) reaches every other member device once, and each member's receipt reaches the sender."""
    import httpx
    from websockets.sync.client import connect

    from sixfold.platform.benchkit import free_port, running, wait_until

    port = free_port()
    with running([SIXFOLD, "serve", "--port", str(port)], {**os.environ}, tmp_path / "serve.log") as proc:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

        def healthy() -> bool:
            try:
                return http.get("/v1/health").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(healthy, proc, "sixfold serve", tmp_path / "serve.log")
        (ann, ann_t), (bob, bob_t), (cat, cat_t) = (signup(http, n) for n in ("ann", "bob", "cat"))
        group = Authed(http, ann_t).post("/v1/chat/groups", json={"name": "trip", "members": [bob, cat]})
        assert group.status_code == 201, group.text
        group_id = group.json()["group_id"]
        tokens = {("ann", "a"): device(http, ann_t, ann, "a"), ("bob", "b"): device(http, bob_t, bob, "b"),
                  ("cat", "c1"): device(http, cat_t, cat, "c1"), ("cat", "c2"): device(http, cat_t, cat, "c2")}
        sockets = {k: connect(f"ws://127.0.0.1:{port}/v1/chat/ws?token={t}") for k, t in tokens.items()}
        try:
            a = sockets[("ann", "a")]
            a.send(json.dumps({"type": "send", "client_msg_id": "g1", "group_id": group_id, "body": "tickets booked"}))
            sent = json.loads(a.recv(timeout=10))
            assert sent["status"] == "sent"
            for key in (("bob", "b"), ("cat", "c1"), ("cat", "c2")):
                got = json.loads(sockets[key].recv(timeout=PATIENCE_S))
                assert (got["body"], got["group_id"], got["message_id"]) == ("tickets booked", group_id,
                                                                            sent["message_id"])
                sockets[key].send(json.dumps({"type": "ack", "message_id": got["message_id"], "status": "delivered"}))
            receipts = sorted((r["by"], r["by_device"]) for r in (json.loads(a.recv(timeout=PATIENCE_S))
                                                                  for _ in range(3)))
            assert receipts == sorted([(bob, "b"), (cat, "c1"), (cat, "c2")])
        finally:
            for ws in sockets.values():
                ws.close()


PATIENCE_S = 30.0  # a failure bound on a loaded machine, not a performance target
