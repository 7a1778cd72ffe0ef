"""Chat groups: membership over HTTP, and group messages over real WebSockets (in-process), fanned out by
the `chat-group-fanout` consumer's own work, run explicitly. The oracle is who is a member and which
devices each has: every member device but the sender's gets each message once, in order, and every
member's receipts reach the sender."""

from __future__ import annotations

import json
from contextlib import ExitStack
from datetime import UTC, datetime
from typing import Any

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient

from schemas.records import SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.chat.groups import FANOUT_GROUP, GROUP_MESSAGES, Groups, fan_out, fanout_work
from sixfold.chat.service import ChatError, ChatService
from sixfold.platform.bus import SpoolBus, dead_letter_topic
from sixfold.platform.ids import Sequencer
from sixfold.platform.settings import Settings
from sixfold.platform.store import open_store

pytestmark = pytest.mark.e2e


@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def device(client: TestClient, token: str, user: int, name: str) -> str:
    answer = Authed(client, token).post("/v1/chat/devices", json={"user_id": user, "device_id": name})
    assert answer.status_code == 201, answer.text
    return answer.json()["token"]


def fanout_pass(settings: Settings) -> dict[str, int]:
    """One pass of the consumer exactly as `sixfold serve` and streams/chat_group_fanout.py run it."""
    with ExitStack() as resources:
        return fanout_work(settings, FANOUT_GROUP, 0.05, resources)()


def notifications(settings: Settings, group: str) -> list[dict[str, Any]]:
    consumer = SpoolBus(settings.spool_dir).consumer("notifications", group)
    try:
        return [m.json() for m in consumer.poll(max_records=10_000, timeout_s=0.05)]
    finally:
        consumer.close()


def send(ws: Any, group_id: int, body: str, cid: str) -> None:
    ws.send_text(json.dumps({"type": "send", "client_msg_id": cid, "group_id": group_id, "body": body}))


def test_membership_over_http(client: TestClient) -> None:
    (ann, ann_t), (bob, bob_t), (cat, cat_t), (dan, dan_t) = (signup(client, n) for n in ("ann", "bob", "cat", "dan"))
    as_ann, as_bob, as_cat, as_dan = (Authed(client, t) for t in (ann_t, bob_t, cat_t, dan_t))
    made = as_ann.post("/v1/chat/groups", json={"name": "climbing", "members": [bob, ann]})
    assert made.status_code == 201, made.text
    gid = made.json()["group_id"]
    assert made.json()["conversation_id"] == f"g:{gid}"
    assert as_bob.get(f"/v1/chat/groups/{gid}").json() == {
        "group_id": gid, "conversation_id": f"g:{gid}", "name": "climbing", "owner_id": ann, "members": sorted([ann, bob])}
    refused = as_dan.get(f"/v1/chat/groups/{gid}")
    assert refused.status_code == 403 and f"user {dan} is not a member" in refused.json()["error"]["message"]
    assert client.get(f"/v1/chat/groups/{gid}").status_code == 401
    assert as_ann.get("/v1/chat/groups/12345").status_code == 404
    # adding: the owner only, once, real users only
    assert as_bob.post(f"/v1/chat/groups/{gid}/members", json={"user_id": cat}).status_code == 403
    added = as_ann.post(f"/v1/chat/groups/{gid}/members", json={"user_id": cat})
    assert added.status_code == 201 and added.json()["members"] == sorted([ann, bob, cat])
    again = as_ann.post(f"/v1/chat/groups/{gid}/members", json={"user_id": cat})
    assert again.status_code == 409 and "already a member" in again.json()["error"]["message"]
    assert as_ann.post(f"/v1/chat/groups/{gid}/members", json={"user_id": 999_999}).status_code == 404
    assert as_ann.post("/v1/chat/groups/4242/members", json={"user_id": cat}).status_code == 404
    assert as_ann.post("/v1/chat/groups", json={"name": "x", "members": [999_999]}).status_code == 404
    assert as_ann.post("/v1/chat/groups", json={"name": "", "members": []}).status_code == 422
    # removing: the owner removes anyone, a member only themself, the owner cannot leave
    assert as_bob.delete(f"/v1/chat/groups/{gid}/members/{cat}").status_code == 403
    assert as_cat.delete(f"/v1/chat/groups/{gid}/members/{cat}").status_code == 204
    assert as_cat.get(f"/v1/chat/groups/{gid}").status_code == 403
    assert as_ann.delete(f"/v1/chat/groups/{gid}/members/{bob}").status_code == 204
    assert as_ann.delete(f"/v1/chat/groups/{gid}/members/{bob}").status_code == 404
    assert as_ann.delete(f"/v1/chat/groups/{gid}/members/{ann}").status_code == 409
    assert as_ann.get(f"/v1/chat/groups/{gid}").json()["members"] == [ann]


def test_a_group_holds_at_most_max_members(settings: Settings) -> None:
    store = open_store(settings)
    try:
        users = list(range(1, 300))
        store.upsert_many(SERVING_TABLES["users"], [{"user_id": u, "username": f"u{u}",
                                                     "created_at": datetime.now(UTC)} for u in users])
        groups = Groups(store, Sequencer(1))
        assert groups.max_members == 256
        with pytest.raises(ChatError) as past:
            groups.create(1, "too many", users[1:257])  # 256 others + the owner
        assert past.value.status == 422 and "at most 256" in str(past.value)
        gid = groups.create(1, "full", users[1:254])["group_id"]  # 253 others + the owner
        assert len(groups.add_member(gid, 1, 256)["members"]) == 255
        assert len(groups.add_member(gid, 1, 257)["members"]) == 256
        with pytest.raises(ChatError) as full:
            groups.add_member(gid, 1, 258)
        assert full.value.status == 422 and "256 members" in str(full.value)
        assert len(groups.get(gid, 1)["members"]) == 256
    finally:
        store.close()


def test_a_group_message_reaches_every_member_device_once_and_every_receipt_the_sender(
        client: TestClient, settings: Settings) -> None:
    (ann, ann_t), (bob, bob_t), (cat, cat_t), (dan, dan_t) = (signup(client, n) for n in ("ann", "bob", "cat", "dan"))
    tokens = {("ann", "phone"): device(client, ann_t, ann, "phone"), ("ann", "laptop"): device(client, ann_t, ann, "laptop"),
              ("bob", "tab"): device(client, bob_t, bob, "tab"), ("bob", "pc"): device(client, bob_t, bob, "pc"),
              ("cat", "phone"): device(client, cat_t, cat, "phone"), ("dan", "phone"): device(client, dan_t, dan, "phone")}
    gid = Authed(client, ann_t).post("/v1/chat/groups", json={"name": "trip", "members": [bob, cat]}).json()["group_id"]
    online = [("ann", "phone"), ("bob", "tab"), ("bob", "pc"), ("cat", "phone"), ("dan", "phone")]  # ann's laptop is off
    with ExitStack() as stack:
        ws = {k: stack.enter_context(client.websocket_connect(f"/v1/chat/ws?token={tokens[k]}")) for k in online}
        bodies = ["first", "second", "third"]
        acks = []
        for i, body in enumerate(bodies):
            send(ws["ann", "phone"], gid, body, f"g{i}")
            acks.append(ws["ann", "phone"].receive_json())
        assert [(a["type"], a["status"], a["seq"]) for a in acks] == [("ack", "sent", s) for s in (1, 2, 3)]
        # nothing reaches a member before the fanout consumer runs: the gateway only published the messages
        counts = fanout_pass(settings)
        assert counts["received"] == 3 and counts["messages"] == 3 and counts["rejected"] == 0
        assert counts["deliveries"] == 3 * 4  # bob x2, cat, ann's laptop: never the sending phone, never dan
        for member in [("bob", "tab"), ("bob", "pc"), ("cat", "phone")]:
            got = [ws[member].receive_json() for _ in bodies]
            assert [(m["type"], m["body"], m["seq"], m["from"], m["from_device"], m["group_id"]) for m in got] == [
                ("message", b, i + 1, ann, "phone", gid) for i, b in enumerate(bodies)], member
        # receipts per member, to the sender
        first = acks[0]["message_id"]
        for (name, dev), status in [(("bob", "tab"), "delivered"), (("bob", "pc"), "read"), (("cat", "phone"), "read")]:
            ws[name, dev].send_text(json.dumps({"type": "ack", "message_id": first, "status": status}))
        receipts = [ws["ann", "phone"].receive_json() for _ in range(3)]
        assert sorted((r["by"], r["by_device"], r["status"], r["client_msg_id"]) for r in receipts) == sorted([
            (bob, "tab", "delivered", "g0"), (bob, "pc", "read", "g0"), (cat, "phone", "read", "g0")])
        # a non-member: an error frame, and no history
        send(ws["dan", "phone"], gid, "let me in", "d0")
        error = ws["dan", "phone"].receive_json()
        assert (error["type"], error["code"], error["status"], error["client_msg_id"]) == ("error", "forbidden", 403, "d0")
        assert Authed(client, dan_t).get(f"/v1/chat/conversations/g:{gid}/messages").status_code == 403
        # exactly once: the next frame on every device is the pong, not a second copy (nor, for dan and the
        # sender, any group message at all)
        for key in online:
            ws[key].send_text('{"type": "ping"}')
            assert ws[key].receive_json() == {"type": "pong"}, key
        history = Authed(client, cat_t).get(f"/v1/chat/conversations/g:{gid}/messages", params={"limit": 10}).json()
        assert sorted(m["body"] for m in history["messages"]) == sorted(bodies)
    # the sender's offline device: a notification per message now, the messages in order when it connects
    notes = [n for n in notifications(settings, "test-notes") if n["conversation_id"] == f"g:{gid}"]
    assert sorted((n["user_id"], n["device_id"], n["message_id"]) for n in notes) == sorted(
        (ann, "laptop", a["message_id"]) for a in acks)
    with client.websocket_connect(f"/v1/chat/ws?token={tokens['ann', 'laptop']}") as laptop:
        frames = [laptop.receive_json() for _ in range(len(bodies) + 3)]  # and the 3 receipts, as every sender device
    assert [f["body"] for f in frames if f["type"] == "message"] == bodies
    assert sorted((f["by"], f["status"]) for f in frames if f["type"] == "ack") == sorted(
        [(bob, "delivered"), (bob, "read"), (cat, "read")])


def test_a_removed_member_gets_no_more_and_a_replayed_batch_no_duplicate(client: TestClient, settings: Settings) -> None:
    (ann, ann_t), (bob, bob_t), (cat, cat_t) = (signup(client, n) for n in ("ann", "bob", "cat"))
    a_tok, b_tok, c_tok = device(client, ann_t, ann, "a"), device(client, bob_t, bob, "b"), device(client, cat_t, cat, "c")
    gid = Authed(client, ann_t).post("/v1/chat/groups", json={"name": "g", "members": [bob, cat]}).json()["group_id"]
    with client.websocket_connect(f"/v1/chat/ws?token={a_tok}") as a:
        send(a, gid, "before", "m1")
        assert a.receive_json()["status"] == "sent"
        assert fanout_pass(settings)["messages"] == 1
        assert Authed(client, ann_t).delete(f"/v1/chat/groups/{gid}/members/{cat}").status_code == 204
        send(a, gid, "after", "m2")
        assert a.receive_json()["status"] == "sent"
        assert fanout_pass(settings)["messages"] == 1
    # the consumer replays the whole topic under a new group: the same pending entries, nothing twice
    store, bus = open_store(settings), SpoolBus(settings.spool_dir)
    try:
        replay = fan_out(ChatService(store, Sequencer(0)), bus, group="replay", idle_timeout_s=0.05)
        assert replay.messages == 2
    finally:
        store.close()
    with client.websocket_connect(f"/v1/chat/ws?token={b_tok}") as b:
        assert [b.receive_json()["body"] for _ in range(2)] == ["before", "after"]
        b.send_text('{"type": "ping"}')
        assert b.receive_json() == {"type": "pong"}
    with client.websocket_connect(f"/v1/chat/ws?token={c_tok}") as c:
        assert c.receive_json()["body"] == "before"  # removed after the first message was fanned out
        c.send_text('{"type": "ping"}')
        assert c.receive_json() == {"type": "pong"}


@pytest.mark.unit
def test_a_bad_group_event_goes_to_the_dead_letter_topic(settings: Settings) -> None:
    bus = SpoolBus(settings.spool_dir)
    bus.produce_raw(GROUP_MESSAGES.topic, b"not json", key="x")
    bus.produce(GROUP_MESSAGES.topic, {"group_id": 1}, key="g:1")
    store = open_store(settings)
    try:
        report = fan_out(ChatService(store, Sequencer(0)), bus, idle_timeout_s=0.05)
    finally:
        store.close()
    assert (report.received, report.messages, report.rejected) == (2, 0, 2)
    consumer = bus.consumer(dead_letter_topic(GROUP_MESSAGES.topic), "check")
    assert len(consumer.poll(timeout_s=0.05)) == 2
    consumer.close()


@pytest.mark.unit
def test_serve_runs_the_group_fanout() -> None:
    from sixfold.live import all_consumers

    assert "chat-group-fanout" in {c.name for c in all_consumers()}


def test_while_the_bus_fails_the_gateway_accepts_fans_out_itself_and_queues_the_rest(client: TestClient,
                                                                                      settings: Settings) -> None:
    """Issue 14, item 2: chat accepts and queues when the bus is down. The fault is injected under the app's real
    spool bus (every append fails, as a full disk or a Kafka that is away would): sends are acked, a group message
    reaches its connected members at once (the gateway does the fanout consumer's work), and the push
    notifications for the offline device go out once the bus takes writes again, each once."""
    import time

    from sixfold.platform.app_state import app_bus

    (ann, ann_t), (bob, bob_t), (cat, cat_t) = (signup(client, n) for n in ("ann", "bob", "cat"))
    tokens = {"ann": device(client, ann_t, ann, "phone"), "bob": device(client, bob_t, bob, "tab"),
              "cat": device(client, cat_t, cat, "phone")}  # cat's phone stays offline
    gid = Authed(client, ann_t).post("/v1/chat/groups", json={"name": "trip", "members": [bob, cat]}).json()["group_id"]
    bus = app_bus(client.app)
    append, down = bus._append, [True]

    def failing_append(*args, **kwargs):
        if down[0]:
            raise OSError(28, "No space left on device (injected)")
        return append(*args, **kwargs)

    bus._append = failing_append
    with client.websocket_connect(f"/v1/chat/ws?token={tokens['ann']}") as ann_ws, \
            client.websocket_connect(f"/v1/chat/ws?token={tokens['bob']}") as bob_ws:
        send(ann_ws, gid, "to the group", "g0")
        ack = ann_ws.receive_json()
        assert (ack["type"], ack["status"]) == ("ack", "sent")
        got = bob_ws.receive_json()  # no consumer ran, and none could: the bus took nothing
        assert (got["type"], got["body"], got["group_id"], got["message_id"]) == (
            "message", "to the group", gid, ack["message_id"])
        ann_ws.send_text(json.dumps({"type": "send", "client_msg_id": "d0", "to": cat, "body": "just you"}))
        direct = ann_ws.receive_json()
        assert (direct["type"], direct["status"]) == ("ack", "sent")
        assert notifications(settings, "test-outbox") == []  # queued, not lost: the bus is still down

        down[0] = False
        deadline = time.monotonic() + 10
        notes: list[dict[str, Any]] = []
        while time.monotonic() < deadline and len(notes) < 2:
            time.sleep(0.2)
            notes += notifications(settings, "test-outbox")
    assert sorted((n["user_id"], n["device_id"], n["message_id"]) for n in notes) == sorted(
        [(cat, "phone", ack["message_id"]), (cat, "phone", direct["message_id"])])
    # the fanout consumer has nothing to add: the group message never reached the bus, and was fanned out
    assert fanout_pass(settings)["received"] == 0
    with client.websocket_connect(f"/v1/chat/ws?token={tokens['cat']}") as cat_ws:
        frames = [cat_ws.receive_json() for _ in range(2)]
        cat_ws.send_text('{"type": "ping"}')
        assert cat_ws.receive_json() == {"type": "pong"}  # each once, nothing more
    assert sorted(f["body"] for f in frames) == ["just you", "to the group"]  # FIFO is per conversation only
