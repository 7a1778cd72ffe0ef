"""End to end: the shortener page `/s` in headless Chromium against the real app on a free 127.0.0.1 port.

The oracles are not the page: a short link is followed with a plain HTTP client (no redirects) and
must answer 302 to exactly the URL the test typed, then 410 once the page deleted it; the stats view
must show the click counts this test wrote into `url_click_counts` itself, summed here in Python.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts import bearer, signup
from browser import TIMEOUT_MS, Server
from playwright import sync_api as playwright_sync  # a dev dependency: missing, the run must fail, not skip

from schemas.records import SERVING_TABLES
from sixfold.platform.settings import Settings
from sixfold.platform.store import SQLiteStore

pytestmark = pytest.mark.e2e

LONG_URL = "https://example.com/some/page"
ALIAS = "spring-sale"
# (hour, referrer host, browser family, clicks): what the hourly url_clicks job would have served
SEEDED = [
    (datetime(2026, 3, 14, 9, tzinfo=UTC), "(direct)", "Chrome", 7),
    (datetime(2026, 3, 14, 9, tzinfo=UTC), "news.ycombinator.com", "Firefox", 12),
    (datetime(2026, 3, 14, 10, tzinfo=UTC), "news.ycombinator.com", "Chrome", 30),
    (datetime(2026, 3, 14, 13, tzinfo=UTC), "t.co", "Mobile Safari", 4),
    (datetime(2026, 3, 15, 2, tzinfo=UTC), "(direct)", "Chrome", 1),
]


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def visitor(browser, server: Server) -> Iterator[Callable[[], Any]]:
    """Opens /s in a browser context of its own (its own localStorage), recording every request URL."""
    contexts = []

    def open_page() -> Any:
        context = browser.new_context(viewport={"width": 800, "height": 1000})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.requested = []
        page.on("request", lambda r: page.requested.append(r.url))
        page.goto(server.url + "/s")
        page.wait_for_function("() => document.body.dataset.ready === 'true'")
        return page

    yield open_page
    for context in contexts:
        context.close()


# ---- helpers reading the page -------------------------------------------------------------------
def wait_for_text(page, selector: str, wanted: str) -> str:
    """Poll until the element's text contains `wanted`; fail with what it says instead."""
    try:
        page.wait_for_function("([s, w]) => (document.querySelector(s)?.textContent || '').includes(w)",
                               arg=[selector, wanted], timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"{selector} never said {wanted!r}; it says {page.text_content(selector)!r}; "
                             f"shorten status {page.text_content('#shorten-status')!r}") from None
    return page.text_content(selector)


def listed_keys(page) -> list[str]:
    return page.evaluate("() => Array.from(document.querySelectorAll('#link-list li')).map(li => li.dataset.key)")


def sign_up(page, username: str) -> str:
    page.fill("#username", username)
    page.click("#signup button[type=submit]")
    page.wait_for_function("() => !document.getElementById('key-set').hidden")
    key = page.evaluate("() => JSON.parse(localStorage.getItem('sixfold.shortener.api_key'))")
    assert key.startswith("sfk_") and page.text_content("#key-id") == key.split(".")[0]
    return key


def shorten(page, long_url: str, alias: str = "") -> None:
    page.fill("#long-url", long_url)
    page.fill("#alias", alias)
    page.click("#shorten-button")


def shortened(page, long_url: str, alias: str = "") -> str:
    """Shorten through the page; the short URL it shows once the API answered."""
    before = page.text_content("#short-link")
    shorten(page, long_url, alias)
    try:
        page.wait_for_function("b => { const r = document.getElementById('result');"
                               " return !r.hidden && document.getElementById('short-link').textContent !== b; }",
                               arg=before)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"no short link shown; status {page.text_content('#shorten-status')!r}") from None
    link = page.locator("#short-link")
    assert link.get_attribute("href") == link.text_content()
    return link.text_content()


def follow_once(short_url: str) -> httpx.Response:
    return httpx.get(short_url, follow_redirects=False)


def seed_counts(key: str) -> None:
    store = SQLiteStore(Settings.from_env().sqlite_path)
    try:
        store.upsert_many(SERVING_TABLES["url_click_counts"], [
            {"key": key, "hour": hour, "referrer_host": host, "ua_family": family, "clicks": clicks}
            for hour, host, family, clicks in SEEDED])
    finally:
        store.close()


def ranked(by: int) -> list[tuple[str, int]]:
    counts: Counter[str] = Counter()
    for row in SEEDED:
        counts[row[by]] += row[3]
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


# ---- tests --------------------------------------------------------------------------------------
def test_sign_up_shorten_follow_alias_conflict_delete_and_stats(visitor, server: Server) -> None:
    page = visitor()
    assert page.locator("#key-get").is_visible() and page.text_content("#links-empty") == "Get an API key to make links."
    sign_up(page, "linker")

    # a generated key: the page shows it, and the link redirects to exactly what was typed
    short = shortened(page, LONG_URL)
    assert short.startswith(server.url + "/")
    key = short.rsplit("/", 1)[1]
    assert len(key) >= 6
    answer = follow_once(short)
    assert answer.status_code == 302 and answer.headers["location"] == LONG_URL
    assert listed_keys(page) == [key]
    assert page.text_content(f"#link-list li[data-key='{key}'] .long") == "→ " + LONG_URL

    # a custom alias, then the same alias again: the 409 reads as the API's reason
    aliased = shortened(page, LONG_URL + "?alias=1", ALIAS)
    assert aliased == f"{server.url}/{ALIAS}"
    assert follow_once(aliased).headers["location"] == LONG_URL + "?alias=1"
    shorten(page, "https://example.com/other", ALIAS)
    status = wait_for_text(page, "#shorten-status", "HTTP 409")
    assert f"custom_alias '{ALIAS}' is taken" in status and page.locator("#shorten-status.error").count() == 1
    assert listed_keys(page) == [ALIAS, key]

    # a URL the API refuses: its 422 reason is shown, nothing is listed
    shorten(page, "ftp://example.com/file")
    status = wait_for_text(page, "#shorten-status", "HTTP 422")
    assert "scheme 'ftp' is not allowed" in status
    assert listed_keys(page) == [ALIAS, key]

    # the list survives a reload (localStorage), and Delete makes the link answer 410
    page.reload()
    page.wait_for_function("() => document.body.dataset.ready === 'true'")
    assert listed_keys(page) == [ALIAS, key]
    page.click(f"#link-list li[data-key='{key}'] button.delete")
    page.wait_for_function("k => !document.querySelector(`#link-list li[data-key='${k}']`)", arg=key)
    assert "410 Gone" in page.text_content("#links-status")
    assert listed_keys(page) == [ALIAS]
    gone = follow_once(short)
    assert gone.status_code == 410 and gone.json()["error"]["code"] == "gone"

    # stats: first none counted (the job has not run), then the counts seeded into the serving table
    page.click(f"#link-list li[data-key='{ALIAS}'] button.stats")
    wait_for_text(page, "#stats-status", "No clicks counted yet")
    assert page.text_content("#stats-total") == "0"
    assert "hourly" in page.text_content("#stats") and "url_clicks" in page.text_content("#stats")
    seed_counts(ALIAS)
    page.click("#stats-refresh")
    total = sum(row[3] for row in SEEDED)
    page.wait_for_function("t => document.getElementById('stats-total').textContent === t", arg=str(total))
    bars = page.evaluate("""() => Array.from(document.querySelectorAll('#hourly rect.bar'))
        .map(r => [r.dataset.hour, Number(r.dataset.clicks)])""")
    per_hour: Counter[str] = Counter()
    for hour, _, _, clicks in SEEDED:
        per_hour[hour.strftime("%Y-%m-%dT%H:00:00.000Z")] += clicks
    assert {h: c for h, c in bars if c} == dict(per_hour)
    assert sum(c for _, c in bars) == total and len(bars) >= 24  # the empty hours between are drawn too
    shown = page.evaluate("""() => ['referrers', 'browsers'].map(id => Array.from(
        document.querySelectorAll('#' + id + ' li')).map(li => [li.dataset.name, Number(li.dataset.clicks)]))""")
    assert shown == [[list(r) for r in ranked(1)], [list(r) for r in ranked(2)]]
    page.screenshot(path=str(server.app.state.settings.var / "shortener-page.png"), full_page=True)

    # the page never asked another host for anything
    assert page.requested and all(url.startswith(server.url + "/") for url in page.requested), page.requested


def test_a_pasted_key_works_and_an_invalid_one_is_explained(visitor, server: Server) -> None:
    with httpx.Client(base_url=server.url) as client:
        _, token = signup(client, "paster")
        api_key = client.post("/v1/api-keys", headers=bearer(token)).json()["api_key"]
    page = visitor()
    page.fill("#paste-key", api_key)
    page.click("#paste button[type=submit]")
    page.wait_for_function("() => !document.getElementById('key-set').hidden")
    short = shortened(page, "example.com/typed/without/scheme")  # the page adds https://
    assert follow_once(short).headers["location"] == "https://example.com/typed/without/scheme"

    page.click("#forget")
    assert page.locator("#key-get").is_visible() and listed_keys(page) == []
    page.fill("#paste-key", "sfk_0000.not-a-real-secret")
    page.click("#paste button[type=submit]")
    shorten(page, LONG_URL)
    status = wait_for_text(page, "#shorten-status", "HTTP 401")
    assert "the API key is not valid" in status
    assert page.locator("#key-get").is_visible()  # offered a new one at once


def test_a_signed_in_session_gets_a_key_without_signing_up_again(visitor, server: Server) -> None:
    """The feed page keeps `sixfold.session`; this page offers a key for that user in one click."""
    with httpx.Client(base_url=server.url) as client:
        user_id, token = signup(client, "feeder")
    page = visitor()
    page.evaluate("s => localStorage.setItem('sixfold.session', JSON.stringify(s))",
                  {"user_id": str(user_id), "token": token})
    page.reload()
    assert page.text_content("#session-user") == str(user_id)
    page.click("#as-session")
    page.wait_for_function("() => !document.getElementById('key-set').hidden")
    shortened(page, LONG_URL)


def test_a_spent_quota_shows_the_429_and_when_to_retry(browser, home: Path, monkeypatch) -> None:
    monkeypatch.setenv("SIXFOLD_SHORTENER_LIMIT_PER_KEY", "1/day")
    with Server() as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url + "/s")
            sign_up(page, "spender")
            shortened(page, LONG_URL)
            shorten(page, LONG_URL + "/again")
            status = wait_for_text(page, "#shorten-status", "HTTP 429")
            assert "made its 1/day requests" in status and "Try again in " in status
            assert listed_keys(page) == [listed_keys(page)[0]]
        finally:
            context.close()


def test_page_is_self_contained(server: Server) -> None:
    response = httpx.get(server.url + "/s")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "<link" not in html and " src=" not in html and "@import" not in html and "url(" not in html
    assert 'id="shorten"' in html and 'id="stats"' in html
    landing = httpx.get(server.url + "/").text  # the platform's landing page links here and names the routes
    assert '<a href="/s">' in landing and "POST /v1/urls" in landing and "/v1/urls/{key}/stats" in landing
