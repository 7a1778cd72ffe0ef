"""The real `sixfold serve`, SIGKILLed while a writer edits: every acknowledged update is there after a restart."""

from __future__ import annotations

import os
import signal
import threading

import httpx
import pytest
from accounts import Authed, signup
from loro import ExportMode, LoroDoc

pytestmark = pytest.mark.e2e


def test_a_server_killed_mid_edit_loses_no_acknowledged_update(serve) -> None:
    proc, client = serve()
    (_ann, token), (bob, bob_token) = signup(client, "ann"), signup(client, "bob")
    me = Authed(client, token)
    doc = me.post("/v1/docs", json={}).json()["doc_id"]
    me.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"})
    # a WebSocket writer's updates are durable too: one binary frame, acked
    import websockets.sync.client as ws_client

    port = client.base_url.port
    with ws_client.connect(f"ws://127.0.0.1:{port}/v1/docs/{doc}/ws?token={bob_token}") as ws:
        ws.send('{"type":"hello","vv":null}')
        replica = LoroDoc()
        replica.import_(ws.recv())
        sent = replica.oplog_vv
        replica.get_text("content").insert(0, "ws|")
        replica.commit()
        ws.send(replica.export(ExportMode.Updates(from_=sent)))
        while True:
            frame = ws.recv()
            if isinstance(frame, str) and '"type":"ack"' in frame:
                break
    acked: list[str] = []
    killed = threading.Event()

    def write() -> None:  # one token at the end at a time: each ack makes that token durable
        i = 0
        while not killed.is_set():
            token_i = f"<{i}>"
            length = len("ws|") + sum(len(t) for t in acked)
            try:
                answer = me.post(f"/v1/docs/{doc}/edits", json=[[length, 0, token_i]])
            except httpx.TransportError:
                return
            if answer.status_code != 200:
                return
            acked.append(token_i)
            i += 1

    writer = threading.Thread(target=write)
    writer.start()
    while len(acked) < 60:
        threading.Event().wait(0.01)
    os.killpg(proc.pid, signal.SIGKILL)  # mid-stream: a request may be in flight
    killed.set()
    writer.join(30)
    proc.wait(30)

    _, client = serve()
    after = Authed(client, token).get(f"/v1/docs/{doc}").json()
    durable = "ws|" + "".join(acked)
    in_flight = f"<{len(acked)}>"
    assert after["content"] in (durable, durable + in_flight)
    assert after["version"] == 1 + len(acked) + (after["content"] != durable)
    fresh = LoroDoc()
    fresh.import_(Authed(client, token).get(f"/v1/docs/{doc}/updates").content)
    assert fresh.get_text("content").to_string() == after["content"]
