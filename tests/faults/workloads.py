"""The fault suite's inputs and outputs, one workload per stream consumer in streams/.

A workload puts a deterministic input on the bus (and, where the consumer needs one, a seeded serving
store), names the consumer's script and groups, and reads back what the consumer made of it as sorted
tuples, restricted to the workload's own keys (so a shared Kafka topic or Cassandra keyspace holding
other runs' rows does not matter). `expected` is a brute force over the input, independent of the code.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.platform import schema
from sixfold.platform.lake import ArrowLake
from sixfold.platform.settings import Settings

# Recent enough for the users' recent queries (30 days' TTL), whole hours so partitions are few.
T0 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
AGENTS = ["Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
          "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36",
          "curl/8.5.0", None]


def canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, list):
        return tuple(canonical(v) for v in value)
    if isinstance(value, float):
        return round(value, 9)
    return value


def as_tuples(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> list[tuple]:
    return sorted(tuple(canonical(r[c]) for c in columns) for r in rows)


def digest(rows: list[tuple]) -> str:
    """A checksum of sorted rows: equal outputs, equal digests."""
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(row).encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


def summary(output: dict[str, list[tuple]]) -> dict[str, tuple[int, str]]:
    """{output name: (rows, checksum)}, what a test compares and prints."""
    return {name: (len(rows), digest(rows)) for name, rows in output.items()}


def lake_rows(settings: Settings, table: str, columns: tuple[str, ...], keep=lambda row: True) -> list[tuple]:
    """A lake table's rows as its readers see them (exact duplicates across batch files dropped)."""
    lake, t = ArrowLake(settings), LAKE_TABLES[table]
    if not lake.partitions(t):
        return []
    return as_tuples([r for r in lake.read(t).to_pylist() if keep(r)], columns)


def _iso(ts: datetime) -> str:
    return ts.isoformat().replace("+00:00", "Z")


@dataclass
class Workload:
    name: str
    script: str  # streams/<script>
    groups: tuple[str, ...]  # the consumer groups whose offsets it commits
    topics: tuple[str, ...]
    events: int = 0
    store_tables: tuple[str, ...] = ()  # serving tables it writes (the lake's files are seen as they land)
    data: dict[str, Any] = field(default_factory=dict)

    # ---- input ------------------------------------------------------------------------------------------
    def seed(self, settings: Settings, bus: Any, store: Any) -> None:
        getattr(self, f"_seed_{self.name}")(settings, bus, store)

    # ---- output -----------------------------------------------------------------------------------------
    def output(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        return getattr(self, f"_out_{self.name}")(settings, store)

    def expected(self) -> dict[str, int]:
        """Rows each output must hold, counted by brute force from the input."""
        return getattr(self, f"_expect_{self.name}")()

    # ---- search events: the lake (streams/search_events.py) ----------------------------------------------
    def _search_rows(self) -> list[dict[str, Any]]:
        run = self.data.setdefault("run", "r")
        return [{"user_id": f"{run}-u{i % 97}", "query": f"query {i % 1009} {run}", "region": ("us", "eu", "in")[i % 3],
                 "ts": _iso(T0 + timedelta(milliseconds=1700 * i))} for i in range(self.events)]

    def _seed_search_events(self, settings: Settings, bus: Any, store: Any) -> None:
        rows = self._search_rows()
        bus.produce_many("search-events", [(r["user_id"], r) for r in rows])

    def _out_search_events(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        run = self.data.get("run", "r")
        return {"lake search_events": lake_rows(settings, "search_events", ("user_id", "query", "region", "ts"),
                                                lambda r: r["user_id"].startswith(f"{run}-"))}

    def _expect_search_events(self) -> dict[str, int]:
        return {"lake search_events": len({tuple(sorted(r.items())) for r in self._search_rows()})}

    # ---- search events: users' recent queries in the store (streams/search_events_recent.py) --------------
    _seed_search_events_recent = _seed_search_events

    def _out_search_events_recent(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        run = self.data.get("run", "r")
        table = SERVING_TABLES["user_recent_queries"]
        rows = [r for u in range(97) for r in store.query(table, {"user_id": f"{run}-u{u}"})]
        return {"store user_recent_queries": as_tuples(rows, ("user_id", "ts", "query", "region"))}

    def _expect_search_events_recent(self) -> dict[str, int]:
        return {"store user_recent_queries": len({(r["user_id"], r["ts"], r["query"]) for r in self._search_rows()})}

    # ---- url clicks: the lake (streams/url_clicks.py) -------------------------------------------------------
    def _seed_url_clicks(self, settings: Settings, bus: Any, store: Any) -> None:
        rows = [{"click_id": f"c{i:09d}", "key": f"k{i % 53}", "ts": _iso(T0 + timedelta(milliseconds=1100 * i)),
                 "referrer_host": (None, "example.com", "News.Example.org:8080")[i % 3], "user_agent": AGENTS[i % 4]}
                for i in range(self.events)]
        bus.produce_many("url-clicks", [(r["key"], r) for r in rows])

    def _out_url_clicks(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        return {"lake url_clicks": lake_rows(settings, "url_clicks",
                                             ("click_id", "key", "ts", "referrer_host", "ua_family"))}

    def _expect_url_clicks(self) -> dict[str, int]:
        return {"lake url_clicks": self.events}

    # ---- document views: the lake (streams/docs_views.py) ---------------------------------------------------
    def _seed_docs_views(self, settings: Settings, bus: Any, store: Any) -> None:
        rows = [{"view_id": f"v{i:09d}", "doc_id": f"d{i % 41}", "user_id": None if i % 5 == 0 else i % 13,
                 "source": ("http", "ws")[i % 2], "ts": _iso(T0 + timedelta(milliseconds=1100 * i))}
                for i in range(self.events)]
        bus.produce_many("doc-viewed", [(r["doc_id"], r) for r in rows])

    def _out_docs_views(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        return {"lake doc_views": lake_rows(settings, "doc_views", ("view_id", "doc_id", "user_id", "source", "ts"))}

    def _expect_docs_views(self) -> dict[str, int]:
        return {"lake doc_views": self.events}

    # ---- the feed: timelines, search index, lake (streams/post_fanout.py) --------------------------------------
    def _feed(self) -> Any:
        from sixfold.feed.generate import generate

        if "feed" not in self.data:
            end = self.data.get("end", T0)
            self.data["feed"] = generate(users=self.data.get("users", 120), posts=self.events, seed=11, end=end)
        return self.data["feed"]

    def _deleted(self) -> list[dict[str, Any]]:
        every = self.data.get("delete_every", 0)
        return [p for i, p in enumerate(self._feed().posts) if every and i % every == every - 1]

    def _seed_post_fanout(self, settings: Settings, bus: Any, store: Any) -> None:
        from sixfold.feed.generate import serving_rows

        feed = self._feed()
        for name, rows in serving_rows(feed, settings.feed_celebrity_threshold).items():
            for at in range(0, len(rows), 500):
                store.upsert_many(SERVING_TABLES[name], rows[at:at + 500])
        for name in ("timelines", "hashtag_posts", "timeline_versions"):
            store.ensure_table(SERVING_TABLES[name])
        if not self.data.get("posts_later"):  # else the test publishes them itself (`publish_posts`)
            self.publish_posts(bus, feed.posts)
        follow = EVENTS["follows"].record
        bus.produce_many("follows", [(str(f["follower_id"]), schema.to_json_row(follow, {
            "follower_id": f["follower_id"], "followee_id": f["followee_id"], "action": "follow",
            "at": f["created_at"]})) for f in feed.follows])
        deletion = EVENTS["post-deleted"].record
        bus.produce_many("post-deleted", [(str(p["author_id"]), schema.to_json_row(deletion, {
            "post_id": p["post_id"], "author_id": p["author_id"], "deleted_at": T0 + timedelta(hours=1),
            "media_ids": [], "hashtags": p["hashtags"], "lat": p["lat"], "lon": p["lon"]})) for p in self._deleted()])

    @staticmethod
    def publish_posts(bus: Any, posts: list[dict[str, Any]]) -> int:
        """Put `post-created` events of `posts` (some of `_feed().posts`) on the bus."""
        post = EVENTS["post-created"].record
        return bus.produce_many("post-created", [(str(p["author_id"]), schema.to_json_row(post, p)) for p in posts])

    def _out_post_fanout(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        feed = self._feed()
        mine = {p["post_id"] for p in feed.posts}
        users = {u["user_id"] for u in feed.users}
        timelines = [r for u in sorted(users) for r in store.query(SERVING_TABLES["timelines"], {"user_id": u})]
        tags = sorted({t for p in feed.posts for t in p["hashtags"]})
        tagged = [r for t in tags for r in store.query(SERVING_TABLES["hashtag_posts"], {"tag": t})
                  if r["post_id"] in mine]
        return {
            "store timelines": as_tuples(timelines, ("user_id", "post_id", "author_id")),
            "store hashtag_posts": as_tuples(tagged, ("tag", "post_id")),
            "lake posts": lake_rows(settings, "posts", ("post_id", "author_id", "created_at", "caption", "hashtags",
                                                        "lat", "lon"), lambda r: r["post_id"] in mine),
            "lake follow_events": lake_rows(settings, "follow_events", ("follower_id", "followee_id", "action", "at"),
                                            lambda r: r["follower_id"] in users),
            "lake post_deletions": lake_rows(settings, "post_deletions", ("post_id", "author_id", "deleted_at"),
                                             lambda r: r["post_id"] in mine),
        }

    def _expect_post_fanout(self) -> dict[str, int]:
        feed = self._feed()
        gone = {p["post_id"] for p in self._deleted()}
        fans = Counter(f["followee_id"] for f in feed.follows)  # every author is pushed (threshold set high)
        live = [p for p in feed.posts if p["post_id"] not in gone]
        return {"store timelines": sum(fans[p["author_id"]] for p in live),
                "store hashtag_posts": sum(len(set(p["hashtags"])) for p in live),
                "lake posts": len(feed.posts), "lake follow_events": len(feed.follows),
                "lake post_deletions": len(gone)}

    # ---- chat: group messages fanned out to member devices (streams/chat_group_fanout.py) ---------------------
    GROUPS, MEMBERS = 60, 6

    def _members(self, g: int) -> list[int]:
        return [1000 + (g * 7 + k * 13) % 200 for k in range(self.MEMBERS)]

    @staticmethod
    def _devices(user: int) -> list[str]:
        return [f"{user}-a", f"{user}-b"][: 1 + user % 2]

    def _messages(self) -> list[dict[str, Any]]:
        out = []
        for i in range(self.events):
            g = i % self.GROUPS
            sender = self._members(g)[i % self.MEMBERS]
            out.append({"group_id": g, "conversation_id": f"g:{g}", "seq": i // self.GROUPS + 1, "sender_id": sender,
                        "sender_device": f"{sender}-a",
                        "frame": orjson.dumps({"type": "message", "message_id": 10_000 + i, "body": f"m{i}"}).decode()})
        return out

    def _seed_chat_group_fanout(self, settings: Settings, bus: Any, store: Any) -> None:
        now = datetime.now(UTC)
        store.upsert_many(SERVING_TABLES["chat_members"], [
            {"group_id": g, "user_id": u, "role": "member", "joined_at": now}
            for g in range(self.GROUPS) for u in self._members(g)])
        users = sorted({u for g in range(self.GROUPS) for u in self._members(g)})
        store.upsert_many(SERVING_TABLES["chat_devices"], [
            {"user_id": u, "device_id": d, "public_key": None, "credential_id": f"cred-{d}", "created_at": now}
            for u in users for d in self._devices(u)])
        store.ensure_table(SERVING_TABLES["chat_pending"])
        bus.produce_many("chat-group-messages", [(m["conversation_id"], m) for m in self._messages()])

    def _out_chat_group_fanout(self, settings: Settings, store: Any) -> dict[str, list[tuple]]:
        users = sorted({u for g in range(self.GROUPS) for u in self._members(g)})
        pending = [r for u in users for d in self._devices(u)
                   for r in store.query(SERVING_TABLES["chat_pending"], {"user_id": u, "device_id": d})]
        return {"store chat_pending": as_tuples(pending, ("user_id", "device_id", "entry", "frame"))}

    def _expect_chat_group_fanout(self) -> dict[str, int]:
        return {"store chat_pending": sum(
            sum(len(self._devices(u)) for u in self._members(m["group_id"])) - 1 for m in self._messages())}


def workloads() -> list[Workload]:
    """One workload per consumer in streams/ (post_fanout also lands `follows` and applies `post-deleted`)."""
    return [
        Workload("search_events", "search_events.py", ("search-events-landing",), ("search-events",), events=6000),
        Workload("search_events_recent", "search_events_recent.py", ("search-events-recent",), ("search-events",),
                 events=6000, store_tables=("user_recent_queries",)),
        Workload("url_clicks", "url_clicks.py", ("url-clicks-landing",), ("url-clicks",), events=8000),
        Workload("docs_views", "docs_views.py", ("doc-viewed-landing",), ("doc-viewed",), events=8000),
        Workload("post_fanout", "post_fanout.py", ("feed-fanout", "feed-post-deletions", "feed-follows-landing"),
                 ("post-created", "post-deleted", "follows"), events=500, data={"delete_every": 25}),
        Workload("chat_group_fanout", "chat_group_fanout.py", ("chat-group-fanout",), ("chat-group-messages",),
                 events=1200, store_tables=("chat_pending",)),
    ]
