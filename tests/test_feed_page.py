"""End to end: the feed page in headless Chromium against the real app on a free 127.0.0.1 port.

The page shows whatever the real `/v1/timeline/{user_id}` answers with the user's token: exactly
those posts (and the next page on "load more"); without a token it says why and offers sign-up. Hashtag links open the
page in search mode, checked against hashtag rows written here by a brute force over the posts.

The page is also a whole client: two browsers sign up, one follows the other by id, the other posts a
photo and a story; after the fanout and the search index have run, the follower's page shows exactly
what the API answers (and the photo's bytes are the ones uploaded), and the hashtag search finds it.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts import bearer
from browser import TIMEOUT_MS, Server
from PIL import Image

from schemas.records import SERVING_TABLES
from sixfold.feed.fanout import run_fanout
from sixfold.feed.generate import generate, write
from sixfold.feed.search import build_search_index
from sixfold.platform.bus import open_bus
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore, open_store

playwright_sync = pytest.importorskip("playwright.sync_api")

pytestmark = pytest.mark.e2e

END = datetime(2026, 11, 1, tzinfo=timezone.utc)


@pytest.fixture
def data(home: Path):
    """Generated users, follows and posts in the store, plus hashtag rows computed here."""
    settings = Settings.from_env()
    generated = generate(60, 400, 0, seed=3, end=END)
    store = SQLiteStore(settings.sqlite_path)
    write(settings, generated, store)
    tag_rows = [{"tag": t, "post_id": p["post_id"], "author_id": p["author_id"]}
                for p in generated.posts for t in p["hashtags"]]
    store.upsert_many(SERVING_TABLES["hashtag_posts"], tag_rows)
    followers: dict[int, list[int]] = {}  # pushed timelines, by brute force: every followee's posts
    for f in generated.follows:
        followers.setdefault(f["followee_id"], []).append(f["follower_id"])
    store.upsert_many(SERVING_TABLES["timelines"], [
        {"user_id": u, "post_id": p["post_id"], "author_id": p["author_id"]}
        for p in generated.posts for u in followers.get(p["author_id"], [])])
    store.close()
    return generated


@pytest.fixture
def server(data) -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def page(browser, server: Server) -> Iterator:
    context = browser.new_context(viewport={"width": 700, "height": 900})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    yield page
    context.close()


def reader(data) -> int:
    """The user following the most accounts: the one with the fullest timeline."""
    counts: dict[int, int] = {}
    for f in data.follows:
        counts[f["follower_id"]] = counts.get(f["follower_id"], 0) + 1
    return max(counts, key=lambda uid: (counts[uid], uid))


def shown_captions(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('#posts .post .caption'))"
                         ".map(p => p.textContent)")


def wait_for_count(page, count: int) -> None:
    try:
        page.wait_for_function("n => document.querySelectorAll('#posts .post').length === n", arg=count)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"page never showed {count} posts; it shows {len(shown_captions(page))}, "
                             f"status {page.text_content('#status')!r}") from None


def wait_loaded(page) -> None:
    page.wait_for_function("() => document.body.dataset.loaded === 'true' && !document.getElementById('more').disabled")


def token_for(user: int) -> str:
    """A token for a generated user (generated users never signed up, so nobody holds one yet)."""
    from sixfold.platform.identity import Credentials

    store = SQLiteStore(Settings.from_env().sqlite_path)
    try:
        return Credentials(store).issue(user)
    finally:
        store.close()


def test_feed_page_shows_what_the_timeline_api_answers(page, server: Server, data) -> None:
    user = reader(data)
    token = token_for(user)
    auth = {"Authorization": f"Bearer {token}"}
    answer = httpx.get(f"{server.url}/v1/timeline/{user}", params={"limit": 10}, headers=auth)
    assert answer.status_code == 200, answer.text
    page.goto(f"{server.url}/feed/{user}#token={token}")
    wait_loaded(page)
    assert "token" not in page.url  # the fragment is taken off the address bar
    body = answer.json()
    expected = [p.get("caption") or "" for p in body["posts"]]
    wait_for_count(page, len(expected))
    assert shown_captions(page) == [c for c in expected if c]
    assert page.locator("#status.error").count() == 0
    assert expected and body["next_cursor"]  # the reader follows enough authors for a second page
    if body["next_cursor"]:
        second = httpx.get(f"{server.url}/v1/timeline/{user}", headers=auth,
                           params={"limit": 10, "before": body["next_cursor"]}).json()
        page.click("#more")
        wait_for_count(page, len(expected) + len(second["posts"]))
        assert shown_captions(page)[len(expected):] == [p["caption"] for p in second["posts"] if p.get("caption")]


def test_hashtag_links_open_the_search_and_load_more_pages_to_the_end(page, server: Server, data) -> None:
    counts: dict[str, int] = {}
    for p in data.posts:
        for t in p["hashtags"]:
            counts[t] = counts.get(t, 0) + 1
    tag = max(counts, key=lambda t: (counts[t], t))
    want = sorted((p for p in data.posts if tag in p["hashtags"]), key=lambda p: -p["post_id"])
    assert len(want) > 20  # at least three pages of 10
    user = reader(data)
    page.goto(f"{server.url}/feed/{user}?tag={tag}")
    wait_loaded(page)
    assert page.text_content("#title") == f"#{tag}"
    shown = 10
    wait_for_count(page, shown)
    while page.locator("#more").is_visible():
        page.click("#more")
        shown = min(len(want), shown + 10)
        wait_for_count(page, shown)
        wait_loaded(page)
    assert shown_captions(page) == [p["caption"] for p in want]
    # 64-bit ids survive the browser unrounded
    assert page.evaluate("() => Array.from(document.querySelectorAll('#posts .post')).map(a => a.dataset.postId)") \
        == [str(p["post_id"]) for p in want]
    assert page.text_content("#status").startswith("That's everything")
    # every post's hashtags link to this search mode
    link = page.locator(f"#posts .post .tags a[data-tag='{tag}']").first
    assert link.get_attribute("href") == f"/feed/{user}?tag={tag}"


def test_search_errors_are_shown(page, server: Server) -> None:
    page.goto(f"{server.url}/feed/1?tag=" + "x" * 150)
    wait_loaded(page)
    status = page.text_content("#status")
    assert page.locator("#status.error").count() == 1 and "HTTP 422" in status and "tag must be" in status


def test_without_a_token_the_page_says_why_and_signs_up(page, server: Server, data) -> None:
    user = reader(data)
    page.goto(f"{server.url}/feed/{user}")
    wait_loaded(page)
    assert "HTTP 401" in page.text_content("#status") and page.locator("#status.error").count() == 1
    page.fill("#username", "newcomer")
    page.click("#signup button")
    page.wait_for_url(lambda url: "/feed/" in url and not url.endswith(f"/feed/{user}"))
    wait_loaded(page)
    assert page.text_content("#status") == "No posts yet."  # the new user's own (empty) timeline, with their token
    stored = page.evaluate("() => JSON.parse(localStorage.getItem('sixfold.tokens'))")
    new_id = page.url.rsplit("/", 1)[1]
    assert httpx.get(f"{server.url}/v1/timeline/{new_id}",
                     headers={"Authorization": f"Bearer {stored[new_id]}"}).status_code == 200


# ---- the page as a client: sign up, follow, post a photo and a story, search ---------------------
@pytest.fixture
def empty_server(home: Path) -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def visitor(browser) -> Iterator[Callable[[], Any]]:
    """Opens a page in a browser context of its own (its own localStorage: another person)."""
    contexts = []

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 700, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        return page

    yield open_page
    for context in contexts:
        context.close()


def png(colour: tuple[int, int, int], size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, "PNG")
    return out.getvalue()


def wait_text(page, selector: str, starts_with: str) -> str:
    try:
        page.wait_for_function("([s, p]) => (document.querySelector(s).textContent || '').startsWith(p)",
                               arg=[selector, starts_with])
    except playwright_sync.TimeoutError:
        said = page.text_content(selector)
        raise AssertionError(f"{selector} never began {starts_with!r}; it says {said!r}") from None
    return page.text_content(selector)


def wait_image(page, selector: str) -> str:
    """The src of the image at `selector`, once the browser has decoded it (naturalWidth > 0)."""
    page.locator(selector).scroll_into_view_if_needed()  # feed images load lazily
    try:
        page.wait_for_function("s => { const i = document.querySelector(s); "
                               "return i && i.complete && i.naturalWidth > 0; }", arg=selector)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"{selector} never loaded an image") from None
    return page.get_attribute(selector, "src")


def sign_up_in_page(page, url: str, username: str) -> tuple[str, str]:
    """Sign up through the page's form; (user id, token) as this browser keeps them."""
    page.goto(f"{url}/feed/0")  # nobody's timeline: the 401 brings up the sign-up form
    wait_loaded(page)
    page.fill("#username", username)
    page.click("#signup button")
    page.wait_for_url(lambda u: "/feed/" in u and not u.endswith("/feed/0"))
    wait_loaded(page)
    user_id = page.url.rsplit("/", 1)[1]
    kept = page.evaluate("() => [localStorage.getItem('sixfold.tokens'), localStorage.getItem('sixfold.session')]")
    token = json.loads(kept[0])[user_id]
    assert json.loads(kept[1]) == {"user_id": user_id, "token": token}  # the 64-bit id kept as text
    assert page.text_content("#my-id") == user_id and page.is_visible("#composer")
    return user_id, token


@pytest.mark.spark
def test_two_people_sign_up_follow_post_and_find_the_post(visitor, empty_server: Server, spark) -> None:
    url, settings = empty_server.url, Settings.from_env()
    alice, bob = visitor(), visitor()
    a_id, a_token = sign_up_in_page(alice, url, "alice")
    b_id, b_token = sign_up_in_page(bob, url, "bob")
    for user, token in ((a_id, a_token), (b_id, b_token)):  # the kept token is that user's, to the API
        assert httpx.get(f"{url}/v1/timeline/{user}", headers=bearer(token)).status_code == 200

    # Bob follows Alice by her id; a wrong id first, to see the API's reason
    bob.fill("#followee", "12345")
    bob.click("#follow button[value=follow]")
    said = wait_text(bob, "#follow-status", "Could not follow user 12345: ")
    assert "does not exist" in said and "HTTP 404" in said and bob.locator("#follow-status.error").count() == 1
    bob.fill("#followee", a_id)
    bob.click("#follow button[value=follow]")
    wait_text(bob, "#follow-status", f"You follow user {a_id}")

    # Alice posts a photo whose caption carries #sunset, then a story
    caption = "Golden hour at the pier #sunset"
    photo, story_photo = png((250, 120, 40), (120, 80)), png((40, 90, 200), (64, 96))
    alice.set_input_files("#photo", files=[{"name": "pier.png", "mimeType": "image/png", "buffer": photo}])
    alice.fill("#caption", caption)
    alice.fill("#hashtags", "#pier, evening")
    alice.click("#composer button[value=post]")
    wait_text(alice, "#composer-status", "Posted")
    alice.set_input_files("#photo", files=[{"name": "story.png", "mimeType": "image/png", "buffer": story_photo}])
    alice.click("#composer button[value=story]")
    wait_text(alice, "#composer-status", "Story shared")
    assert alice.locator(".status.error").count() == 0

    # what the streams and the index job do in a deployment
    store, bus = open_store(settings), open_bus(settings)
    try:
        run_fanout(settings, store, bus, idle_timeout_s=0.05)
        build_search_index(spark, settings, store)
    finally:
        store.close()

    # the oracle: the API's answers, and the bytes uploaded
    api = httpx.Client(base_url=url, headers=bearer(b_token))
    timeline = api.get(f"/v1/timeline/{b_id}").json()["posts"]
    assert [(p["author_id"], p["caption"], p["hashtags"], len(p["media"])) for p in timeline] == \
        [(int(a_id), caption, ["sunset", "pier", "evening"], 1)]
    post_id, media_id = timeline[0]["post_id"], timeline[0]["media"][0]
    assert api.get(f"/v1/media/{media_id}").content == photo
    authors = api.get(f"/v1/stories/feed/{b_id}").json()["authors"]
    assert [(s["author_id"], s["username"], len(s["stories"])) for s in authors] == [(int(a_id), "alice", 1)]
    story_media = authors[0]["stories"][0]["media_id"]
    assert api.get(f"/v1/media/{story_media}").content == story_photo
    found = api.get("/v1/search/hashtags/sunset").json()["posts"]
    assert [p["post_id"] for p in found] == [post_id]

    # Bob's page, reloaded, shows Alice's post with its photo, and her story
    bob.reload()
    wait_loaded(bob)
    wait_for_count(bob, 1)
    shown = f"#posts .post[data-post-id='{post_id}']"
    assert bob.text_content(f"{shown} .caption") == caption
    assert wait_image(bob, f"{shown} .media img") == f"/v1/media/{media_id}?size=feed"
    assert bob.evaluate("s => Array.from(document.querySelectorAll(s)).map(a => a.textContent)",
                        f"{shown} .tags a") == ["#sunset", "#pier", "#evening"]
    ring = f"#stories li[data-author-id='{a_id}']"
    bob.wait_for_selector(ring)
    assert bob.locator("#stories li").count() == len(authors)
    assert bob.text_content(f"{ring} .who") == "alice"
    assert wait_image(bob, f"{ring} img") == f"/v1/media/{story_media}?size=feed"

    # the search box switches the page to the hashtag's posts
    bob.fill("#tag-query", "#sunset")
    bob.click("#search button")
    bob.wait_for_url(f"{url}/feed/{b_id}?tag=sunset")
    wait_loaded(bob)
    wait_for_count(bob, len(found))
    assert bob.evaluate("() => Array.from(document.querySelectorAll('#posts .post')).map(a => a.dataset.postId)") \
        == [str(p["post_id"]) for p in found]
    assert shown_captions(bob) == [caption]
    api.close()

    # signing out forgets the token in this browser: the page asks to sign up again
    with alice.expect_navigation():
        alice.click("#signout")
    wait_loaded(alice)
    assert "HTTP 401" in alice.text_content("#status") and alice.is_visible("#signup")
    assert not alice.is_visible("#composer") and not alice.is_visible("#me")
    assert alice.evaluate("() => [localStorage.getItem('sixfold.tokens'), localStorage.getItem('sixfold.session')]") \
        == ["{}", None]
