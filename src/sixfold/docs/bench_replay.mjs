// Replay the automerge-paper trace in Node, for `sixfold bench docs` (benchmark tooling, not served).
//   node bench_replay.mjs <node_dir> <trace.json.gz> <engine: yjs|loro-crdt> <edits> <repeats>
// Prints one JSON line: every run's seconds, the final text, and the encoded state's size.
// Each edit is its own transaction (Yjs: a Y.Text insert/delete outside transact; loro-crdt: commit
// every 1,000 edits like the Python side). Positions are code points; the trace has none above the
// BMP (checked), so they equal the UTF-16 indices both libraries take.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { gunzipSync } from "node:zlib";

const [nodeDir, tracePath, engine, edits, repeats] = process.argv.slice(2);
const require = createRequire(join(resolve(nodeDir), "package.json"));
const trace = JSON.parse(gunzipSync(readFileSync(tracePath)).toString("utf8"));
const patches = trace.txns.flatMap((t) => t.patches).slice(0, Number(edits));
if (/[\u{10000}-\u{10FFFF}]/u.test(trace.endContent)) throw new Error("the trace has characters above the BMP");

function yjs() {
  const Y = require("yjs");
  const doc = new Y.Doc();
  const text = doc.getText("content");
  const started = performance.now();
  for (const [pos, del, ins] of patches) {
    if (del > 0) text.delete(pos, del);
    if (ins) text.insert(pos, ins);
  }
  const seconds = (performance.now() - started) / 1000;
  return { seconds, content: text.toString(), state_bytes: Y.encodeStateAsUpdate(doc).length,
           version: require("yjs/package.json").version };
}

function loro() {
  const { LoroDoc } = require("loro-crdt");
  const doc = new LoroDoc();
  const text = doc.getText("content");
  const started = performance.now();
  let n = 0;
  for (const [pos, del, ins] of patches) {
    if (del > 0) text.delete(pos, del);
    if (ins) text.insert(pos, ins);
    if (++n % 1000 === 0) doc.commit();
  }
  doc.commit();
  const seconds = (performance.now() - started) / 1000;
  return { seconds, content: text.toString(), state_bytes: doc.export({ mode: "snapshot" }).length,
           version: require("loro-crdt/package.json").version };
}

const replay = { yjs, "loro-crdt": loro }[engine];
if (!replay) throw new Error(`unknown engine ${engine}`);
const runs = [];
let last;
for (let i = 0; i < Number(repeats); i++) {
  last = replay();
  runs.push(last.seconds);
}
process.stdout.write(JSON.stringify({ engine, edits: patches.length, runs_s: runs, content: last.content,
                                      state_bytes: last.state_bytes, version: last.version,
                                      node: process.version }) + "\n");
