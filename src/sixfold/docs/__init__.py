"""Collaborative documents (the course's Google Docs): Loro CRDTs, durable updates, history, comments.

`engine` (Loro operations), `service` (documents, roles, durable updates, history, restore,
comments), `hub` (the WebSocket protocol of PROTOCOL.md), `api` (the router), `compaction`
(update logs folded into snapshots), `views` (view events and their daily counts), `suggest`
(word completion and spelling).
"""
