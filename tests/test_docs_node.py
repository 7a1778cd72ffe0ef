"""A loro-crdt client in Node and a loro client in Python edit one document at once over the WebSocket.

The real app serves on 127.0.0.1 (uvicorn in a thread). Node (`src/sixfold/docs/node_client.mjs`:
loro-crdt from npm, Node's global WebSocket) and Python (`loro` from PyPI, `websockets`) each say hello,
receive the sync frame and `synced` (Python after a seed written over HTTP, Node too), then both make
random edits at once: positions in code points over text holding characters beyond the BMP (UTF-16 in
Node, code points in Python and on the server), a commit per edit sent as a binary frame, remote frames
imported as they arrive. After both have every frame acknowledged, Node's text, Python's text and
`GET /v1/docs/{id}` are equal; the version counts every acknowledged frame.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import loro
import pytest
import websockets
from accounts import bearer
from browser import Server

from sixfold.docs import bench_node

pytestmark = pytest.mark.e2e

EDITS = 150
SEED = "seed: ünïcödé 👋\n"


@pytest.fixture(scope="module")
def node_packages() -> Path:
    why = bench_node.unavailable()
    if why:
        pytest.skip(why)
    return bench_node.ensure_packages()


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with Server() as running:
        yield running


class PythonClient:
    """PROTOCOL.md in Python: hello with no version, import the sync frame, send each commit, import the rest."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.doc = loro.LoroDoc()
        self.text = self.doc.get_text("content")
        self.pending: list[bytes] = []
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.sub = self.doc.subscribe_local_update(self._local)
        self.synced = asyncio.Event()
        self.all_acked = asyncio.Event()
        self.acked = self.overlaps = self.version = self.sent = 0

    def _local(self, update: bytes) -> bool:
        self.sent += 1
        self.pending.append(update)
        self.outbox.put_nowait(update)
        return True

    async def run(self, stop: asyncio.Event) -> None:
        async with websockets.connect(self.url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "hello", "vv": None}))

            async def sender() -> None:
                while True:
                    await ws.send(await self.outbox.get())

            sending = asyncio.create_task(sender())
            try:
                while not stop.is_set():
                    try:
                        frame = await asyncio.wait_for(ws.recv(), 0.05)
                    except TimeoutError:
                        continue
                    if isinstance(frame, bytes):
                        if self.synced.is_set() and self.pending:
                            self.overlaps += 1
                        self.doc.import_(frame)
                        continue
                    message = json.loads(frame)
                    if message["type"] == "synced":
                        self.version = message["version"]
                        self.synced.set()
                    elif message["type"] == "ack":
                        self.pending.pop(0)
                        self.acked += 1
                        self.version = max(self.version, message["version"])
                        if not self.pending:
                            self.all_acked.set()
                    elif message["type"] == "error":
                        raise AssertionError(f"the server refused a frame: {message['reason']}")
            finally:
                sending.cancel()

    async def edit_randomly(self, edits: int, rng: random.Random) -> None:
        alphabet = "python·ßø🐍✨"
        for _ in range(edits):
            length = self.text.len_unicode
            pos = rng.randint(0, length)
            delete = rng.randint(1, min(3, length - pos)) if length > pos and rng.random() < 0.3 else 0
            insert = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 4))) if rng.random() < 0.8 else ""
            if delete:
                self.text.delete(pos, delete)
            if insert:
                self.text.insert(pos, insert)
            self.doc.commit()
            await asyncio.sleep(rng.randint(0, 3) / 1000)
        if self.pending:
            self.all_acked.clear()
            await asyncio.wait_for(self.all_acked.wait(), 30)


async def scenario(server: Server, node_dir: Path) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as http:
        user = (await http.post("/v1/users", json={"username": "both"})).json()
        token = user["token"]
        doc_id = (await http.post("/v1/docs", json={"title": "node and python"}, headers=bearer(token))).json()["doc_id"]
        seeded = await http.post(f"/v1/docs/{doc_id}/edits", json=[[0, 0, SEED]], headers=bearer(token))
        assert seeded.status_code == 200, seeded.text
        ws_url = server.url.replace("http://", "ws://") + f"/v1/docs/{doc_id}/ws?token={token}"

        node = await asyncio.create_subprocess_exec(
            *bench_node.node_command(), str(bench_node.script("node_client.mjs")), str(node_dir), ws_url, str(EDITS), "7",
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert node.stdin is not None and node.stdout is not None and node.stderr is not None

        async def node_says(event: str) -> dict[str, Any]:
            line = await asyncio.wait_for(node.stdout.readline(), 60)  # type: ignore[union-attr]
            if not line:
                raise AssertionError(f"node exited ({await node.wait()}): {(await node.stderr.read()).decode()[-2000:]}")  # type: ignore[union-attr]
            said = json.loads(line)
            assert said["event"] == event, said
            return said

        def tell(command: dict[str, Any]) -> None:
            node.stdin.write((json.dumps(command) + "\n").encode())  # type: ignore[union-attr]

        python = PythonClient(ws_url)
        stop = asyncio.Event()
        running = asyncio.create_task(python.run(stop))
        try:
            node_synced = await node_says("synced")
            await asyncio.wait_for(python.synced.wait(), 10)
            assert node_synced["text"] == SEED == python.text.to_string()
            tell({"cmd": "go"})  # both edit at once from here
            await python.edit_randomly(EDITS, random.Random(11))
            node_done = await node_says("done")
            answer = (await http.get(f"/v1/docs/{doc_id}", headers=bearer(token))).json()
            for _ in range(500):  # Python imports what Node sent until it has the server's text
                if python.text.to_string() == answer["content"]:
                    break
                await asyncio.sleep(0.02)
            tell({"cmd": "finish", "expect": answer["content"]})
            node_final = await node_says("final")
            assert await asyncio.wait_for(node.wait(), 10) == 0
        finally:
            stop.set()
            await running
            if node.returncode is None:
                node.kill()
        return {"server": answer, "python": python.text.to_string(), "node": node_final, "node_done": node_done,
                "python_acked": python.acked, "python_sent": python.sent, "python_overlaps": python.overlaps, "seed_version": seeded.json()["version"]}


def test_node_and_python_clients_editing_at_once_agree_with_the_server(node_packages: Path, server: Server) -> None:
    with ThreadPoolExecutor(1) as pool:
        out = pool.submit(asyncio.run, scenario(server, node_packages)).result(timeout=120)
    server_text = out["server"]["content"]
    assert out["node"]["text"] == out["python"] == server_text
    assert len(server_text) > len(SEED) and any(c in server_text for c in "🚀🎉") and any(c in server_text for c in "🐍✨")
    # one version per acknowledged frame (a commit that changed something): the seed's, then every frame sent
    assert out["python_acked"] == out["python_sent"] > EDITS // 2 and out["node"]["acked"] == out["node"]["sent"] > EDITS // 2
    assert out["server"]["version"] == out["seed_version"] + out["python_sent"] + out["node"]["sent"]
    # they really edited at once: each imported the other's frames while some of its own were unacknowledged
    assert out["node"]["imported"] > 0 and out["node"]["overlaps"] + out["python_overlaps"] > 0
