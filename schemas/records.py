"""Record declarations. Add a system's records here; never write a schema anywhere else.

Field types are a small closed vocabulary that every target can express:
`string`, `int` (32-bit), `long` (64-bit), `double`, `bool`, `timestamp` (UTC, millisecond precision),
`bytes`, and `list<string>`.
"""

from __future__ import annotations

from dataclasses import dataclass

FIELD_TYPES = ("string", "int", "long", "double", "bool", "timestamp", "bytes", "list<string>")


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    required: bool = True
    doc: str = ""
    max_length: int | None = None  # strings only; enforced by event validation

    def __post_init__(self) -> None:
        if self.type not in FIELD_TYPES:
            raise ValueError(f"field {self.name!r}: type {self.type!r} is not one of {FIELD_TYPES}")
        if not self.name.isidentifier():
            raise ValueError(f"field name {self.name!r} must be an identifier")


@dataclass(frozen=True)
class Record:
    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"{self.name} has no field {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)


@dataclass(frozen=True)
class Event:
    """A record that travels on the event log under `topic` (dead letters go to `topic.dlq`)."""

    topic: str
    record: Record
    key: str | None = None  # field used as the message key (partitioning)

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"


@dataclass(frozen=True)
class ServingTable:
    """A serving-store table: rows addressed by partition key, ordered by clustering key."""

    name: str
    record: Record
    partition_key: tuple[str, ...]
    clustering_key: tuple[str, ...] = ()
    clustering_descending: bool = False

    def __post_init__(self) -> None:
        for col in (*self.partition_key, *self.clustering_key):
            f = self.record.field(col)
            if not f.required:
                raise ValueError(f"{self.name}: key column {col!r} must be required")
            if f.type == "list<string>":
                raise ValueError(f"{self.name}: key column {col!r} cannot be a list")

    @property
    def primary_key(self) -> tuple[str, ...]:
        return (*self.partition_key, *self.clustering_key)


@dataclass(frozen=True)
class LakeTable:
    """A Parquet dataset under `var/lake/<path>`, partitioned by event time."""

    path: str
    record: Record
    time_field: str
    partitioning: str = "hour"  # "hour" (dt=/hour=) or "window15" (dt=/window=HHMM)


# ---- platform ------------------------------------------------------------------------------
DEAD_LETTER = Record(
    "dead_letter",
    (
        Field("topic", "string", doc="topic the message came from"),
        Field("reason", "string", doc="why it was rejected, meant for a person"),
        Field("payload", "string", doc="the original message, verbatim"),
        Field("failed_at", "timestamp"),
    ),
    doc="A message that could not be processed, with the reason.",
)

# ---- typeahead (collection) ------------------------------------------------------------------
SEARCH_EVENT = Record(
    "search_event",
    (
        Field("user_id", "string", max_length=128),
        Field("query", "string", max_length=200, doc="normalised: NFKC, lower case, whitespace collapsed"),
        Field("region", "string", max_length=32),
        Field("ts", "timestamp"),
    ),
    doc="One search a user typed.",
)

QUERY_COUNT = Record(
    "query_count",
    (
        Field("region", "string"),
        Field("window_start", "timestamp"),
        Field("query", "string"),
        Field("count", "long"),
    ),
    doc="How often a query was searched in one region during one window.",
)

PHRASE_FREQUENCY = Record(
    "phrase_frequency",
    (
        Field("region", "string", doc="a region, or 'global' for all regions together"),
        Field("window_start", "timestamp", doc="the state is as of the end of this 15-minute window"),
        Field("query", "string"),
        Field("freq", "double", doc="exponentially decayed search count"),
    ),
    doc="Running, time-decayed frequency of a phrase: the aggregator's state between windows.",
)

# ---- typeahead (serving) -----------------------------------------------------------------------
USER_RECENT_QUERY = Record(
    "user_recent_query",
    (
        Field("user_id", "string"),
        Field("ts", "timestamp"),
        Field("query", "string"),
        Field("region", "string"),
    ),
    doc="A user's own recent searches, kept for personalised suggestions (rows expire by TTL).",
)
TYPEAHEAD_SHARD_OWNER = Record(
    "typeahead_shard_owner",
    (Field("shard", "int", doc="a shard id of the trie (the same id in every region)"),
     Field("url", "string", doc="base URL of a server answering that shard, as its peers reach it"),
     Field("server", "string", doc="host:pid:random of the process that last renewed the row"),
     Field("renewed_at", "timestamp")),
    doc="The typeahead shard map: which servers own each shard; a lease the server keeps renewing (TTL), "
        "so a dead one drops out.",
)

# ---- feed (Instagram) -------------------------------------------------------------------------
USER = Record(
    "user",
    (Field("user_id", "long"), Field("username", "string", max_length=64), Field("created_at", "timestamp")),
    doc="An account; user_id comes from the sequencer.",
)
USERNAME = Record(
    "username",
    (Field("username", "string", max_length=64), Field("user_id", "long")),
    doc="Username -> user id, so a username is taken once.",
)
CREDENTIAL = Record(
    "credential",
    (
        Field("credential_id", "string", max_length=32, doc="the public half of a token, before the '.'"),
        Field("user_id", "long", doc="whose token it is: every request carrying it acts as this user"),
        Field("kind", "string", max_length=16, doc="user (bearer), api_key (shortener) or device (chat)"),
        Field("salt", "string", doc="16 random bytes, hex"),
        Field("digest", "string", doc="HMAC-SHA256(salt, secret), hex; the secret itself is never stored"),
        Field("label", "string", required=False, max_length=64, doc="e.g. a chat device id"),
        Field("created_at", "timestamp"),
    ),
    doc="A bearer secret issued once (user token, shortener API key, chat device token), kept as a salted hash.",
)
FOLLOW = Record(
    "follow",
    (Field("follower_id", "long"), Field("followee_id", "long"), Field("created_at", "timestamp")),
    doc="follower_id follows followee_id (unidirectional).",
)
FOLLOW_EVENT = Record(
    "follow_event",
    (Field("follower_id", "long"), Field("followee_id", "long"), Field("action", "string", doc="follow or unfollow"),
     Field("at", "timestamp")),
    doc="A change of the follow graph; the lake keeps them all, so the graph at any time can be rebuilt.",
)
FOLLOWER_COUNT = Record(
    "follower_count",
    (Field("user_id", "long"), Field("followers", "long")),
    doc="How many followers a user has (decides push or pull at fanout).",
)
SEQUENCER_WORKER = Record(
    "sequencer_worker",
    (Field("worker", "int", doc="0..1023, the 10 worker bits of every id this holder makes"),
     Field("owner", "string", doc="host:pid:random of the process holding the lease"),
     Field("claimed_at", "timestamp")),
    doc="A sequencer worker id leased to one process (the row expires with the lease).",
)
FOLLOW_VERSION = Record(
    "follow_version",
    (Field("user_id", "long"),
     Field("version", "long", doc="a fresh random number on every change of whom the user follows")),
    doc="Stamps a follower's followee list: a reader's cached answer built from that list is good while it stands.",
)
TIMELINE_VERSION = Record(
    "timeline_version",
    (Field("user_id", "long"),
     Field("version", "long", doc="a fresh random number on every change of the user's timeline rows or own posts")),
    doc="Stamps what a home timeline is built from besides the follows: entries pushed to the user (fanout, "
        "a follow's recent posts, the offline job, a deletion) and the user's own posts. A reader's kept page is "
        "good while this stamp and the follow stamp stand.",
)
CELEBRITY = Record(
    "celebrity",
    (Field("shard", "int", doc="always 0: the few celebrities are one partition, read whole"),
     Field("user_id", "long"), Field("followers", "long", doc="the count when the row was written")),
    doc="An author at or above the celebrity threshold: their posts are pulled at read time, not pushed.",
)
MEDIA = Record(
    "media",
    (
        Field("media_id", "long"),
        Field("owner_id", "long"),
        Field("sha256", "string", doc="content hash of the original; the blob's name"),
        Field("content_type", "string"),
        Field("width", "int"),
        Field("height", "int"),
        Field("size_bytes", "long"),
        Field("created_at", "timestamp"),
    ),
    doc="An uploaded image: metadata here, bytes in the blob store by content hash.",
)
POST = Record(
    "post",
    (
        Field("post_id", "long", doc="from the sequencer: later posts have larger ids"),
        Field("author_id", "long"),
        Field("created_at", "timestamp"),
        Field("caption", "string", required=False, max_length=2200),
        Field("media_ids", "list<string>", required=False),
        Field("hashtags", "list<string>", required=False),
        Field("lat", "double", required=False),
        Field("lon", "double", required=False),
    ),
    doc="A post; also the `post-created` event.",
)
POST_DELETION = Record(
    "post_deletion",
    (
        Field("post_id", "long"),
        Field("author_id", "long"),
        Field("deleted_at", "timestamp"),
        Field("media_ids", "list<string>", required=False, doc="the post's media: released when nothing else uses them"),
        Field("hashtags", "list<string>", required=False, doc="the post's hashtags: its search rows to remove"),
        Field("lat", "double", required=False),
        Field("lon", "double", required=False),
    ),
    doc="A post its author deleted; also the `post-deleted` event, and the tombstone readers check before "
        "showing a post they kept. It carries what the post indexed and used, since the post's own row is gone "
        "by the time a consumer reads it.",
)
TIMELINE_ENTRY = Record(
    "timeline_entry",
    (Field("user_id", "long"), Field("post_id", "long"), Field("author_id", "long")),
    doc="A post pushed into (or regenerated for) a follower's precomputed timeline.",
)
AUTHOR_POST = Record(
    "author_post",
    (Field("author_id", "long"), Field("post_id", "long")),
    doc="A user's own posts, newest first (the pull side of the hybrid timeline).",
)
HASHTAG_POST = Record(
    "hashtag_post",
    (Field("tag", "string", max_length=100), Field("post_id", "long"), Field("author_id", "long")),
    doc="Hashtag search index.",
)
GEO_POST = Record(
    "geo_post",
    (Field("cell", "string", doc="geohash cell"), Field("post_id", "long"), Field("lat", "double"),
     Field("lon", "double")),
    doc="Geo search index by geohash cell.",
)
STORY = Record(
    "story",
    (
        Field("author_id", "long"),
        Field("story_id", "long"),
        Field("media_id", "long"),
        Field("created_at", "timestamp"),
        Field("expires_at", "timestamp", doc="created_at + 24 h: reads hide it from then on"),
    ),
    doc="A story, visible for exactly 24 hours.",
)

# ---- crawler ---------------------------------------------------------------------------------
CRAWL_PAGE = Record(
    "crawl_page",
    (
        Field("url", "string", doc="the canonical URL fetched"),
        Field("final_url", "string", doc="where the response came from: a redirect's canonical target, else url"),
        Field("status", "int", doc="HTTP status; 0 when no response arrived (see error)"),
        Field("fetched_at", "timestamp"),
        Field("cycle_id", "string", doc="the crawl cycle (one `crawl run`) that fetched it"),
        Field("depth", "int", doc="link hops from a seed"),
        Field("content_type", "string", required=False),
        Field("content_sha256", "string", required=False, doc="hex digest of the body; the blob's name"),
        Field("simhash", "long", required=False, doc="64-bit SimHash of the visible text, as a signed long"),
        Field("title", "string", required=False),
        Field("description", "string", required=False, doc="<meta name=description>"),
        Field("text", "string", required=False, doc="visible text; only on originals (duplicates point to one)"),
        Field("out_links", "list<string>", required=False, doc="canonical links followed from the page"),
        Field("duplicate_of", "string", required=False, doc="url of the original when this page is a duplicate"),
        Field("duplicate_kind", "string", required=False, doc="exact (same sha256) or near (SimHash distance)"),
        Field("error", "string", required=False, doc="why no usable response arrived, meant for a person"),
        Field("bytes", "long", required=False, doc="body size read"),
        Field("fetch_ms", "double", required=False, doc="request latency"),
    ),
    doc="One fetch of one URL by the crawler.",
)
CRAWL_FRONTIER_ENTRY = Record(
    "crawl_frontier_entry",
    (
        Field("url", "string", doc="canonical URL; a row here means the URL was seen"),
        Field("host", "string"),
        Field("state", "string", doc="queued, done, or dropped"),
        Field("priority", "int", doc="front-queue level: 0 seeds, 1 revisits, 2 + depth for links"),
        Field("depth", "int"),
        Field("host_depth", "int", doc="link hops since the crawl entered this host"),
        Field("discovered_at", "timestamp"),
        Field("next_fetch_at", "timestamp", doc="not fetched before this time (revisit schedule)"),
        Field("interval_s", "double", doc="current revisit interval"),
        Field("fetch_count", "int"),
        Field("change_count", "int", doc="fetches whose content differed from the previous one"),
        Field("last_fetched_at", "timestamp", required=False),
        Field("content_sha256", "string", required=False, doc="checksum at the last fetch"),
        Field("found_on", "string", required=False, doc="the page that linked here"),
        Field("redirect_chain", "list<string>", required=False, doc="URLs that redirected here, oldest first"),
    ),
    doc="The crawler's persisted frontier and URL seen-set: written before a URL counts as queued.",
)
CRAWL_CHECKSUM = Record(
    "crawl_checksum",
    (Field("content_sha256", "string"), Field("url", "string", doc="the first page with this content"),
     Field("first_seen_at", "timestamp")),
    doc="Document checksum -> original page (exact-duplicate elimination).",
)
CRAWL_SIMHASH_BAND = Record(
    "crawl_simhash_band",
    (Field("band", "int", doc="which 16-bit slice of the SimHash"), Field("band_value", "int"),
     Field("url", "string"), Field("simhash", "long")),
    doc="Banded SimHash index: near duplicates share at least one band exactly.",
)
CRAWL_ROBOTS = Record(
    "crawl_robots",
    (
        Field("host", "string"),
        Field("status", "int", doc="HTTP status of robots.txt (2xx: parsed, 4xx: allow all)"),
        Field("body", "string", required=False, doc="the robots.txt text of a 2xx answer"),
        Field("fetched_at", "timestamp"),
    ),
    doc="A host's last readable robots.txt answer, so the next crawl run reuses it within its TTL.",
)
CRAWL_DROP = Record(
    "crawl_drop",
    (
        Field("reason", "string", doc="depth, host_budget, url_length, repeated_segment, query_explosion, "
                                      "session_id, redirect_loop, redirect_limit, robots"),
        Field("url", "string"),
        Field("host", "string"),
        Field("dropped_at", "timestamp"),
        Field("cycle_id", "string"),
        Field("detail", "string", required=False, doc="the limit and the value that broke it"),
        Field("found_on", "string", required=False),
    ),
    doc="A URL the crawler refused, with the reason (traps, robots.txt).",
)
CRAWL_OFFER = Record(
    "crawl_offer",
    (
        Field("partitions", "int", doc="how many workers the crawl is partitioned over (N of i/N)"),
        Field("partition", "int", doc="the worker whose hosts the URL's host hashes to (i of i/N)"),
        Field("url", "string"),
        Field("host", "string"),
        Field("priority", "int"),
        Field("depth", "int"),
        Field("host_depth", "int"),
        Field("found_on", "string", required=False),
        Field("redirect_chain", "list<string>", required=False),
        Field("offered_by", "int", doc="the partition of the worker that found the link"),
        Field("offered_at", "timestamp"),
    ),
    doc="A link one crawl worker found for another's hosts: that worker's inbox, emptied into its frontier.",
)
CRAWL_WORKER = Record(
    "crawl_worker",
    (
        Field("partitions", "int"),
        Field("partition", "int"),
        Field("round", "int", doc="which run of the N workers this row belongs to (all N share it)"),
        Field("state", "string", doc="busy, idle (nothing left, waiting for offers) or done"),
        Field("activity", "long", doc="times the worker took offers this round: a change means it worked"),
        Field("heartbeat_at", "timestamp", doc="the worker was alive then (a silent busy worker is dead)"),
        Field("worker", "string", doc="host:pid of the process"),
    ),
    doc="A partitioned crawl's workers, so each knows when every one is out of work.",
)
CRAWL_DUPLICATE = Record(
    "crawl_duplicate",
    (
        Field("url", "string", doc="a page whose latest fetch duplicates an earlier page"),
        Field("duplicate_of", "string", doc="the earliest page (by fetched_at, then url) within the distance"),
        Field("kind", "string", doc="exact (same sha256) or near (SimHash within the distance)"),
        Field("distance", "int", doc="Hamming distance of the two SimHashes"),
        Field("as_of", "timestamp", doc="the dedup run this answer belongs to"),
    ),
    doc="The Spark dedup job's verdict over every crawled page (jobs/crawl_dedup.py).",
)

# ---- shortener -----------------------------------------------------------------------------------
SHORT_URL = Record(
    "short_url",
    (
        Field("key", "string", max_length=64, doc="the short key: base-58 of a generated id, or a custom alias"),
        Field("long_url", "string", required=False, max_length=2048, doc="absent once deleted or expired"),
        Field("owner_id", "long", doc="the user whose API key created it"),
        Field("created_at", "timestamp"),
        Field("expire_at", "timestamp", doc="redirects answer 410 from this instant on"),
        Field("state", "string", doc="active, deleted or expired (a tombstone: the key is never issued again)"),
        Field("custom", "bool", doc="a custom alias rather than a generated key"),
    ),
    doc="A short key and where it leads; deleted and expired keys stay as tombstones.",
)
URL_EXPIRY = Record(
    "url_expiry",
    (Field("day", "string", doc="UTC day of expire_at, YYYY-MM-DD"), Field("key", "string")),
    doc="Short keys by the day they expire, so the purge reads only the days that are over.",
)
URL_ID_COUNTER = Record(
    "url_id_counter",
    (Field("name", "string"), Field("leased", "long", required=False,
                                    doc="counters leased so far: the next lease starts here")),
    doc="The end of the generated-key counters leased by the API processes (each counter once, whatever the block size).",
)
SHORTENER_SECRET = Record(
    "shortener_secret",
    (Field("name", "string"), Field("secret", "string", doc="hex; keys the permutation of counters to ids"),
     Field("created_at", "timestamp")),
    doc="The secret every API process shares so generated keys are unpredictable but never collide.",
)
URL_CLICK_EVENT = Record(
    "url_click_event",
    (
        Field("click_id", "string", max_length=32, doc="random, made at the redirect: a replayed event collapses on it"),
        Field("key", "string", max_length=64),
        Field("ts", "timestamp"),
        Field("referrer_host", "string", required=False, max_length=255, doc="host of the Referer header"),
        Field("user_agent", "string", required=False, max_length=512, doc="the User-Agent header, cut to 512"),
    ),
    doc="One redirect served, as the API emits it.",
)
URL_CLICK = Record(
    "url_click",
    (
        Field("click_id", "string", max_length=32),
        Field("key", "string", max_length=64),
        Field("ts", "timestamp"),
        Field("referrer_host", "string", doc="host of the Referer header, or '(direct)'"),
        Field("ua_family", "string", doc="browser family by ua-parser (e.g. Chrome, curl), or 'Other'"),
    ),
    doc="One redirect, landed in the lake with the user-agent family resolved.",
)
URL_CLICK_COUNT = Record(
    "url_click_count",
    (
        Field("key", "string"),
        Field("hour", "timestamp", doc="start of the UTC hour"),
        Field("referrer_host", "string"),
        Field("ua_family", "string"),
        Field("clicks", "long"),
    ),
    doc="Redirects of one key in one hour from one referrer host and browser family (jobs/url_clicks.py).",
)

# ---- chat ------------------------------------------------------------------------------------------
CHAT_DEVICE = Record(
    "chat_device",
    (
        Field("user_id", "long"),
        Field("device_id", "string", max_length=64),
        Field("public_key", "string", required=False, max_length=64,
              doc="the device's X25519 public key, base64 (end-to-end encryption; the private key never leaves it)"),
        Field("credential_id", "string", doc="its device token's credential (revoked when re-registered)"),
        Field("created_at", "timestamp"),
    ),
    doc="A user's chat device: what a device token acts for, and where messages to the user go.",
)
CHAT_MESSAGE = Record(
    "chat_message",
    (
        Field("conversation_id", "string", max_length=64, doc="d:<low user>:<high user> or g:<group id>"),
        Field("seq", "long", doc="1, 2, 3, ... per conversation: its strict order"),
        Field("message_id", "long", doc="from the sequencer"),
        Field("sender_id", "long"),
        Field("sender_device", "string"),
        Field("client_msg_id", "string", max_length=64),
        Field("body", "string", doc="opaque to the server: ciphertext when the clients encrypt"),
        Field("sent_at", "timestamp"),
    ),
    doc="A message as the server keeps it (30 days, the chat_retention DAG).",
)
CHAT_MESSAGE_REF = Record(
    "chat_message_ref",
    (Field("message_id", "long"), Field("conversation_id", "string"), Field("seq", "long"),
     Field("sender_id", "long"), Field("client_msg_id", "string"), Field("sent_at", "timestamp")),
    doc="Where a message id lives (receipts name only the id).",
)
CHAT_SENT = Record(
    "chat_sent",
    (
        Field("sender_id", "long"), Field("sender_device", "string"), Field("client_msg_id", "string"),
        Field("conversation_id", "string"), Field("seq", "long"), Field("message_id", "long"),
    ),
    doc="A device's client_msg_id -> the message it made, so a resend is never a duplicate.",
)
CHAT_PENDING = Record(
    "chat_pending",
    (
        Field("user_id", "long"),
        Field("device_id", "string"),
        Field("entry", "string", doc="<conversation>|<seq, 20 digits>|<m or r:status:user:device>: delivery order"),
        Field("frame", "string", doc="the server frame to send, JSON"),
        Field("queued_at", "timestamp"),
    ),
    doc="What a device has not acknowledged yet: messages, and receipts for messages it sent.",
)
CHAT_RECEIPT = Record(
    "chat_receipt",
    (
        Field("conversation_id", "string"), Field("seq", "long"), Field("user_id", "long"),
        Field("device_id", "string"), Field("status", "string", doc="delivered or read"), Field("at", "timestamp"),
    ),
    doc="Each recipient device's receipt for a message (per member in groups).",
)
CHAT_SEQUENCE = Record(
    "chat_sequence",
    (Field("conversation_id", "string"), Field("last_seq", "long", required=False)),
    doc="The last sequence number of a conversation (the store's atomic add hands out the next).",
)
CHAT_CONNECTION = Record(
    "chat_connection",
    (Field("user_id", "long"), Field("device_id", "string"), Field("gateway", "string"),
     Field("connected_at", "timestamp")),
    doc="Which gateway process holds a device's WebSocket (the course's WebSocket manager); kept alive by TTL.",
)
CHAT_GROUP = Record(
    "chat_group",
    (Field("group_id", "long"), Field("name", "string", max_length=100), Field("owner_id", "long"),
     Field("created_at", "timestamp")),
    doc="A group conversation.",
)
CHAT_MEMBER = Record(
    "chat_member",
    (Field("group_id", "long"), Field("user_id", "long"), Field("role", "string", doc="owner or member"),
     Field("joined_at", "timestamp")),
    doc="A member of a group.",
)
CHAT_CONVERSATION_DAY = Record(
    "chat_conversation_day",
    (Field("day", "string", doc="UTC day, YYYY-MM-DD"), Field("conversation_id", "string")),
    doc="Conversations that had messages on a day, so retention reads only the days past 30.",
)
CHAT_DELIVERY = Record(
    "chat_delivery",
    (
        Field("gateway", "string", doc="the gateway process that holds the device"),
        Field("user_id", "long"), Field("device_id", "string"),
        Field("entry", "string"), Field("frame", "string"),
    ),
    doc="A frame for a device held by another gateway, routed through the event log.",
)
CHAT_GROUP_MESSAGE = Record(
    "chat_group_message",
    (Field("group_id", "long"), Field("conversation_id", "string"), Field("seq", "long"),
     Field("sender_id", "long"), Field("sender_device", "string"), Field("frame", "string")),
    doc="A group message to fan out to every member's devices (a stream consumer, keyed by group).",
)
CHAT_NOTIFICATION = Record(
    "chat_notification",
    (Field("user_id", "long"), Field("device_id", "string"), Field("conversation_id", "string"),
     Field("message_id", "long"), Field("at", "timestamp")),
    doc="A push notification for an offline device: the integration point for a real sender (APNs, FCM).",
)

# ---- docs (Google Docs) -------------------------------------------------------------------------
DOC = Record(
    "doc",
    (Field("doc_id", "string", max_length=32, doc="decimal text of a sequencer id (a string: JavaScript's numbers "
                                                   "cannot hold 64 bits)"),
     Field("title", "string", max_length=200), Field("owner_id", "long", doc="the creator"),
     Field("public", "bool", doc="anyone may read it (writing still needs an editor's role)"),
     Field("created_at", "timestamp")),
    doc="A collaborative document; its text lives in the update log and snapshots (Loro).",
)
DOC_MEMBER = Record(
    "doc_member",
    (Field("doc_id", "string"), Field("user_id", "long"), Field("role", "string", doc="owner, editor or viewer"),
     Field("added_at", "timestamp")),
    doc="Who may read (viewer) or also write (editor, owner) a document.",
)
DOC_SEQUENCE = Record(
    "doc_sequence",
    (Field("doc_id", "string"), Field("last_version", "long", required=False)),
    doc="The last version of a document: the number of updates made durable (the store's atomic add hands out the next).",
)
DOC_UPDATE = Record(
    "doc_update",
    (
        Field("doc_id", "string"),
        Field("version", "long", doc="1, 2, 3, ... per document"),
        Field("author_id", "long"),
        Field("at", "timestamp"),
        Field("update", "bytes", doc="Loro update bytes (ExportMode.Updates since the state before it)"),
        Field("frontiers", "bytes", doc="Loro frontiers of the document right after it (Frontiers.encode())"),
        Field("summary", "string", doc="what it changed, for people: '+12 -3 chars'"),
    ),
    doc="One durable update of a document, appended before it is acknowledged; compaction folds old ones into a snapshot.",
)
DOC_VERSION = Record(
    "doc_version",
    (Field("doc_id", "string"), Field("version", "long"), Field("author_id", "long"), Field("at", "timestamp"),
     Field("frontiers", "bytes"), Field("summary", "string")),
    doc="A version whose update row compaction folded into a snapshot: what the history still shows of it.",
)
DOC_SNAPSHOT = Record(
    "doc_snapshot",
    (
        Field("doc_id", "string"),
        Field("version", "long", doc="the last update folded in"),
        Field("snapshot", "bytes", doc="Loro ExportMode.Snapshot, or ShallowSnapshot past the retained history"),
        Field("restorable_from", "long", doc="the oldest version whose content can still be restored (0: all)"),
        Field("made_at", "timestamp"),
    ),
    doc="A document's update log folded into one Loro snapshot (the docs_compaction DAG); load = it + later updates.",
)
DOC_COMMENT = Record(
    "doc_comment",
    (
        Field("doc_id", "string"), Field("comment_id", "long"), Field("author_id", "long"),
        Field("text", "string", max_length=10_000),
        Field("start_cursor", "bytes", doc="Loro cursor on the range's first character"),
        Field("end_cursor", "bytes", doc="Loro cursor on the range's last character"),
        Field("quote", "string", doc="the text of the range when the comment was made"),
        Field("at", "timestamp"),
    ),
    doc="A comment anchored to a range of a document by Loro cursors, so it follows concurrent edits.",
)
DOC_UPDATE_EVENT = Record(
    "doc_update_event",
    (Field("doc_id", "string"), Field("version", "long"), Field("author_id", "long"), Field("at", "timestamp"),
     Field("origin", "string", doc="the serving process that made it durable (it skips its own)"),
     Field("update", "bytes", doc="Loro update bytes")),
    doc="A durable document update, for the other serving processes' in-memory copies and their connections.",
)
DOC_VIEW_EVENT = Record(
    "doc_view_event",
    (Field("view_id", "string", max_length=32, doc="random, made at the view: a replayed event collapses on it"),
     Field("doc_id", "string", max_length=32), Field("user_id", "long", required=False, doc="absent: anonymous"),
     Field("source", "string", max_length=8, doc="http (a GET of the document) or ws (a WebSocket join)"),
     Field("ts", "timestamp")),
    doc="A document was read: the `doc-viewed` event, landed in the lake as it is.",
)
DOC_VIEW_COUNT = Record(
    "doc_view_count",
    (Field("doc_id", "string"), Field("day", "timestamp", doc="start of the UTC day"), Field("views", "long")),
    doc="Views of one document on one UTC day (jobs/docs_views.py).",
)

EVENTS: dict[str, Event] = {
    "search-events": Event("search-events", SEARCH_EVENT, key="user_id"),
    "post-created": Event("post-created", POST, key="author_id"),
    "post-deleted": Event("post-deleted", POST_DELETION, key="author_id"),
    "follows": Event("follows", FOLLOW_EVENT, key="follower_id"),
    "url-clicks": Event("url-clicks", URL_CLICK_EVENT, key="key"),
    "chat-deliveries": Event("chat-deliveries", CHAT_DELIVERY, key="gateway"),
    "chat-group-messages": Event("chat-group-messages", CHAT_GROUP_MESSAGE, key="conversation_id"),
    "notifications": Event("notifications", CHAT_NOTIFICATION, key="user_id"),
    "docs-updates": Event("docs-updates", DOC_UPDATE_EVENT, key="doc_id"),
    "doc-viewed": Event("doc-viewed", DOC_VIEW_EVENT, key="doc_id"),
}

LAKE_TABLES: dict[str, LakeTable] = {
    "search_events": LakeTable("typeahead/search_events", SEARCH_EVENT, time_field="ts", partitioning="window15"),
    "query_counts": LakeTable("typeahead/query_counts", QUERY_COUNT, time_field="window_start", partitioning="window15"),
    # the platform's sample job (jobs/sample_window_counts.py) writes its own copy, apart from typeahead's
    "sample_window_counts": LakeTable("sample/window_counts", QUERY_COUNT, time_field="window_start",
                                      partitioning="window15"),
    "posts": LakeTable("feed/posts", POST, time_field="created_at", partitioning="hour"),
    "post_deletions": LakeTable("feed/post_deletions", POST_DELETION, time_field="deleted_at", partitioning="hour"),
    "follow_events": LakeTable("feed/follow_events", FOLLOW_EVENT, time_field="at", partitioning="hour"),
    "phrase_frequencies": LakeTable("typeahead/phrase_frequencies", PHRASE_FREQUENCY, time_field="window_start",
                                    partitioning="window15"),
    "crawl_pages": LakeTable("crawl/pages", CRAWL_PAGE, time_field="fetched_at", partitioning="hour"),
    "crawl_duplicates": LakeTable("crawl/duplicates", CRAWL_DUPLICATE, time_field="as_of", partitioning="hour"),
    "url_clicks": LakeTable("shortener/clicks", URL_CLICK, time_field="ts", partitioning="hour"),
    "url_click_counts": LakeTable("shortener/click_counts", URL_CLICK_COUNT, time_field="hour", partitioning="hour"),
    "doc_views": LakeTable("docs/views", DOC_VIEW_EVENT, time_field="ts", partitioning="hour"),
    "doc_view_counts": LakeTable("docs/view_counts", DOC_VIEW_COUNT, time_field="day", partitioning="hour"),
}

SERVING_TABLES: dict[str, ServingTable] = {
    "query_counts": ServingTable("query_counts", QUERY_COUNT, partition_key=("region",),
                                 clustering_key=("window_start", "query"), clustering_descending=True),
    "users": ServingTable("users", USER, partition_key=("user_id",)),
    "usernames": ServingTable("usernames", USERNAME, partition_key=("username",)),
    "credentials": ServingTable("credentials", CREDENTIAL, partition_key=("credential_id",)),
    "followers": ServingTable("followers", FOLLOW, partition_key=("followee_id",), clustering_key=("follower_id",)),
    "following": ServingTable("following", FOLLOW, partition_key=("follower_id",), clustering_key=("followee_id",)),
    "follower_counts": ServingTable("follower_counts", FOLLOWER_COUNT, partition_key=("user_id",)),
    "sequencer_workers": ServingTable("sequencer_workers", SEQUENCER_WORKER, partition_key=("worker",)),
    "follow_versions": ServingTable("follow_versions", FOLLOW_VERSION, partition_key=("user_id",)),
    "timeline_versions": ServingTable("timeline_versions", TIMELINE_VERSION, partition_key=("user_id",)),
    "celebrities": ServingTable("celebrities", CELEBRITY, partition_key=("shard",), clustering_key=("user_id",)),
    "media": ServingTable("media", MEDIA, partition_key=("media_id",)),
    "posts": ServingTable("posts", POST, partition_key=("post_id",)),
    "deleted_posts": ServingTable("deleted_posts", POST_DELETION, partition_key=("post_id",)),
    "author_posts": ServingTable("author_posts", AUTHOR_POST, partition_key=("author_id",),
                                 clustering_key=("post_id",), clustering_descending=True),
    "timelines": ServingTable("timelines", TIMELINE_ENTRY, partition_key=("user_id",),
                              clustering_key=("post_id",), clustering_descending=True),
    "hashtag_posts": ServingTable("hashtag_posts", HASHTAG_POST, partition_key=("tag",),
                                  clustering_key=("post_id",), clustering_descending=True),
    "geo_posts": ServingTable("geo_posts", GEO_POST, partition_key=("cell",),
                              clustering_key=("post_id",), clustering_descending=True),
    "stories": ServingTable("stories", STORY, partition_key=("author_id",),
                            clustering_key=("story_id",), clustering_descending=True),
    "user_recent_queries": ServingTable("user_recent_queries", USER_RECENT_QUERY, partition_key=("user_id",),
                                        clustering_key=("ts", "query"), clustering_descending=True),
    "typeahead_shard_owners": ServingTable("typeahead_shard_owners", TYPEAHEAD_SHARD_OWNER, partition_key=("shard",),
                                           clustering_key=("url",)),
    "crawl_frontier": ServingTable("crawl_frontier", CRAWL_FRONTIER_ENTRY, partition_key=("url",)),
    "crawl_checksums": ServingTable("crawl_checksums", CRAWL_CHECKSUM, partition_key=("content_sha256",)),
    "crawl_simhash_bands": ServingTable("crawl_simhash_bands", CRAWL_SIMHASH_BAND,
                                        partition_key=("band", "band_value"), clustering_key=("url",)),
    "crawl_robots": ServingTable("crawl_robots", CRAWL_ROBOTS, partition_key=("host",)),
    "crawl_drops": ServingTable("crawl_drops", CRAWL_DROP, partition_key=("reason",), clustering_key=("url",)),
    "crawl_offers": ServingTable("crawl_offers", CRAWL_OFFER, partition_key=("partitions", "partition"),
                                 clustering_key=("url",)),
    "crawl_workers": ServingTable("crawl_workers", CRAWL_WORKER, partition_key=("partitions",),
                                  clustering_key=("partition",)),
    "short_urls": ServingTable("short_urls", SHORT_URL, partition_key=("key",)),
    "url_expiry": ServingTable("url_expiry", URL_EXPIRY, partition_key=("day",), clustering_key=("key",)),
    "url_id_counter": ServingTable("url_id_counter", URL_ID_COUNTER, partition_key=("name",)),
    "shortener_secrets": ServingTable("shortener_secrets", SHORTENER_SECRET, partition_key=("name",)),
    "url_click_counts": ServingTable("url_click_counts", URL_CLICK_COUNT, partition_key=("key",),
                                     clustering_key=("hour", "referrer_host", "ua_family")),
    "chat_devices": ServingTable("chat_devices", CHAT_DEVICE, partition_key=("user_id",), clustering_key=("device_id",)),
    "chat_messages": ServingTable("chat_messages", CHAT_MESSAGE, partition_key=("conversation_id",),
                                  clustering_key=("seq",), clustering_descending=True),
    "chat_message_refs": ServingTable("chat_message_refs", CHAT_MESSAGE_REF, partition_key=("message_id",)),
    "chat_sent": ServingTable("chat_sent", CHAT_SENT, partition_key=("sender_id", "sender_device", "client_msg_id")),
    "chat_pending": ServingTable("chat_pending", CHAT_PENDING, partition_key=("user_id", "device_id"),
                                 clustering_key=("entry",)),
    "chat_receipts": ServingTable("chat_receipts", CHAT_RECEIPT, partition_key=("conversation_id", "seq"),
                                  clustering_key=("user_id", "device_id")),
    "chat_sequences": ServingTable("chat_sequences", CHAT_SEQUENCE, partition_key=("conversation_id",)),
    "chat_connections": ServingTable("chat_connections", CHAT_CONNECTION, partition_key=("user_id",),
                                     clustering_key=("device_id",)),
    "chat_groups": ServingTable("chat_groups", CHAT_GROUP, partition_key=("group_id",)),
    "chat_members": ServingTable("chat_members", CHAT_MEMBER, partition_key=("group_id",), clustering_key=("user_id",)),
    "chat_conversation_days": ServingTable("chat_conversation_days", CHAT_CONVERSATION_DAY, partition_key=("day",),
                                           clustering_key=("conversation_id",)),
    "docs": ServingTable("docs", DOC, partition_key=("doc_id",)),
    "doc_members": ServingTable("doc_members", DOC_MEMBER, partition_key=("doc_id",), clustering_key=("user_id",)),
    "doc_sequences": ServingTable("doc_sequences", DOC_SEQUENCE, partition_key=("doc_id",)),
    "doc_updates": ServingTable("doc_updates", DOC_UPDATE, partition_key=("doc_id",), clustering_key=("version",)),
    "doc_versions": ServingTable("doc_versions", DOC_VERSION, partition_key=("doc_id",), clustering_key=("version",)),
    "doc_snapshots": ServingTable("doc_snapshots", DOC_SNAPSHOT, partition_key=("doc_id",)),
    "doc_comments": ServingTable("doc_comments", DOC_COMMENT, partition_key=("doc_id",), clustering_key=("comment_id",)),
    "doc_view_counts": ServingTable("doc_view_counts", DOC_VIEW_COUNT, partition_key=("doc_id",),
                                    clustering_key=("day",)),
}

RECORDS: dict[str, Record] = {
    r.name: r for r in (DEAD_LETTER, SEARCH_EVENT, QUERY_COUNT, PHRASE_FREQUENCY, USER_RECENT_QUERY, TYPEAHEAD_SHARD_OWNER, USER, USERNAME, CREDENTIAL,
                        FOLLOW, FOLLOW_EVENT, FOLLOWER_COUNT, SEQUENCER_WORKER, FOLLOW_VERSION, TIMELINE_VERSION, CELEBRITY, MEDIA, POST, POST_DELETION, TIMELINE_ENTRY, AUTHOR_POST, HASHTAG_POST, GEO_POST, STORY,
                        CRAWL_PAGE, CRAWL_FRONTIER_ENTRY, CRAWL_CHECKSUM, CRAWL_SIMHASH_BAND, CRAWL_ROBOTS, CRAWL_DROP,
                        CRAWL_OFFER, CRAWL_WORKER,
                        CRAWL_DUPLICATE, SHORT_URL, URL_EXPIRY, URL_ID_COUNTER, SHORTENER_SECRET, URL_CLICK_EVENT,
                        URL_CLICK, URL_CLICK_COUNT, CHAT_DEVICE, CHAT_MESSAGE, CHAT_MESSAGE_REF, CHAT_SENT, CHAT_PENDING, CHAT_RECEIPT,
                        CHAT_SEQUENCE, CHAT_CONNECTION, CHAT_GROUP, CHAT_MEMBER, CHAT_CONVERSATION_DAY, CHAT_DELIVERY,
                        CHAT_GROUP_MESSAGE, CHAT_NOTIFICATION, DOC, DOC_MEMBER, DOC_SEQUENCE, DOC_UPDATE, DOC_VERSION,
                        DOC_SNAPSHOT, DOC_COMMENT, DOC_UPDATE_EVENT, DOC_VIEW_EVENT, DOC_VIEW_COUNT)
}
