"""The URL shortener: keys, links, expiry, quotas, cache and the HTTP doors, against independent oracles
(Bitcoin's base-58 vectors, the course's example, brute-force sets, a controlled clock)."""

from __future__ import annotations

import multiprocessing
import re
import shutil
import socket
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from accounts import Authed, signup
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from schemas.records import SERVING_TABLES
from sixfold.api.app import create_app
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore, open_store
from sixfold.shortener import base58
from sixfold.shortener.cache import LocalCache, MemcachedCache
from sixfold.shortener.keys import DOMAIN_BITS, FIRST_ID, KeyPool, Permutation
from sixfold.shortener.links import LinkError, Links, check_long_url
from sixfold.shortener.quota import FixedWindowQuota, QuotaExceeded, parse_windows

pytestmark = pytest.mark.unit

# ---- base-58 --------------------------------------------------------------------------------------
# Bitcoin's alphabet is the course's; these are its published vectors (bytes read as one big-endian number)
BITCOIN_VECTORS = [
    (b"Hello World!", "2NEpo7TZRRrLZSi2U"),
    (bytes.fromhex("61"), "2g"),
    (bytes.fromhex("626262"), "a3gV"),
    (bytes.fromhex("636363"), "aPEr"),
    (bytes.fromhex("73696d706c792061206c6f6e6720737472696e67"), "2cFupjhnEsSn59qHXstmK2ffpLv2"),
    (b"The quick brown fox jumps over the lazy dog",
     "7DdiPPYtxLjCD3wA1po2rvZHTDYjkZYiEtazrfiwJcwnKCizhGFhBGHeRdx"),
    (b"Hello", "9Ajdvzr"),
    (b"Hello world", "JxF12TrwXzT5jvT"),
    (bytes.fromhex("516b6fcd0f"), "ABnLTmg"),
    (bytes.fromhex("bf4f89001e670274dd"), "3SEo3LWLoPntC"),
    (bytes.fromhex("572e4794"), "3EFU7m"),
    (bytes.fromhex("ecac89cad93923c02321"), "EJDM8drfXA6uyA"),
    (bytes.fromhex("10c8511e"), "Rt5zm"),
]


def test_the_course_example_and_bitcoin_vectors() -> None:
    assert base58.encode(2468135791013) == "27qMi57J"  # the course: [1][6][48][20][41][4][6][17]
    assert [base58.ALPHABET.index(c) for c in "27qMi57J"] == [1, 6, 48, 20, 41, 4, 6, 17]
    for raw, text in BITCOIN_VECTORS:
        assert base58.encode(int.from_bytes(raw, "big")) == text
        assert base58.decode(text) == int.from_bytes(raw, "big")
    assert set(base58.ALPHABET).isdisjoint("0OIl+/") and len(set(base58.ALPHABET)) == 58
    assert base58.encode(0) == "1" and base58.encode(57) == "z" and base58.encode(58) == "21"
    assert len(base58.encode(FIRST_ID)) == 6  # a generated key has at least six characters
    assert len(base58.encode(2**63 - 1)) == 11  # the course: at most 11 for a 64-bit id


@given(st.integers(min_value=0, max_value=2**64))
def test_decode_inverts_encode(number: int) -> None:
    assert base58.decode(base58.encode(number)) == number


@pytest.mark.parametrize("bad", ["0", "O", "I", "l", "+", "/", "abc0", "", "a b", "é"])
def test_decode_refuses_characters_outside_the_alphabet(bad: str) -> None:
    with pytest.raises(ValueError):
        base58.decode(bad)


# ---- generated keys ---------------------------------------------------------------------------------
def test_the_permutation_maps_distinct_counters_to_distinct_ids_in_range() -> None:
    perm = Permutation(b"k" * 32)
    ids = [perm.forward(c) for c in range(50_000)]
    assert len(set(ids)) == len(ids) and all(0 <= i < 2**DOMAIN_BITS for i in ids)
    # unpredictable: neighbours of a counter are nowhere near each other, and another secret gives other ids
    gaps = sorted(abs(a - b) for a, b in zip(ids, ids[1:]))
    assert gaps[len(gaps) // 2] > 2**DOMAIN_BITS // 100
    other = Permutation(b"j" * 32)
    assert sum(other.forward(c) == ids[c] for c in range(1000)) == 0


def _take_ids(path: str, n: int, out: multiprocessing.Queue) -> None:
    store = SQLiteStore(path)
    pool = KeyPool(store, block=300)
    out.put([pool.take() for _ in range(n)])


def test_two_processes_taking_keys_at_once_never_share_one(tmp_path) -> None:
    path = str(tmp_path / "store.sqlite3")
    from sixfold.shortener.keys import shared_secret

    shared_secret(SQLiteStore(path))
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_take_ids, args=(path, 2000, out)) for _ in range(2)]
    for p in procs:
        p.start()
    taken = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(30)
    everything = taken[0] + taken[1]
    assert len(set(everything)) == 4000  # the oracle: a set of all ids handed out
    assert all(FIRST_ID <= i < FIRST_ID + 2**DOMAIN_BITS for i in everything)
    assert all(6 <= len(base58.encode(i)) <= 7 for i in everything)
    assert taken[0][:50] != sorted(taken[0][:50])  # not handed out in order


def test_pools_leasing_blocks_of_different_sizes_never_overlap(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    big, small = KeyPool(store, block=64, secret=b"s" * 32), KeyPool(store, block=16, secret=b"s" * 32)
    taken = [pool.take() for _ in range(100) for pool in (big, small)]  # a deployment changed its block size
    assert len(set(taken)) == len(taken)


def test_the_pool_refills_in_the_background_and_every_block_is_used_once(tmp_path) -> None:
    store = SQLiteStore(tmp_path / "s.sqlite3")
    blocks: list[int] = []
    pool = KeyPool(store, block=100, secret=b"s" * 32, on_refill=blocks.append)
    first = [pool.take() for _ in range(80)]  # under a quarter left: a lease starts in the background
    deadline = time.monotonic() + 30
    while pool.size() < 100 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert blocks == [0, 100] and pool.size() == 120  # the first counter of each lease
    rest = [pool.take() for _ in range(500)]
    perm = Permutation(b"s" * 32)
    expected = {FIRST_ID + perm.forward(c) for c in range(max(blocks) + 100)}
    assert len(set(first + rest)) == 580 and set(first + rest) <= expected


# ---- links with a controlled clock ----------------------------------------------------------------------
class Clock:
    def __init__(self, at: float) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC).timestamp()


@pytest.fixture
def links(settings: Settings):
    clock = Clock(T0)
    store = open_store(settings)
    yield Links(store, settings, pool=KeyPool(store, block=50), cache=LocalCache(100, 3600), clock=clock), clock
    store.close()


def test_a_link_answers_302_until_it_expires_then_410_even_from_the_cache(links) -> None:
    links, clock = links
    row = links.create(7, "https://example.com/x", expire_at=datetime.fromtimestamp(T0 + 100, UTC))
    assert links.resolve(row["key"]).status == 302 and links.resolve(row["key"]).long_url == "https://example.com/x"
    assert links.cache.get(row["key"]) is not None  # the second answer came from the cache
    clock.at = T0 + 99.999
    assert links.resolve(row["key"]).status == 302
    clock.at = T0 + 100
    gone = links.resolve(row["key"])
    assert gone.status == 410 and "expired" in gone.reason


def test_expiry_defaults_to_two_years_and_refuses_the_past_and_past_five_years(links) -> None:
    links, _ = links
    row = links.create(7, "https://example.com/")
    assert row["expire_at"] == datetime.fromtimestamp(T0, UTC) + timedelta(days=730)
    with pytest.raises(LinkError) as past:
        links.create(7, "https://example.com/", expire_at=datetime.fromtimestamp(T0 - 1, UTC))
    assert past.value.status == 422 and "not in the future" in str(past.value)
    with pytest.raises(LinkError) as far:
        links.create(7, "https://example.com/", expire_at=datetime.fromtimestamp(T0, UTC) + timedelta(days=1827))
    assert far.value.status == 422
    naive = links.create(7, "https://example.com/", expire_at=datetime(2027, 1, 1))
    assert naive["expire_at"] == datetime(2027, 1, 1, tzinfo=UTC)


def test_the_purge_tombstones_expired_links_and_their_keys_never_come_back(links, settings) -> None:
    links, clock = links
    soon = links.create(1, "https://a.example/", custom_alias="soon-gone",
                        expire_at=datetime.fromtimestamp(T0 + 3600, UTC))
    generated = links.create(1, "https://b.example/", expire_at=datetime.fromtimestamp(T0 + 7200, UTC))
    later = links.create(1, "https://c.example/", expire_at=datetime.fromtimestamp(T0 + 5 * 86400, UTC))
    clock.at = T0 + 86400
    report = links.purge()
    assert report["purged"] == 2
    rows = {k: links.store.get(SERVING_TABLES["short_urls"], {"key": k})
            for k in (soon["key"], generated["key"], later["key"])}
    assert rows[soon["key"]]["state"] == "expired" and rows[soon["key"]]["long_url"] is None
    assert rows[generated["key"]]["state"] == "expired" and rows[later["key"]]["state"] == "active"
    assert links.resolve(soon["key"]).status == 410 and links.resolve(later["key"]).status == 302
    with pytest.raises(LinkError) as taken:
        links.create(2, "https://evil.example/", custom_alias="soon-gone")
    assert taken.value.status == 409
    assert links.purge()["purged"] == 0  # nothing twice
    clock.at = T0 + 6 * 86400
    assert links.purge()["purged"] == 1


def test_aliases_conflict_race_and_stay_out_of_the_generated_range(links) -> None:
    links, _ = links
    links.create(1, "https://a.example/", custom_alias="launch")
    with pytest.raises(LinkError) as taken:
        links.create(2, "https://b.example/", custom_alias="launch")
    assert taken.value.status == 409 and "'launch' is taken" in str(taken.value)
    assert links.resolve("launch").long_url == "https://a.example/"
    generated_looking = base58.encode(FIRST_ID + 12345)
    for bad in [generated_looking, "ab", "x" * 33, "has space", "docs", "V1", "ümlaut"]:
        with pytest.raises(LinkError) as refused:
            links.create(1, "https://a.example/", custom_alias=bad)
        assert refused.value.status == 422, bad
    for fine in ["2XNGA", "my_link", "0wn3d-IO", "1abcdefgh"]:  # short, not base-58, or not canonical
        assert links.create(1, "https://a.example/", custom_alias=fine)["key"] == fine


@pytest.mark.parametrize("url, ok", [
    ("https://example.com/a?b=c#d", True),
    ("http://example.com", True),
    ("HTTPS://Example.COM/Path", True),
    ("https://bücher.example/straße", True),
    ("ftp://example.com/file", False),
    ("javascript:alert(1)", False),
    ("data:text/html,hi", False),
    ("example.com/no-scheme", False),
    ("https://", False),
    ("http://127.0.0.1/admin", False),
    ("http://localhost:8000/", False),
    ("http://10.0.0.8/", False),
    ("http://169.254.169.254/latest/meta-data", False),
    ("http://[::1]/", False),
    ("http://[::ffff:192.168.0.1]/", False),
    ("http://printer.local/", False),
    ("https://user:pw@example.com/", False),
    ("https://example.com:99999/", False),
    ("https://example.com/" + "a" * 2028, True),  # 2,048 characters exactly
    ("https://example.com/" + "a" * 2029, False),
    ("https://8.8.8.8/", True),
])
def test_long_urls_are_public_http_and_at_most_2048_characters(url: str, ok: bool) -> None:
    if ok:
        safe = check_long_url(url)
        assert safe.isascii() and len(safe) <= 2048
    else:
        with pytest.raises(LinkError) as refused:
            check_long_url(url)
        assert refused.value.status == 422 and refused.value.args[0].startswith("long_url")
    assert check_long_url("http://127.0.0.1/x", allow_private=True) == "http://127.0.0.1/x"


def test_urls_are_made_safe_for_a_location_header() -> None:
    assert check_long_url("https://bücher.example/a b?q=é") == "https://xn--bcher-kva.example/a%20b?q=%C3%A9"


# ---- the fixed window ---------------------------------------------------------------------------------
def test_fixed_windows_reset_on_the_clock_boundary_and_allow_the_edge_burst() -> None:
    start = 60.0 * 16_667  # a minute boundary of the wall clock
    clock = Clock(start)
    quota = FixedWindowQuota("3/minute", clock=clock)
    clock.at = start + 59.5
    for _ in range(3):
        quota.hit("k")
    with pytest.raises(QuotaExceeded) as refused:
        quota.hit("k")
    assert refused.value.status == 429 and refused.value.headers["Retry-After"] == "1"
    quota.hit("other-key")  # counts are per key
    clock.at = start + 60.0  # the next window: a full quota again, 0.5 s after the last three
    for _ in range(3):
        quota.hit("k")
    with pytest.raises(QuotaExceeded) as again:
        quota.hit("k")
    assert again.value.headers["Retry-After"] == "60"


def test_a_refused_request_spends_nothing_and_every_window_counts() -> None:
    clock = Clock(3600.0 * 1000)
    quota = FixedWindowQuota("3/minute;4/hour", clock=clock)
    for _ in range(3):
        quota.hit("k")
    for _ in range(5):
        with pytest.raises(QuotaExceeded):
            quota.hit("k")
    clock.at += 60
    quota.hit("k")  # the fourth of the hour
    with pytest.raises(QuotaExceeded) as hourly:
        quota.hit("k")
    assert "4/hour" in str(hourly.value) and hourly.value.headers["Retry-After"] == str(3600 - 60)
    with pytest.raises(QuotaExceeded):
        quota.hit("fresh", cost=5)  # a batch bigger than the window is refused whole
    quota.hit("fresh", cost=3)


@pytest.mark.parametrize("text", ["3", "3/fortnight", "0/minute", "-1/second", "many/day"])
def test_bad_quotas_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_windows(text)
    assert parse_windows("") == ()


# ---- the caches: one contract, two adapters -------------------------------------------------------------
@pytest.fixture(params=["local", "memcached"])
def cache(request, tmp_path):
    if request.param == "local":
        yield LocalCache(1000, ttl_s=1)
        return
    binary = shutil.which("memcached")
    if binary is None:
        pytest.skip("memcached is not installed (scripts/system-deps.sh installs it)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "-l", "127.0.0.1", "-p", str(port), "-U", "0", "-m", "16", "-u", "nobody"])
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        yield MemcachedCache("127.0.0.1", port, ttl_s=1)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cache_contract(cache) -> None:
    assert cache.get("k1") is None
    cache.put("k1", ("https://a.example/", 123.5, "active"))
    assert cache.get("k1") == ("https://a.example/", 123.5, "active")
    cache.put("k2", (None, 9.0, "deleted"))
    cache.drop("k1")
    assert cache.get("k1") is None and cache.get("k2") == (None, 9.0, "deleted")
    cache.drop("never-there")
    time.sleep(2.1)  # entries live ttl_s (1 s) at most
    assert cache.get("k2") is None


def test_memcached_that_is_down_is_a_miss_not_an_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = MemcachedCache("127.0.0.1", port, ttl_s=5)
    down.put("k", ("https://a.example/", 1.0, "active"))
    assert down.get("k") is None
    down.drop("k")


# ---- over HTTP -------------------------------------------------------------------------------------------
@pytest.fixture
def client(settings: Settings):
    with TestClient(create_app(settings)) as c:
        yield c


def api_key(client: TestClient, username: str) -> tuple[int, dict[str, str]]:
    user, token = signup(client, username)
    answer = Authed(client, token).post("/v1/api-keys")
    assert answer.status_code == 201
    return user, {"X-Api-Key": answer.json()["api_key"]}


def test_create_redirect_delete_over_http(client: TestClient) -> None:
    _, ann = api_key(client, "ann")
    _, bob = api_key(client, "bob")
    made = client.post("/v1/urls", json={"long_url": "https://example.com/page?x=1"}, headers=ann)
    assert made.status_code == 201
    body = made.json()
    assert body["short_url"] == f"http://testserver/{body['key']}" and len(body["key"]) >= 6
    for path in (f"/{body['key']}", f"/x/{body['key']}"):
        hop = client.get(path, follow_redirects=False)
        assert hop.status_code == 302 and hop.headers["location"] == "https://example.com/page?x=1"
    assert client.get(f"/y/{body['key']}").status_code == 404
    assert client.get("/nothing-here").json()["error"]["code"] == "not_found"
    # only the owner deletes; then 410 for good
    refused = client.delete(f"/v1/urls/{body['key']}", headers=bob)
    assert refused.status_code == 403 and "another user" in refused.json()["error"]["message"]
    assert client.get(f"/v1/urls/{body['key']}/stats", headers=bob).status_code == 403
    assert client.delete(f"/v1/urls/{body['key']}", headers=ann).status_code == 204
    assert client.get(f"/{body['key']}", follow_redirects=False).status_code == 410
    assert client.delete(f"/v1/urls/{body['key']}", headers=ann).status_code == 204  # idempotent
    assert client.delete("/v1/urls/nope", headers=ann).status_code == 404
    # pages and docs are not short links
    assert client.get("/docs").status_code == 200 and client.get("/typeahead").status_code == 200
    assert client.post("/v1/urls", json={"long_url": "https://x.example/", "custom_alias": "typeahead"},
                       headers=ann).status_code == 422


def test_api_keys_are_required_and_tokens_are_not_keys(client: TestClient) -> None:
    _, token = signup(client, "ann")
    for headers in ({}, {"X-Api-Key": token}, {"X-Api-Key": "sfk_" + "0" * 24 + "." + "A" * 43}):
        refused = client.post("/v1/urls", json={"long_url": "https://a.example/"}, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("ApiKey")


def test_a_batch_gives_each_url_its_own_result(client: TestClient) -> None:
    _, ann = api_key(client, "ann")
    urls = [{"long_url": f"https://example.com/{i}"} for i in range(5)]
    urls[2] = {"long_url": "ftp://nope"}
    urls[3] = {"long_url": "https://example.com/3", "custom_alias": "batch-alias"}
    urls.append({"long_url": "https://example.com/again", "custom_alias": "batch-alias"})
    answer = client.post("/v1/urls:batch", json={"urls": urls}, headers=ann)
    assert answer.status_code == 200
    body = answer.json()
    assert body["created"] == 4 and body["failed"] == 2
    statuses = [r.get("error", {}).get("status", 201) for r in body["results"]]
    assert statuses == [201, 201, 422, 201, 201, 409]
    for sent, result in zip(urls, body["results"], strict=True):
        if "key" in result:
            hop = client.get(f"/{result['key']}", follow_redirects=False)
            assert hop.headers["location"] == sent["long_url"]
    too_many = client.post("/v1/urls:batch", json={"urls": [{"long_url": "https://a.example/"}] * 1001}, headers=ann)
    assert too_many.status_code == 422


def test_the_per_key_quota_answers_429_with_retry_after(settings: Settings, monkeypatch) -> None:
    monkeypatch.setenv("SIXFOLD_SHORTENER_LIMIT_PER_KEY", "3/minute")
    with TestClient(create_app(Settings.from_env())) as client:
        user, ann = api_key(client, "ann")
        codes = [client.post("/v1/urls", json={"long_url": f"https://a.example/{i}"}, headers=ann).status_code
                 for i in range(4)]
        assert codes[-1] == 429 or codes == [201] * 3 + [429]  # the window may turn over mid-test
        refused = client.post("/v1/urls", json={"long_url": "https://a.example/x"}, headers=ann)
        if refused.status_code == 429:
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            assert "SIXFOLD_SHORTENER_LIMIT_PER_KEY" in refused.json()["error"]["message"]
        # a batch counts each URL; another key starts its own count
        _, bob = api_key(client, "bob")
        assert client.post("/v1/urls:batch", json={"urls": [{"long_url": "https://b.example/"}] * 4},
                           headers=bob).status_code == 429
        owned = [r for r in open_store(settings).scan(SERVING_TABLES["short_urls"]) if r["owner_id"] == user]
        assert len(owned) == sum(c == 201 for c in codes) + (refused.status_code == 201)


def test_redirects_emit_click_events(client: TestClient, settings: Settings) -> None:
    from sixfold.platform.bus import open_bus
    from sixfold.shortener.api import app_clicks

    _, ann = api_key(client, "ann")
    key = client.post("/v1/urls", json={"long_url": "https://example.com/"}, headers=ann).json()["key"]
    sent = [("https://news.example.org/item?id=1", "curl/8.5.0"), (None, None), ("not a url", "Mozilla/5.0")]
    for referer, agent in sent:
        headers = {k: v for k, v in (("referer", referer), ("user-agent", agent)) if v is not None}
        assert client.get(f"/{key}", headers=headers, follow_redirects=False).status_code == 302
    assert client.get("/no-such-key").status_code == 404  # no click for a miss
    app_clicks(client.app).flush()
    bus = open_bus(settings)
    consumer = bus.consumer("url-clicks", "test")
    events = [m.json() for m in consumer.poll(max_records=100, timeout_s=1.0)]
    assert [(e["key"], e["referrer_host"]) for e in events] == [(key, "news.example.org"), (key, None), (key, None)]
    assert events[0]["user_agent"] == "curl/8.5.0" and events[2]["user_agent"] == "Mozilla/5.0"
    assert len({e["click_id"] for e in events}) == 3


def test_the_fast_path_answers_like_the_route(settings: Settings, monkeypatch) -> None:
    from sixfold.api.app import create_asgi

    monkeypatch.setenv("SIXFOLD_HOME", str(settings.home))
    with TestClient(create_asgi()) as client:
        _, ann = api_key(client, "ann")
        key = client.post("/v1/urls", json={"long_url": "https://example.com/fast"}, headers=ann).json()["key"]
        hop = client.get(f"/{key}", follow_redirects=False)
        assert hop.status_code == 302 and hop.headers["location"] == "https://example.com/fast"
        assert hop.headers["content-type"] == "text/plain" and hop.content == b""
        missing = client.get("/zzzzzzz")
        assert missing.status_code == 404 and missing.json()["error"]["message"] == "no short link 'zzzzzzz'"
        assert client.get("/docs").status_code == 200 and "<html" in client.get("/typeahead").text.lower()
        client.delete(f"/v1/urls/{key}", headers=ann)
        assert client.get(f"/{key}").status_code == 410  # the delete dropped this server's cached entry


CREATIONS = [  # (body as sent, content type, which key): every one answered by the route and by the fast path
    ({"long_url": "https://example.com/a?b=1"}, "application/json", "mine"),
    ({"long_url": "https://example.com/b", "custom_alias": None}, "application/json", "mine"),
    ({"long_url": "https://example.com/c", "custom_alias": "{side}-alias"}, "application/json", "mine"),
    ({"long_url": "https://example.com/d", "custom_alias": "taken-alias"}, "application/json", "mine"),
    ({"long_url": "https://example.com/e", "custom_alias": "typeahead"}, "application/json", "mine"),
    ({"long_url": "https://example.com/f", "custom_alias": "no"}, "application/json", "mine"),
    ({"long_url": "https://bücher.example/ä b"}, "application/json; charset=utf-8", "mine"),
    ({"long_url": "ftp://example.com/"}, "application/json", "mine"),
    ({"long_url": "http://127.0.0.1:8000/admin"}, "application/json", "mine"),
    ({"long_url": ""}, "application/json", "mine"),
    ({"long_url": "https://x.example/" + "a" * 2100}, "application/json", "mine"),
    ({"long_url": "https://example.com/g"}, "application/json", "none"),
    ({"long_url": "https://example.com/h"}, "application/json", "forged"),
    # bodies the fast path leaves to FastAPI: the same answers all the same
    ({"long_url": 12}, "application/json", "mine"),
    ({"long_url": "https://example.com/i", "expire_at": "2020-01-01T00:00:00Z"}, "application/json", "mine"),
    ({"long_url": "https://example.com/j", "expire_at": "2027-01-01T00:00:00Z"}, "application/json", "mine"),
    ({"long_url": "https://example.com/k", "colour": "red"}, "application/json", "mine"),
    ({"custom_alias": "x-alias"}, "application/json", "mine"),
    ([{"long_url": "https://example.com/l"}], "application/json", "mine"),
    ('{"long_url": ', "application/json", "mine"),
    ('{"long_url": "https://example.com/m"}', "text/plain", "mine"),
]


def test_the_fast_creation_answers_every_body_as_the_route_does(settings: Settings, monkeypatch) -> None:
    """POST /v1/urls through `sixfold serve`'s app (the fast path first) against the FastAPI route alone, on one
    store: the same status, headers that matter and JSON for every body, generated keys and times aside."""
    import json

    from sixfold.api.app import create_asgi
    from sixfold.api.fastpath import FastPaths
    from sixfold.shortener.api import CreateFastPost

    taken = []
    real_answer = CreateFastPost.answer

    def counted(self, *args):
        result = real_answer(self, *args)
        taken.append(result is not None)
        return result

    monkeypatch.setattr(CreateFastPost, "answer", counted)
    monkeypatch.setenv("SIXFOLD_HOME", str(settings.home))
    reference_app = create_app(settings)
    reference_app.user_middleware = [m for m in reference_app.user_middleware if m.cls is not FastPaths]
    with TestClient(create_asgi()) as fast, TestClient(reference_app) as reference:
        _, key = api_key(reference, "ann")
        keys = {"mine": key, "none": {}, "forged": {"X-Api-Key": "sfk_" + "0" * 24 + "." + "A" * 43}}
        assert reference.post("/v1/urls", json={"long_url": "https://example.com/", "custom_alias": "taken-alias"},
                              headers=key).status_code == 201
        for body, content_type, who in CREATIONS:
            answers = []
            for side, client in (("route", reference), ("fast", fast)):
                sent = body if isinstance(body, str) else json.dumps(body).replace("{side}", side)
                answers.append(client.post("/v1/urls", content=sent.encode(),
                                           headers={"content-type": content_type, **keys[who]}))
            want, got = answers
            assert got.status_code == want.status_code, (body, got.json(), want.json())
            assert want.status_code != 500
            for header in ("content-type", "www-authenticate", "retry-after"):
                assert got.headers.get(header) == want.headers.get(header), (body, header)
            w, g = want.json(), got.json()
            if want.status_code == 201:
                wait = abs(datetime.fromisoformat(g.pop("expire_at")) - datetime.fromisoformat(w.pop("expire_at")))
                assert wait < timedelta(seconds=30)
                if isinstance(body, dict) and body.get("custom_alias"):
                    assert (w.pop("key"), g.pop("key")) == ("route-alias", "fast-alias")
                    assert (w.pop("short_url"), g.pop("short_url")) == ("http://testserver/route-alias",
                                                                        "http://testserver/fast-alias")
                else:
                    assert len(g.pop("key")) >= 6 and len(w.pop("key")) >= 6
                    assert g.pop("short_url").startswith("http://testserver/") and w.pop("short_url")
            if "error" in w:  # a message naming the time it was refused at
                w["error"]["message"], g["error"]["message"] = (re.sub(r"\(now [^)]*\)", "(now)", a["error"]["message"])
                                                                for a in (w, g))
            assert g == w, body
    assert taken == [True] * 13 + [False] * 7  # the first 13 answered by the fast path, once each; the rest
    # read and passed on to FastAPI, once each (text/plain is never read)
