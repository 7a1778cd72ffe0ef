// A docs client in Node: loro-crdt and Node's global WebSocket, speaking PROTOCOL.md (tests/test_docs_node.py).
//   node [--experimental-websocket on Node 20] node_client.mjs <node_dir> <ws_url> <edits> <seed>
// Lines on stdout are JSON events; lines on stdin are commands:
//   -> {"event":"synced","version":N,"text":...}      after hello, the server's sync frame and "synced"
//   <- {"cmd":"go"}                                   then it makes <edits> random edits (code point positions,
//                                                     an alphabet of its own with characters beyond the BMP),
//                                                     a commit each, sent as binary frames, 0-3 ms apart
//   -> {"event":"done","acked":N,"version":V}         once every frame it sent is acknowledged
//   <- {"cmd":"finish","expect":"..."}                waits (up to 10 s) for its text to equal `expect`, then
//   -> {"event":"final","text":...,"imported":N,"overlaps":N,"sent":N,"acked":N}   and exits
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const [nodeDir, url, editsArg, seedArg] = process.argv.slice(2);
const require = createRequire(join(resolve(nodeDir), "package.json"));
const { LoroDoc } = require("loro-crdt");

const ALPHABET = [..."nodejs·ÄÖÜ🚀🎉"];
const edits = Number(editsArg);
let state = Number(seedArg) >>> 0;
const random = () => {  // mulberry32: a seeded run is repeatable
  state = (state + 0x6d2b79f5) >>> 0;
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};
const say = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const doc = new LoroDoc();
const text = doc.getText("content");
const pending = [];
let synced = false, finished = false, version = 0, sent = 0, acked = 0, imported = 0, overlaps = 0, ackWaiter = null;

// loro-crdt's text positions are UTF-16 units; the edits are chosen in code points and converted
function utf16(s, points) {
  let i = 0;
  for (let n = 0; n < points && i < s.length; n++) i += s.codePointAt(i) > 0xffff ? 2 : 1;
  return i;
}

const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
doc.subscribeLocalUpdates((bytes) => {
  pending.push(bytes);
  sent++;
  ws.send(bytes);
});
ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "hello", vv: null })));
ws.addEventListener("close", (event) => {
  if (!finished) {
    say({ event: "closed", code: event.code, reason: event.reason });
    process.exit(2);
  }
});
ws.addEventListener("message", (event) => {
  if (typeof event.data !== "string") {
    if (synced && pending.length) overlaps++;
    doc.import(new Uint8Array(event.data));
    if (synced) imported++;
    return;
  }
  const frame = JSON.parse(event.data);
  if (frame.type === "synced") {
    synced = true;
    version = frame.version;
    say({ event: "synced", version, role: frame.role, text: text.toString() });
  } else if (frame.type === "ack") {
    pending.shift();
    acked++;
    version = Math.max(version, frame.version);
    if (!pending.length && ackWaiter) ackWaiter();
  } else if (frame.type === "error") {
    say({ event: "error", reason: frame.reason });
    process.exit(3);
  }
});

async function editRandomly() {
  for (let i = 0; i < edits; i++) {
    const current = text.toString();
    const length = [...current].length;
    const pos = Math.floor(random() * (length + 1));
    const del = length > pos && random() < 0.3 ? 1 + Math.floor(random() * Math.min(3, length - pos)) : 0;
    let insert = "";
    const n = random() < 0.8 ? 1 + Math.floor(random() * 4) : 0;
    for (let k = 0; k < n; k++) insert += ALPHABET[Math.floor(random() * ALPHABET.length)];
    const from = utf16(current, pos);
    if (del) text.delete(from, utf16(current, pos + del) - from);
    if (insert) text.insert(from, insert);
    doc.commit();
    await sleep(Math.floor(random() * 4));
  }
  if (pending.length) await new Promise((r) => { ackWaiter = r; });
  say({ event: "done", acked, version });
}

const lines = createInterface({ input: process.stdin });
lines.on("line", async (line) => {
  const command = JSON.parse(line);
  if (command.cmd === "go") {
    editRandomly();
  } else if (command.cmd === "finish") {
    for (let waited = 0; waited < 10_000 && text.toString() !== command.expect; waited += 20) await sleep(20);
    finished = true;
    say({ event: "final", text: text.toString(), imported, overlaps, sent, acked });
    ws.close();
    process.exit(0);
  }
});
