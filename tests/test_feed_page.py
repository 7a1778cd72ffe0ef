"""End to end: the feed page in headless Chromium against the real app on a free 127.0.0.1 port.

The page shows whatever the real `/v1/timeline/{user_id}` answers with the user's token: exactly
those posts (and the next page on "load more"); without a token it says why and offers sign-up. Hashtag links open the
page in search mode, checked against hashtag rows written here by a brute force over the posts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import httpx
import pytest
from browser import TIMEOUT_MS, Server

from schemas.records import SERVING_TABLES
from sixfold.feed.generate import generate, write
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

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
