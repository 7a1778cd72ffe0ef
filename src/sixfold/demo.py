"""`sixfold demo`: generate data, run every pipeline once on the configured profile, then serve.

Typeahead: a synthetic search log goes through collection (bus, then the lake by 15-minute
window), aggregation with decay (Spark), the trie build, validation and the swap; the server
then answers /v1/suggestions and the /typeahead page. Feed: a power-law graph with real photos,
posts, a celebrity and stories, the offline timelines job and the search index, and a signed-up
demo user. Crawler: the local test site in this process, a crawl, the Spark dedup job.
`run_sample_pipeline` is the platform's smaller sample (spark-submit of
jobs/sample_window_counts.py), kept for `--sample`. Each system adds its own step here as it lands.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from schemas.records import EVENTS, LAKE_TABLES, SERVING_TABLES
from sixfold.platform.bus import open_bus
from sixfold.platform.lake import ArrowLake
from sixfold.platform.landing import land
from sixfold.platform.settings import Settings
from sixfold.platform.spark import spark_submit
from sixfold.platform.store import open_store

REPO = Path(__file__).resolve().parents[2]
_PHRASES = ["weather", "weather today", "weather tomorrow", "news", "new york", "netflix", "python",
            "python list", "pyspark", "kafka", "cassandra", "airflow", "maps", "music", "movies"]
_REGIONS = ["us", "eu", "in"]


def sample_search_events(n: int, start: datetime, seed: int = 7) -> list[dict[str, Any]]:
    """`n` search events over one hour from `start`, Zipf-like over a small phrase list."""
    rng = random.Random(seed)
    weights = [1 / (rank + 1) for rank in range(len(_PHRASES))]
    events = []
    for _ in range(n):
        ts = start + timedelta(milliseconds=rng.randrange(3_600_000))
        events.append({"user_id": f"u{rng.randrange(200)}", "query": rng.choices(_PHRASES, weights)[0],
                       "region": rng.choice(_REGIONS), "ts": ts.isoformat().replace("+00:00", "Z")})
    events.append({"user_id": "u1", "query": "", "region": "us", "ts": "not a time"})  # lands in the DLQ
    return events


def run_sample_pipeline(settings: Settings, events: int = 2000, say: Callable[[str], None] = print) -> dict[str, Any]:
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    end = start + timedelta(hours=1)
    bus = open_bus(settings)
    lake = ArrowLake(settings)
    generated = sample_search_events(events, start)
    bus.produce_many("search-events", [(e["user_id"], e) for e in generated])
    say(f"produced {len(generated)} search events to the bus ({settings.profile} profile)")
    report = land(bus, lake, EVENTS["search-events"], LAKE_TABLES["search_events"], group="demo-landing")
    say(f"landed {report.landed} events in {len(report.partitions)} lake partitions; "
        f"{report.rejected} rejected to search-events.dlq")
    iso = lambda t: t.isoformat().replace("+00:00", "Z")  # noqa: E731
    proc = spark_submit(REPO / "jobs" / "sample_window_counts.py", ["--start", iso(start), "--end", iso(end)], settings)
    if proc.returncode != 0:
        raise RuntimeError(f"spark-submit failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    say(proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "spark job done")
    counts = lake.read(LAKE_TABLES["sample_window_counts"], start, end).to_pylist()
    store = open_store(settings)
    loaded = store.upsert_many(SERVING_TABLES["query_counts"], counts)
    store.close()
    bus.close()
    say(f"loaded {loaded} window counts into the serving store")
    return {"events": len(generated), "landed": report.landed, "rejected": report.rejected, "counts": loaded}


def run_typeahead(settings: Settings, events: int = 20_000, say: Callable[[str], None] = print) -> dict[str, Any]:
    """Generate two hours of searches ending at the last whole hour, ingest them, build and swap the trie."""
    from sixfold.typeahead.collection import ingest_alongside, ingest_lines, read_lines
    from sixfold.typeahead.generate import default_window, write_log_jsonl
    from sixfold.typeahead.pipeline import build_until

    start, end = default_window(2)
    log = settings.var / "demo" / "search-log.jsonl"
    log.parent.mkdir(parents=True, exist_ok=True)
    write_log_jsonl(log, events, start, end, seed=7)
    say(f"typeahead: generated {events:,} searches from {start:%H:%M} to {end:%H:%M} UTC ({log})")
    bus = open_bus(settings)
    try:
        sent, landed, remembered = ingest_alongside(settings, lambda: ingest_lines(bus, read_lines(str(log))))
    finally:
        bus.close()
    say(f"typeahead: published {sent.published:,}, landed {landed.landed:,} in {len(landed.partitions)} "
        f"window partitions (users' recent queries {remembered.remembered:,}), rejected "
        f"{sent.rejected + landed.rejected} to search-events.dlq")
    result = build_until(settings, end, say=lambda m: say(f"typeahead: {m}"))
    return {"events": events, "landed": landed.landed, "rejected": sent.rejected + landed.rejected,
            "version": result["version"], "windows": len(result["windows"])}


# ---- feed ----------------------------------------------------------------------------------------
def demo_images(n: int, seed: int = 11) -> list[bytes]:
    """`n` distinct JPEG photos (gradients with a sun and a horizon), made with Pillow."""
    import io

    from PIL import Image, ImageDraw

    rng = random.Random(seed)
    images = []
    for _ in range(n):
        top, bottom = [tuple(rng.randrange(40, 250) for _ in range(3)) for _ in range(2)]
        image = Image.new("RGB", (960, 720))
        draw = ImageDraw.Draw(image)
        for y in range(720):
            t = y / 719
            draw.line([(0, y), (959, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
        x, y, r = rng.randrange(120, 840), rng.randrange(80, 360), rng.randrange(40, 110)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, rng.randrange(170, 240), rng.randrange(40, 120)))
        draw.rectangle([0, rng.randrange(430, 600), 959, 719], fill=tuple(rng.randrange(0, 90) for _ in range(3)))
        out = io.BytesIO()
        image.save(out, "JPEG", quality=85)
        images.append(out.getvalue())
    return images


def run_feed(settings: Settings, spark: Any, users: int = 300, posts: int = 1500, stories: int = 40,
             say: Callable[[str], None] = print) -> dict[str, Any]:
    """A small power-law graph with real images, posts and stories; the celebrity threshold set so the
    most-followed user is pulled, not pushed; the offline timelines job and the search index; a signed-up
    demo user (a token) following the celebrity and a few others."""
    import dataclasses
    import os

    from sixfold.feed.fanout import land_follow_events, run_fanout
    from sixfold.feed.generate import generate, write
    from sixfold.feed.graph import FollowGraph
    from sixfold.feed.media import MediaLibrary, open_blob_store
    from sixfold.feed.search import build_search_index
    from sixfold.feed.timeline_job import generate_timelines
    from sixfold.platform.identity import UserDirectory
    from sixfold.platform.worker_ids import LeasedSequencer

    data = generate(users, posts, stories, seed=5)
    counts = data.follower_counts()
    celebrity, followers = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    if "SIXFOLD_FEED_CELEBRITY_THRESHOLD" not in os.environ:  # the server started after the demo reads it too
        os.environ["SIXFOLD_FEED_CELEBRITY_THRESHOLD"] = str(followers)
        settings = dataclasses.replace(settings, feed_celebrity_threshold=followers)
    store, bus = open_store(settings), open_bus(settings)
    try:
        sequencer = LeasedSequencer(store)
        library = MediaLibrary(store, open_blob_store(settings), sequencer)
        store.upsert_many(SERVING_TABLES["users"], data.users)  # the photos' owners exist before their uploads
        photos = demo_images(16)
        authors = sorted({p["author_id"] for p in data.posts})
        media = [library.upload(authors[i % len(authors)], photo, "image/jpeg")["media_id"]
                 for i, photo in enumerate(photos)]
        rng = random.Random(5)
        for post in data.posts:
            post["media_ids"] = [str(rng.choice(media))]
        for story in data.stories:
            story["media_id"] = rng.choice(media)
        written = write(settings, data, store)
        say(f"feed: {users:,} users, {len(data.follows):,} follows (power law; user {celebrity} has {followers} "
            f"followers and is the celebrity: SIXFOLD_FEED_CELEBRITY_THRESHOLD={settings.feed_celebrity_threshold}), "
            f"{len(data.posts):,} posts with {len(photos)} real photos, {len(data.stories)} stories")
        directory = UserDirectory(store, sequencer)
        you = directory.create(f"demo_{rng.randrange(10**6)}")
        graph = FollowGraph(store, bus, settings.feed_celebrity_threshold, directory)
        followed = [celebrity, *sorted(counts, key=lambda u: -counts[u])[1:6]]
        for followee in followed:
            graph.follow(you["user_id"], followee)
        posted = run_fanout(settings, store, bus, idle_timeout_s=0.2)
        land_follow_events(settings, bus, idle_timeout_s=0.2)
        timelines = generate_timelines(spark, settings, store)
        say(f"feed: offline timelines job: {timelines['users']:,} timelines, {timelines['entries']:,} entries "
            f"({timelines['written']:,} written); the celebrity's posts are pulled at read time")
        index = build_search_index(spark, settings, store)
        say(f"feed: search index {index['hashtag_rows']:,} hashtag rows, {index['geo_rows']:,} geo rows")
    finally:
        store.close()
        bus.close()
    return {"users": users, "follows": len(data.follows), "posts": len(data.posts), "stories": len(data.stories),
            "photos": len(photos), "celebrity": celebrity, "celebrity_followers": followers,
            "serving_rows": {k: v for k, v in written.items() if isinstance(v, int)}, "pushed": posted.pushed,
            "demo_user": you["user_id"], "demo_token": you["token"], "follows_of_demo_user": followed,
            "timelines": timelines, "search_index": index}


# ---- crawler -------------------------------------------------------------------------------------
def run_crawler(settings: Settings, spark: Any, max_pages: int = 400,
                say: Callable[[str], None] = print) -> dict[str, Any]:
    """The local test site in this process (five hosts on 127.0.0.2-6, traps included), a crawl of at
    most `max_pages`, then the Spark near-duplicate job over what landed."""
    import dataclasses

    from sixfold.crawler.run import crawl
    from sixfold.crawler.site import SiteSpec
    from sixfold.crawler.site_server import serve as serve_site
    from sixfold.crawler.spark_dedup import run_dedup

    spec = SiteSpec(hosts=5, pages_per_host=50, seed=7, crawl_delay_s=0.0)
    # The site is ours and local: no per-host wait (a real crawl keeps SIXFOLD_CRAWLER_DEFAULT_DELAY_S, 1 s),
    # and its host whose robots.txt answers 500 is asked again after 1 s, not 30 s (SIXFOLD_CRAWLER_ROBOTS_RETRY_S):
    # the same three attempts before its pages are dropped, without a minute of waiting on them.
    crawl_settings = dataclasses.replace(settings, crawler_default_delay_s=0.0, crawler_robots_retry_s=1.0)
    with serve_site(spec, 0, state_dir=settings.var / "demo" / "crawl-site") as site:
        report = crawl(crawl_settings, site.seeds, max_pages, ["127.0.0.0/8"])
        truth_pages = len(site.truth.pages)
    say(f"crawler: fetched {report.pages:,} pages from 5 local hosts in {report.seconds:.1f} s "
        f"(the site has {truth_pages} real pages; {sum(report.dropped.values()):,} URLs dropped as traps, "
        f"off-site or disallowed: {', '.join(f'{k} {v}' for k, v in sorted(report.dropped.items()))})")
    dedup = run_dedup(spark, settings, datetime.now(timezone.utc))
    say(f"crawler: Spark dedup over {dedup['pages']:,} pages: {dedup['exact']} exact and {dedup['near']} near "
        f"duplicates (lake: var/lake/crawl/)")
    return {"pages": report.pages, "site_pages": truth_pages, "dropped": dict(report.dropped),
            "duplicates_seen_live": report.duplicates, "dedup": dedup}


DEMO_AGENTS = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "curl/8.5.0",
]
DEMO_REFERRERS = ["https://news.example.org/front", "https://social.example.com/post/1", None]


def run_shortener(settings: Settings, spark: Any, links: int = 200, clicks: int = 1000,
                  say: Callable[[str], None] = print) -> dict[str, Any]:
    """Through the real app in this process: a user and an API key, `links` links (one batch plus a custom
    alias), `clicks` redirects with Zipf-like popularity from a few referrers and browsers; then the clicks
    are landed and the hourly Spark job counts them, and the most clicked link's stats are read back."""
    from fastapi.testclient import TestClient

    from sixfold.api.app import create_app
    from sixfold.shortener.click_job import count_clicks, hour_floor
    from sixfold.shortener.clicks import land_clicks
    from sixfold.shortener.stats import click_stats

    rng = random.Random(3)
    started = datetime.now(timezone.utc)
    with TestClient(create_app(settings)) as client:
        made = client.post("/v1/users", json={"username": f"shortener_demo_{rng.randrange(10**6)}"}).json()
        api_key = client.post("/v1/api-keys", headers={"Authorization": f"Bearer {made['token']}"}).json()["api_key"]
        headers = {"X-Api-Key": api_key}
        urls = [{"long_url": f"https://example.com/articles/{i}?utm_source=demo"} for i in range(links - 1)]
        batch = client.post("/v1/urls:batch", json={"urls": urls}, headers=headers).json()
        keys = [r["key"] for r in batch["results"] if "key" in r]
        alias = client.post("/v1/urls", json={"long_url": "https://example.com/spring-sale",
                                              "custom_alias": f"sale-{rng.randrange(10**6)}"}, headers=headers).json()
        keys.append(alias["key"])
        weights = [1 / (rank + 1) for rank in range(len(keys))]
        followed = rng.choices(keys, weights, k=clicks)
        redirected = 0
        for key in followed:
            referer = rng.choice(DEMO_REFERRERS)
            answer = client.get(f"/{key}", follow_redirects=False, headers={
                "user-agent": rng.choice(DEMO_AGENTS), **({"referer": referer} if referer else {})})
            redirected += answer.status_code == 302
    # leaving the app published every buffered click
    landed = land_clicks(settings, idle_timeout_s=0.2)
    store = open_store(settings)
    try:
        ledger = count_clicks(spark, settings, store, hour_floor(started),
                              hour_floor(datetime.now(timezone.utc)) + timedelta(hours=1))
        top = max(set(followed), key=lambda k: (followed.count(k), k))
        stats = click_stats(store, top)
    finally:
        store.close()
    browsers = ", ".join(f"{b['family']} {b['clicks']}" for b in stats["browsers"][:3])
    say(f"shortener: {len(keys):,} links ({batch['created']:,} in one batch, alias {alias['key']!r}), "
        f"{redirected:,} redirects; {landed.landed:,} clicks landed and {ledger['distinct_clicks']:,} counted by "
        f"the url_clicks job; most clicked /{top}: {stats['total']:,} clicks "
        f"({browsers})")
    return {"links": len(keys), "alias": alias["key"], "redirects": redirected, "clicks_landed": landed.landed,
            "clicks_counted": ledger["distinct_clicks"], "top_key": top, "top_stats": stats, "api_key": api_key}


def run_chat(settings: Settings, say: Callable[[str], None] = print) -> dict[str, Any]:
    """A scripted conversation through the real gateway in this process: Ann (phone and laptop) writes to Bob
    while his phone is offline; it comes back online, gets the messages in order and ticks them delivered and
    read; Ann's phone sees the ticks live, and her laptop, offline meanwhile, gets them when it returns."""
    import json

    from fastapi.testclient import TestClient

    from sixfold.api.app import create_app

    rng = random.Random(12)
    lines = ["Are we still on for tonight?", "I booked the table for 8.", "Bring the photos from the trip!"]
    with TestClient(create_app(settings)) as client:
        users = {}
        for name in ("ann", "bob"):
            made = client.post("/v1/users", json={"username": f"chat_{name}_{rng.randrange(10**6)}"}).json()
            users[name] = (made["user_id"], {"Authorization": f"Bearer {made['token']}"})
        (ann, ann_auth), (bob, bob_auth) = users["ann"], users["bob"]

        def device(user: int, auth: dict, name: str) -> str:
            return client.post("/v1/chat/devices", json={"user_id": user, "device_id": name}, headers=auth).json()["token"]

        ann_phone, ann_laptop, bob_phone = device(ann, ann_auth, "phone"), device(ann, ann_auth, "laptop"), \
            device(bob, bob_auth, "phone")
        with client.websocket_connect(f"/v1/chat/ws?token={ann_phone}") as phone:
            for i, line in enumerate(lines):
                phone.send_text(json.dumps({"type": "send", "client_msg_id": f"demo-{i}", "to": bob, "body": line}))
                assert phone.receive_json()["status"] == "sent"
            say(f"chat: Ann sent {len(lines)} messages to Bob, whose phone is offline: each ticked 'sent' (stored)")
            with client.websocket_connect(f"/v1/chat/ws?token={bob_phone}") as bob_ws:
                got = [bob_ws.receive_json() for _ in lines]
                for frame in got:
                    for status in ("delivered", "read"):
                        bob_ws.send_text(json.dumps({"type": "ack", "message_id": frame["message_id"],
                                                     "status": status}))
                ticks = [phone.receive_json()["status"] for _ in range(2 * len(lines))]
            say(f"chat: Bob's phone came back online and got {len(got)} pending messages in order "
                f"(seq {[f['seq'] for f in got]}); Ann's phone saw the ticks live: {' '.join(ticks)}")
        with client.websocket_connect(f"/v1/chat/ws?token={ann_laptop}") as laptop:
            later = [laptop.receive_json() for _ in range(len(lines) * 3)]
        kinds = [f["type"] if f["type"] == "message" else f["status"] for f in later]
        say(f"chat: Ann's laptop, offline meanwhile, caught up on return: {kinds.count('message')} of her own "
            f"messages and {len(kinds) - kinds.count('message')} receipts")
        conversation = got[0]["conversation_id"]
        history = client.get(f"/v1/chat/conversations/{conversation}/messages", headers=bob_auth).json()
    return {"ann": ann, "bob": bob, "conversation_id": conversation, "messages": [f["body"] for f in got],
            "ticks_seen_live": ticks, "laptop_caught_up": kinds, "history": len(history["messages"])}


def run_docs(settings: Settings, say: Callable[[str], None] = print, edits: int = 300) -> dict[str, Any]:
    """A document written by two people at once over the WebSocket: Ann (the owner) and Bob (an editor)
    each replay half of a few hundred edits concurrently, their clients ending with the server's text;
    then Ann restores an early version (a new version with that content) and the history is printed."""
    import threading

    from fastapi.testclient import TestClient
    from loro import ExportMode, LoroDoc

    from sixfold.api.app import create_app

    rng = random.Random(13)
    words = "the quick brown fox jumps over a lazy dog while two writers share one page".split()
    with TestClient(create_app(settings)) as client:
        users = {}
        for name in ("ann", "bob"):
            made = client.post("/v1/users", json={"username": f"docs_{name}_{rng.randrange(10**6)}"}).json()
            users[name] = (made["user_id"], made["token"], {"Authorization": f"Bearer {made['token']}"})
        (ann, ann_token, ann_auth), (bob, bob_token, _) = users["ann"], users["bob"]
        doc = client.post("/v1/docs", json={"title": "Trip plan"}, headers=ann_auth).json()["doc_id"]
        client.post(f"/v1/docs/{doc}/members", json={"user_id": bob, "role": "editor"}, headers=ann_auth)
        client.post(f"/v1/docs/{doc}/edits", json=[[0, 0, "Trip plan\n"]], headers=ann_auth)
        finals: dict[str, str] = {}
        both_done = threading.Barrier(2)

        def writer(name: str, token: str, seed: int) -> None:
            local = random.Random(seed)
            with client.websocket_connect(f"/v1/docs/{doc}/ws?token={token}") as ws:
                replica = LoroDoc()
                ws.send_json({"type": "hello", "vv": None})
                replica.import_(ws.receive_bytes())
                ws.receive_json()  # synced
                text, sent, acks = replica.get_text("content"), replica.oplog_vv, 0
                for i in range(edits // 2):
                    n = text.len_unicode
                    if n > 40 and local.random() < 0.25:
                        pos = local.randrange(n - 5)
                        text.delete(pos, local.randrange(1, 5))
                    else:
                        text.insert(local.randrange(n + 1), local.choice(words) + " ")
                    replica.commit()
                    ws.send_bytes(replica.export(ExportMode.Updates(from_=sent)))
                    sent = replica.oplog_vv
                    while True:  # take what arrived meanwhile, up to this edit's ack
                        frame = ws.receive()
                        if frame.get("bytes") is not None:
                            replica.import_(frame["bytes"])
                        elif '"ack"' in frame.get("text", ""):
                            acks += 1
                            break
                both_done.wait()  # the other's last update is acked, so forwarded here before the pong
                ws.send_json({"type": "ping"})
                while True:
                    frame = ws.receive()
                    if frame.get("bytes") is not None:
                        replica.import_(frame["bytes"])
                    elif '"pong"' in frame.get("text", ""):
                        break
                finals[name] = text.to_string()

        threads = [threading.Thread(target=writer, args=(n, t, s)) for n, t, s in (("ann", ann_token, 1),
                                                                                   ("bob", bob_token, 2))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        server = client.get(f"/v1/docs/{doc}", headers=ann_auth).json()
        say(f"docs: Ann and Bob replayed {edits} edits at once over the WebSocket: version {server['version']}, "
            f"{len(server['content'])} characters; both clients equal the server: "
            f"{finals.get('ann') == finals.get('bob') == server['content']}")
        target = 40
        restored = client.post(f"/v1/docs/{doc}/restore", json={"version": target}, headers=ann_auth).json()["version"]
        after = client.get(f"/v1/docs/{doc}", headers=ann_auth).json()
        say(f"docs: Ann restored version {target} as version {restored} ({len(after['content'])} characters; "
            "nothing erased: every version stays in the history)")
        history = client.get(f"/v1/docs/{doc}/history", params={"limit": 5}, headers=ann_auth).json()["versions"]
        names = {ann: "ann", bob: "bob"}
        for v in history:
            say(f"docs:   v{v['version']:<4} {names.get(v['author_id'], v['author_id'])} {v['at']} {v['summary']}")
    return {"doc_id": doc, "owner_token": ann_token, "edits": edits, "version": server["version"],
            "converged": finals.get("ann") == finals.get("bob") == server["content"], "restored_version": restored,
            "restored_to": target, "history": [v["version"] for v in history], "content": after["content"]}
