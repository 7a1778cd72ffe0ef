"""Collaborative documents: the CRDT's convergence, restore and comment anchors as properties (hypothesis),
the HTTP API with its refusals, the WebSocket protocol with two Python clients (loro as the client
library), two serving apps sharing updates through `docs-updates`, and the suggestions against a brute force.

Oracles are not the code under test: the set of characters inserted minus those deleted (each inserted
character is unique), the content recorded at each version, the quoted text, plain Python filters.
"""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from loro import ExportMode, LoroDoc, VersionVector

from sixfold.api.app import create_app
from sixfold.docs import engine
from sixfold.platform.settings import Settings

pytestmark = pytest.mark.unit
FAST = hsettings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


# ---- the CRDT: any interleaving converges ------------------------------------------------------------
class Replica:
    def __init__(self, number: int) -> None:
        self.doc = LoroDoc()
        self.text = self.doc.get_text(engine.TEXT)
        self.number = number
        self.sent = self.doc.oplog_vv

    def export(self) -> bytes:
        update = self.doc.export(ExportMode.Updates(from_=self.sent))
        self.sent = self.doc.oplog_vv
        return update


@FAST
@given(replicas=st.integers(2, 4), steps=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 2), st.integers(0, 10**6),
                                                            st.integers(1, 4)), min_size=1, max_size=40),
       deliveries=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6)), max_size=60))
def test_any_interleaving_of_concurrent_edits_converges(replicas: int, steps: list, deliveries: list) -> None:
    """Replicas edit concurrently and exchange updates in any order, some twice, some late: all end with one
    text, which holds exactly the characters inserted and not deleted (every inserted character is unique)."""
    peers = [Replica(i) for i in range(replicas)]
    pool: list[bytes] = []
    inserted: set[str] = set()
    deleted: set[str] = set()
    fresh = iter(range(0x4E00, 0x4E00 + 100_000))
    for step, (who, kind, where, size) in enumerate(steps):
        peer = peers[who % replicas]
        n = peer.text.len_unicode
        if kind < 2 or n == 0:  # insert unique characters
            chars = "".join(chr(next(fresh)) for _ in range(size))
            peer.text.insert(where % (n + 1), chars)
            inserted.update(chars)
        else:
            pos = where % n
            count = min(size, n - pos)
            deleted.update(peer.text.to_string()[pos:pos + count])
            peer.text.delete(pos, count)
        peer.doc.commit()
        pool.append(peer.export())
        # some deliveries happen in between: to any replica, any update so far (duplicates included)
        for target, pick in deliveries[step::len(steps)]:
            peers[target % replicas].doc.import_(pool[pick % len(pool)])
    for peer in peers:  # finally everyone gets everything, in a shuffled order
        order = pool[:]
        random.Random(peer.number).shuffle(order)
        for update in order:
            peer.doc.import_(update)
    texts = {p.text.to_string() for p in peers}
    assert len(texts) == 1
    final = texts.pop()
    assert len(final) == len(set(final)) and set(final) == inserted - deleted


@FAST
@given(ops=st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 5), st.text(max_size=6)), min_size=1, max_size=30),
       pick=st.integers(0, 10**6))
def test_content_at_a_version_is_the_content_recorded_then(ops: list, pick: int) -> None:
    doc = LoroDoc()
    recorded = [("", b"")]
    for pos, count, text in ops:
        n = engine.length(doc)
        pos = pos % (n + 1)
        engine.apply_edits(doc, engine.check_edits([[pos, min(count, n - pos), text]], n)[0])
        recorded.append((engine.content(doc), doc.oplog_frontiers.encode()))
    content, frontiers = recorded[pick % len(recorded)]
    assert engine.content_at(doc, frontiers) == content


@FAST
@given(text=st.text(alphabet="abcdefgh ", min_size=5, max_size=40), span=st.tuples(st.integers(0, 100), st.integers(1, 10)),
       edits=st.lists(st.tuples(st.booleans(), st.booleans(), st.integers(0, 10**6), st.text(alphabet="XYZ", min_size=1,
                                                                                             max_size=3)), max_size=12))
def test_a_comment_stays_anchored_through_concurrent_edits_outside_it(text: str, span: tuple, edits: list) -> None:
    """A replica edits before and after the range (never inside it) while the server anchors a comment:
    after merging, the range resolves to where the quoted text is now."""
    server = LoroDoc()
    server.get_text(engine.TEXT).insert(0, text)
    server.commit()
    other = LoroDoc()
    other.import_(server.export(ExportMode.Snapshot()))
    start = span[0] % len(text)
    end = min(len(text), start + span[1])
    first, last = engine.anchor(server, start, end)
    quote = text[start:end]
    lo, hi = start, end  # where the range is on the other replica
    for before, insert, where, s in edits:
        t = other.get_text(engine.TEXT)
        n = t.len_unicode
        if before:
            pos = where % (lo + 1)
            if insert:
                t.insert(pos, s)
                lo, hi = lo + len(s), hi + len(s)
            elif pos < lo:
                count = min(len(s), lo - pos)
                t.delete(pos, count)
                lo, hi = lo - count, hi - count
        else:
            pos = hi + where % (n - hi + 1)
            if insert:
                t.insert(pos, s)
            elif pos < n:
                t.delete(pos, min(len(s), n - pos))
        other.commit()
    server.import_(other.export(ExportMode.Updates(from_=VersionVector())))
    where = engine.resolve(server, first, last)
    assert not where.orphaned
    assert engine.content(server)[where.start:where.end] == quote


def test_a_comment_whose_range_is_deleted_is_orphaned_and_a_partial_delete_shrinks_it() -> None:
    doc = LoroDoc()
    t = doc.get_text(engine.TEXT)
    t.insert(0, "hello brave new world")
    doc.commit()
    first, last = engine.anchor(doc, 6, 11)  # "brave"
    t.delete(9, 2)  # "bra" left
    doc.commit()
    where = engine.resolve(doc, first, last)
    assert engine.content(doc)[where.start:where.end] == "bra"
    t.delete(4, 8)
    doc.commit()
    assert engine.resolve(doc, first, last).orphaned


@pytest.mark.parametrize("body, index, words", [
    ([[0, 0, "a"], [2, 0, "b"]], 1, "out of range"),
    ([[0, 1, ""]], 0, "out of range"),
    ([[-1, 0, "x"]], 0, "must not be negative"),
    ([[0, 0]], 0, "is not [pos, delete_count, insert_text]"),
    ([[0, "1", "x"]], 0, "two integers and a string"),
    ([[0, True, "x"]], 0, "two integers and a string"),
    ("nope", None, "a list of"),
])
def test_edits_are_checked_against_the_running_length(body: Any, index: int | None, words: str) -> None:
    with pytest.raises(engine.EditRejected, match=words.replace("[", r"\[").replace("]", r"\]")) as caught:
        engine.check_edits(body, 0)
    assert caught.value.index == index
    assert engine.check_edits({"edits": [[0, 0, "ab😀"], [3, 0, "c"], [1, 2, ""]]}, 0)[1:] == (4, 2)


# ---- the HTTP API -------------------------------------------------------------------------------------
@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def people(client: TestClient, *names: str) -> list[tuple[int, Authed]]:
    out = []
    for name in names:
        user, token = signup(client, name)
        out.append((user, Authed(client, token)))
    return out


def test_documents_over_http_with_every_refusal(client: TestClient) -> None:
    (ann, as_ann), (bob, as_bob), (cat, as_cat) = people(client, "ann", "bob", "cat")
    made = as_ann.post("/v1/docs", json={"title": "Plan"})
    assert made.status_code == 201 and made.json()["version"] == 0
    doc = made.json()["doc_id"]
    assert isinstance(doc, str)
    assert as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "héllo 😀 world"]]).json() == {"version": 1}
    assert as_ann.post(f"/v1/docs/{doc}/edits", json={"edits": [[6, 1, "🙂"], [13, 0, "!"]]}).json() == {"version": 2}
    assert as_ann.get(f"/v1/docs/{doc}").json() == {"doc_id": doc, "title": "Plan", "content": "héllo 🙂 world!",
                                                   "version": 2, "public": False}
    # 422 names the operation; nothing applied
    bad = as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "x"], [0, 0, "y"], [99, 1, ""]])
    assert bad.status_code == 422 and "operation 2" in bad.json()["error"]["message"]
    assert as_ann.get(f"/v1/docs/{doc}").json()["content"] == "héllo 🙂 world!"
    for body, status in ((b"{", 422), (b"\xff[", 400), (b"", 422), (b'[[0, 0, 5]]', 422)):
        answer = as_ann.post(f"/v1/docs/{doc}/edits", content=body, headers={"Content-Type": "application/json"})
        assert answer.status_code == status, answer.text
    # 401 without a token, 403 for a non-member, 404 for no such document
    assert client.get(f"/v1/docs/{doc}").status_code == 401
    assert client.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "x"]]).status_code == 401
    refused = as_bob.get(f"/v1/docs/{doc}")
    assert refused.status_code == 403 and f"user {bob} is not a member" in refused.json()["error"]["message"]
    assert as_bob.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "x"]]).status_code == 403
    assert as_ann.get("/v1/docs/123").status_code == 404
    assert as_ann.post("/v1/docs/123/edits", json=[[0, 0, "x"]]).status_code == 404
    # members: the owner adds an editor and a viewer; a viewer reads and cannot edit; only the owner adds
    assert as_bob.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"}).status_code == 403
    assert as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"}).status_code == 201
    assert as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": cat, "role": "viewer"}).status_code == 201
    assert as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": cat, "role": "boss"}).status_code == 422
    assert as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": 12345, "role": "viewer"}).status_code == 404
    assert as_bob.post(f"/v1/docs/{doc}/members", json={"user_id": cat, "role": "editor"}).status_code == 403
    assert {m["user_id"]: m["role"] for m in as_cat.get(f"/v1/docs/{doc}/members").json()["members"]} == \
        {ann: "owner", bob: "editor", cat: "viewer"}
    assert as_cat.get(f"/v1/docs/{doc}").json()["content"] == "héllo 🙂 world!"
    viewer = as_cat.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "x"]])
    assert viewer.status_code == 403 and "viewer" in viewer.json()["error"]["message"]
    assert as_cat.post(f"/v1/docs/{doc}/restore", json={"version": 1}).status_code == 403
    assert as_bob.post(f"/v1/docs/{doc}/edits", json=[[0, 0, ">"]]).json() == {"version": 3}
    # a public document: anyone reads, nobody but members writes
    public = as_ann.post("/v1/docs", json={"public": True}).json()["doc_id"]
    as_ann.post(f"/v1/docs/{public}/edits", json=[[0, 0, "for all"]])
    assert client.get(f"/v1/docs/{public}").json()["content"] == "for all"
    assert as_bob.post(f"/v1/docs/{public}/edits", json=[[0, 0, "x"]]).status_code == 403
    # batches of 10,000 operations are accepted, 10,001 are not
    many = [[i, 0, "a"] for i in range(10_000)]
    assert as_ann.post(f"/v1/docs/{public}/edits", json=many).status_code == 200
    assert as_ann.post(f"/v1/docs/{public}/edits", json=many + [[0, 0, "b"]]).status_code == 422
    assert len(client.get(f"/v1/docs/{public}").json()["content"]) == 10_007


def test_history_restore_updates_and_comments(client: TestClient) -> None:
    (ann, as_ann), (bob, as_bob) = people(client, "ann", "bob")
    doc = as_ann.post("/v1/docs", json={}).json()["doc_id"]
    as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"})
    contents = {0: ""}
    rng = random.Random(7)
    for i in range(1, 13):
        who = as_ann if i % 2 else as_bob
        n = len(contents[i - 1])
        pos = rng.randrange(n + 1)
        dele = rng.randrange(min(3, n - pos) + 1)
        assert who.post(f"/v1/docs/{doc}/edits", json=[[pos, dele, f"<{i}>"]]).json() == {"version": i}
        contents[i] = contents[i - 1][:pos] + f"<{i}>" + contents[i - 1][pos + dele:]
    history = as_ann.get(f"/v1/docs/{doc}/history").json()["versions"]
    assert [v["version"] for v in history] == list(range(12, 0, -1))
    assert {v["author_id"] for v in history} == {ann, bob}
    assert history[-1]["summary"] == "+3 -0 chars"
    page = as_ann.get(f"/v1/docs/{doc}/history", params={"limit": 5}).json()
    rest = as_ann.get(f"/v1/docs/{doc}/history", params={"limit": 100, "cursor": page["next_cursor"]}).json()
    assert [v["version"] for v in page["versions"] + rest["versions"]] == list(range(12, 0, -1))
    for target in (4, 0, 11):
        version = as_bob.post(f"/v1/docs/{doc}/restore", json={"version": target}).json()["version"]
        assert as_ann.get(f"/v1/docs/{doc}").json() == {"doc_id": doc, "title": "Untitled", "content": contents[target],
                                                       "version": version, "public": False}
        contents[version] = contents[target]
    newest = as_ann.get(f"/v1/docs/{doc}/history").json()["versions"][0]
    assert newest["author_id"] == bob and newest["summary"].startswith("restored version 11")
    assert as_ann.post(f"/v1/docs/{doc}/restore", json={"version": 99}).status_code == 404
    assert as_ann.post(f"/v1/docs/{doc}/restore", json={"version": -1}).status_code == 422
    # updates: everything, or only what a client at a version vector lacks
    replica = LoroDoc()
    replica.import_(as_ann.get(f"/v1/docs/{doc}/updates").content)
    assert engine.content(replica) == contents[max(contents)]
    as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "new"]])
    since = base64.b64encode(replica.oplog_vv.encode()).decode()
    missing = as_ann.get(f"/v1/docs/{doc}/updates", params={"since_vv": since})
    assert missing.headers["content-type"] == "application/octet-stream"
    assert len(missing.content) < 200
    replica.import_(missing.content)
    assert engine.content(replica) == as_ann.get(f"/v1/docs/{doc}").json()["content"]
    assert as_ann.get(f"/v1/docs/{doc}/updates", params={"since_vv": "!!"}).status_code == 422
    assert as_ann.get(f"/v1/docs/{doc}/updates", params={"since_vv": "//8="}).status_code == 422
    # comments follow edits and orphan when their range goes
    text = as_ann.get(f"/v1/docs/{doc}").json()["content"]
    made = as_bob.post(f"/v1/docs/{doc}/comments", json={"start": 3, "end": 6, "text": "why?"})
    assert made.status_code == 201 and made.json()["quote"] == text[3:6]
    assert as_bob.post(f"/v1/docs/{doc}/comments", json={"start": 3, "end": 999, "text": "x"}).status_code == 422
    as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "12345"]])
    (comment,) = as_ann.get(f"/v1/docs/{doc}/comments").json()["comments"]
    assert (comment["start"], comment["end"], comment["orphaned"]) == (8, 11, False)
    as_ann.post(f"/v1/docs/{doc}/edits", json=[[7, 5, ""]])
    (comment,) = as_ann.get(f"/v1/docs/{doc}/comments").json()["comments"]
    assert (comment["start"], comment["end"], comment["orphaned"]) == (None, None, True)
    assert as_ann.get(f"/v1/docs/{doc}/views").json() == {"doc_id": doc, "days": [], "total": 0}
    outsider = people(client, "eve")[0][1]
    assert outsider.get(f"/v1/docs/{doc}/views").status_code == 403
    assert outsider.get(f"/v1/docs/{doc}/comments").status_code == 403


def test_the_editor_page_routes(client: TestClient) -> None:
    from importlib.resources import files

    built = files("sixfold.docs").joinpath("static/docs.html").is_file()
    for path in ("/docs", "/docs/123"):
        answer = client.get(path)
        assert answer.status_code == (200 if built else 404)
        assert ("html" in answer.headers["content-type"]) == built
    assert client.get("/api-docs").status_code == 200


# ---- the WebSocket ----------------------------------------------------------------------------------
def hello(ws: Any, replica: LoroDoc | None = None) -> dict:
    vv = None if replica is None else base64.b64encode(replica.oplog_vv.encode()).decode()
    ws.send_json({"type": "hello", "vv": vv})
    return {"update": ws.receive_bytes(), "synced": ws.receive_json()}


class Writer:
    """A Python client of the protocol: a LoroDoc, what it sent, the frames it got."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.doc = ws, LoroDoc()
        self.text = self.doc.get_text(engine.TEXT)
        got = hello(ws)
        self.doc.import_(got["update"])
        self.synced = got["synced"]
        self.sent = self.doc.oplog_vv
        self.acks: list[int] = []

    def type(self, pos: int, s: str) -> None:
        self.text.insert(min(pos, self.text.len_unicode), s)
        self.doc.commit()
        self.ws.send_bytes(self.doc.export(ExportMode.Updates(from_=self.sent)))
        self.sent = self.doc.oplog_vv

    def receive(self) -> dict:
        import json

        frame = self.ws.receive()
        if frame.get("bytes") is not None:
            self.doc.import_(frame["bytes"])
            return {"type": "update"}
        body = json.loads(frame["text"])
        if body["type"] == "ack":
            self.acks.append(body["version"])
        return body

    def drain_until_acked(self, count: int) -> None:
        while len(self.acks) < count:
            self.receive()

    def settle(self) -> None:
        """Everything queued for this client so far: a ping's pong comes after it."""
        self.ws.send_json({"type": "ping"})
        while self.receive()["type"] != "pong":
            pass


def test_two_websocket_writers_converge_with_the_server(client: TestClient) -> None:
    (ann, as_ann), (bob, as_bob), (cat, as_cat) = people(client, "ann", "bob", "cat")
    doc = as_ann.post("/v1/docs", json={"title": "live"}).json()["doc_id"]
    as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"})
    as_ann.post(f"/v1/docs/{doc}/members", json={"user_id": cat, "role": "viewer"})
    as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "start."]])
    url = f"/v1/docs/{doc}/ws?token="
    with client.websocket_connect(url + as_ann.token) as a_ws, client.websocket_connect(url + as_bob.token) as b_ws:
        a, b = Writer(a_ws), Writer(b_ws)
        assert a.synced == {"type": "synced", "version": 1, "role": "owner", "you": {"user_id": ann, "username": "ann"}}
        assert engine.content(a.doc) == engine.content(b.doc) == "start."
        rng = random.Random(3)
        for i in range(30):  # both type at once: neither waits for the other's updates
            a.type(rng.randrange(40), f"a{i}")
            b.type(rng.randrange(40), f"b{i}")
        a.drain_until_acked(30)
        b.drain_until_acked(30)
        a.settle()
        b.settle()
        server = as_ann.get(f"/v1/docs/{doc}").json()
        assert server["version"] == 61 and sorted(a.acks + b.acks) == list(range(2, 62))
        # each has the other's updates once all are acked (a forward is queued before its ack)
        assert engine.content(a.doc) == engine.content(b.doc) == server["content"]
        from collections import Counter

        typed = "start." + "".join(f"a{i}b{i}" for i in range(30))  # tokens may land inside each other
        assert Counter(server["content"]) == Counter(typed)
        # presence is relayed; a viewer joins, gets peers, cannot edit
        with client.websocket_connect(url + as_cat.token) as c_ws:
            got = hello(c_ws)
            viewer = LoroDoc()
            viewer.import_(got["update"])
            assert engine.content(viewer) == server["content"] and got["synced"]["role"] == "viewer"
            assert {u["user_id"] for u in c_ws.receive_json()["users"]} == {ann, bob, cat}
            a_ws.send_json({"type": "presence", "cursor": {"anchor": 2, "head": 5}})
            relayed = c_ws.receive_json()
            assert relayed == {"type": "presence", "user_id": ann, "username": "ann", "cursor": {"anchor": 2, "head": 5}}
            c_ws.send_bytes(a.doc.export(ExportMode.Updates(from_=VersionVector())))
            assert c_ws.receive_json()["type"] == "error"
            a_ws.send_bytes(b"not loro")
        a_ws.send_json({"type": "ping"})  # answered after the garbage, which the same loop handled first
        frames = [a.receive()]
        while frames[-1]["type"] != "pong":
            frames.append(a.receive())
        assert [f for f in frames if f["type"] == "error"][0]["reason"].startswith("these bytes are not a Loro update")
    # a client that reconnects with its version vector gets only what it lacks
    as_ann.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "later "]])
    with client.websocket_connect(url + as_bob.token) as b_ws:
        got = hello(b_ws, b.doc)
        assert len(got["update"]) < 150
        b.doc.import_(got["update"])
        assert engine.content(b.doc) == as_ann.get(f"/v1/docs/{doc}").json()["content"]


def test_websocket_refusals_close_with_their_codes(client: TestClient) -> None:
    from starlette.websockets import WebSocketDisconnect

    (_, as_ann), (_, as_bob) = people(client, "ann", "bob")
    doc = as_ann.post("/v1/docs", json={}).json()["doc_id"]
    for url, code in ((f"/v1/docs/{doc}/ws?token=nope", 4401), (f"/v1/docs/{doc}/ws", 4401),
                      (f"/v1/docs/{doc}/ws?token={as_bob.token}", 4403), (f"/v1/docs/42/ws?token={as_ann.token}", 4404)):
        with pytest.raises(WebSocketDisconnect) as closed:
            with client.websocket_connect(url) as ws:
                ws.receive_text()
        assert closed.value.code == code, url
    with client.websocket_connect(f"/v1/docs/{doc}/ws?token={as_ann.token}") as ws:
        ws.send_json({"type": "hello", "vv": "%%%"})
        assert ws.receive_json()["type"] == "error"


def test_two_serving_apps_share_updates_through_the_event_log(settings: Settings) -> None:
    """Two serving processes' apps on one store and log: an edit on one reaches the other's copy in memory
    (its consumer of docs-updates) and its WebSocket clients; each skips its own updates."""
    with TestClient(create_app(settings)) as one, TestClient(create_app(settings)) as two:
        ann, token = signup(one, "ann")
        as_one, as_two = Authed(one, token), Authed(two, token)
        doc = as_one.post("/v1/docs", json={}).json()["doc_id"]
        as_one.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "one"]])
        assert as_two.get(f"/v1/docs/{doc}").json()["content"] == "one"  # loaded from the store
        with two.websocket_connect(f"/v1/docs/{doc}/ws?token={token}") as ws:
            watcher = Writer(ws)
            as_one.post(f"/v1/docs/{doc}/edits", json=[[3, 0, " two"]])
            while watcher.receive()["type"] != "update":  # forwarded by the other process, through the log
                pass
            assert engine.content(watcher.doc) == "one two"
        deadline = time.monotonic() + 10
        while as_two.get(f"/v1/docs/{doc}").json()["version"] != 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert as_two.get(f"/v1/docs/{doc}").json() == as_one.get(f"/v1/docs/{doc}").json()


# ---- suggestions ------------------------------------------------------------------------------------
def damerau_levenshtein(a: str, b: str) -> int:
    """The true (unrestricted) Damerau-Levenshtein distance: the fewest inserts, deletes, replaces and
    adjacent transposes (Lowrance-Wagner)."""
    alphabet: dict[str, int] = {}
    big = len(a) + len(b)
    d = [[big] * (len(b) + 2) for _ in range(len(a) + 2)]
    for i in range(len(a) + 1):
        d[i + 1][0], d[i + 1][1] = big, i
    for j in range(len(b) + 1):
        d[0][j + 1], d[1][j + 1] = big, j
    for i in range(1, len(a) + 1):
        db = 0
        for j in range(1, len(b) + 1):
            k, last = alphabet.get(b[j - 1], 0), db
            cost = 0 if a[i - 1] == b[j - 1] else 1
            if cost == 0:
                db = j
            d[i + 1][j + 1] = min(d[i][j] + cost, d[i + 1][j] + 1, d[i][j + 1] + 1,
                                  d[k][last] + (i - k - 1) + 1 + (j - last - 1))
        alphabet[a[i - 1]] = i
    return d[len(a) + 1][len(b) + 1]


@pytest.fixture(scope="module")
def small_vocabulary():
    from wordfreq import top_n_list, word_frequency

    from sixfold.docs.suggest import Vocabulary

    return Vocabulary((w, word_frequency(w, "en")) for w in top_n_list("en", 3000))


def test_completion_and_spelling_equal_the_brute_force(small_vocabulary) -> None:
    words = small_vocabulary.frequency
    ranked = sorted(words, key=lambda w: (-words[w], w))
    for prefix in ("th", "wor", "q", "zzz", "Re", "don'"):
        brute = [w for w in ranked if w.startswith(prefix.lower())][:7]
        assert [w for w, _ in small_vocabulary.complete(prefix, 7)] == brute
    for typo in ("speling", "wrold", "teh", "becuase", "hte", "recieve", "thier", "goverment", "xqzv", "the"):
        correct, found = small_vocabulary.correct(typo, 5)
        distance = {w: damerau_levenshtein(typo, w) for w in words if abs(len(w) - len(typo)) <= 2}
        one = [w for w in ranked if distance.get(w) == 1]
        two = [w for w in ranked if distance.get(w) == 2]
        assert correct == (typo in words)
        expected = [] if correct else [(w, 1) for w in one][:5] or [(w, 2) for w in two][:5]
        assert [(w, d) for w, _, d in found] == expected, typo


def test_the_suggestion_endpoints(client: TestClient) -> None:
    completions = client.get("/v1/docs/suggest", params={"prefix": "wor", "limit": 3}).json()
    assert [s["word"] for s in completions["suggestions"]] == ["work", "world", "working"]
    spelled = client.get("/v1/docs/spell", params={"word": "wrold"}).json()
    assert not spelled["correct"] and spelled["suggestions"][0]["word"] == "world"
    assert client.get("/v1/docs/spell", params={"word": "world"}).json() == {"word": "world", "correct": True,
                                                                             "suggestions": []}
    assert client.get("/v1/docs/suggest", params={"prefix": ""}).status_code == 422
