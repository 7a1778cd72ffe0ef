// What the docs page (docs.html) takes from npm, bundled by scripts/build-docs-bundle.sh and inlined
// into docs.html as the global `SixfoldDocs` (an IIFE, the WASM inlined as base64).
export { LoroDoc, VersionVector, Cursor, UndoManager } from "loro-crdt";
export { EditorState, EditorSelection, StateField, StateEffect, Compartment } from "@codemirror/state";
export { EditorView, ViewPlugin, Decoration, WidgetType, keymap, drawSelection, lineNumbers } from "@codemirror/view";
export { defaultKeymap } from "@codemirror/commands";
export { LoroSyncPlugin, LoroUndoPlugin } from "loro-codemirror";
export const versions = __SIXFOLD_DOCS_VERSIONS__;
