"""End to end: the typeahead search page in headless Chromium against the real app and a real trie.

Every expected list comes from a brute force over the hand-written phrases below (prefix match,
score descending, phrase ascending, top 10), never from the server under test.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from browser import TIMEOUT_MS, Server
from playwright import sync_api as playwright_sync  # a dev dependency: missing, the run must fail, not skip

from sixfold.platform.settings import Settings
from sixfold.typeahead.serving import ArtifactStore
from sixfold.typeahead.trie import build_trie, write_artifact

pytestmark = pytest.mark.e2e


SCORED = {
    "new york": 980.0, "new york times": 720.0, "news": 950.0, "netflix": 900.0, "new balance": 450.0,
    "newton": 300.0, "nest thermostat": 260.0, "network": 500.0, "neural networks": 640.0,
    "nepal": 220.0, "neon": 220.0, "nebula": 180.0, "nelson mandela": 150.0, "new zealand": 610.0,
    "news today": 330.0, "newcastle": 120.0, "netherlands": 450.0, "near me": 870.0,
    "café crème": 400.0, "cafe": 380.0, "camera": 520.0, "car insurance": 470.0, "cat videos": 560.0,
    "python": 800.0, "pyspark": 210.0, "pizza near me": 690.0, "weather": 990.0, "weather tomorrow": 600.0,
    "world cup": 430.0, "wikipedia": 850.0,
}
EU_SCORED = {
    "netherlands": 900.0, "new york": 300.0, "news": 650.0, "neuschwanstein": 700.0, "nederland": 640.0,
    "netflix": 500.0, "nespresso": 650.0, "café crème": 800.0, "weather": 400.0,
}


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).lower()
    words = folded.split()
    return " ".join(words) + (" " if words and folded[-1:].isspace() else "")


def oracle(scored: dict[str, float], typed: str, k: int = 10) -> list[str]:
    prefix = normalize(typed)
    hits = [(phrase, score) for phrase, score in scored.items() if phrase.startswith(prefix)]
    return [phrase for phrase, _ in sorted(hits, key=lambda ps: (-ps[1], ps[0]))[:k]]


def build_artifact() -> None:
    settings = Settings.from_env()
    artifacts = ArtifactStore(settings)
    version, path = artifacts.new_version()
    write_artifact({"global": build_trie(SCORED.items()), "eu": build_trie(EU_SCORED.items())}, path, 2)
    artifacts.swap(version)


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    build_artifact()
    with Server() as running:
        yield running


@pytest.fixture
def page(browser, server: Server) -> Iterator:
    context = browser.new_context(viewport={"width": 900, "height": 640})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(server.url + "/typeahead")
    yield page
    context.close()


# ---- helpers reading the page -------------------------------------------------------------------
ROWS_JS = """() => Array.from(document.querySelectorAll('#suggestions li[role=option]')).map(li => ({
    phrase: li.dataset.phrase, recent: li.dataset.recent === 'true',
    typed: li.querySelector('.typed').textContent, completion: li.querySelector('.completion').textContent}))"""


def rows(page) -> list[dict]:
    return page.evaluate(ROWS_JS)


def wait_for_list(page, expected: list[str], recent: list[bool] | None = None) -> list[dict]:
    """Poll until the open list shows exactly `expected` (and the recent marks, when given)."""
    want = {"phrases": expected, "recent": recent}
    try:
        page.wait_for_function(
            """want => {
                const list = document.getElementById('suggestions');
                if (list.hidden) return false;
                const lis = Array.from(list.querySelectorAll('li[role=option]'));
                const got = lis.map(li => li.dataset.phrase);
                if (JSON.stringify(got) !== JSON.stringify(want.phrases)) return false;
                if (want.recent === null) return true;
                return JSON.stringify(lis.map(li => li.dataset.recent === 'true')) === JSON.stringify(want.recent);
            }""",
            arg=want, timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"list never became {expected} (recent={recent}); it shows {rows(page)}; "
                             f"status: {page.text_content('#status')!r}") from None
    return rows(page)


def wait_for_status(page, starts_with: str) -> str:
    try:
        page.wait_for_function("s => document.getElementById('status').textContent.startsWith(s)",
                               arg=starts_with, timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"status never started with {starts_with!r}; "
                             f"it is {page.text_content('#status')!r}") from None
    return page.text_content("#status")


def type_into_box(page, text: str) -> None:
    page.locator("#q").press_sequentially(text)


# ---- tests --------------------------------------------------------------------------------------
def test_oracle_is_interesting() -> None:
    assert len(SCORED) >= 30 and len(oracle(SCORED, "ne")) == 10 < sum(p.startswith("ne") for p in SCORED)
    assert oracle(SCORED, "ne")[-2:] == ["netherlands", "new balance"]  # a score tie, broken by phrase


def test_typing_shows_the_oracle_list_with_the_completion_in_bold(page, server: Server) -> None:
    box = page.locator("#q")
    assert box.get_attribute("role") == "combobox"
    assert page.locator("#suggestions").get_attribute("role") == "listbox"

    type_into_box(page, "ne")
    shown = wait_for_list(page, oracle(SCORED, "ne"))
    assert all(r["typed"] == "ne" and r["typed"] + r["completion"] == r["phrase"] for r in shown)
    assert not any(r["recent"] for r in shown)
    weights = page.evaluate("""() => { const li = document.querySelector('#suggestions li');
        return [getComputedStyle(li.querySelector('.typed')).fontWeight,
                getComputedStyle(li.querySelector('.completion')).fontWeight]; }""")
    assert int(weights[0]) < 600 <= int(weights[1])
    gap = page.evaluate("""() => { const li = document.querySelector('#suggestions li');
        return li.querySelector('.completion').getBoundingClientRect().left
             - li.querySelector('.typed').getBoundingClientRect().right; }""")
    assert abs(gap) < 1, f"the typed part and the completion must read as one word (gap {gap}px)"
    assert box.get_attribute("aria-expanded") == "true"
    assert page.locator("#suggestions li[role=option]").first.get_attribute("aria-selected") == "false"
    assert page.text_content("#status") == ""
    box.press("ArrowDown")  # highlight one row for the screenshot (looked at by a person, not asserted)
    page.screenshot(path=str(server.app.state.settings.var / "typeahead-page.png"))

    type_into_box(page, "w")
    wait_for_list(page, oracle(SCORED, "new"))
    type_into_box(page, " y")
    shown = wait_for_list(page, oracle(SCORED, "new y"))
    assert [r["typed"] for r in shown] == ["new y"] * len(shown)

    box.fill("")
    type_into_box(page, "CAFÉ")  # normalised the same way on both sides
    wait_for_list(page, oracle(SCORED, "café"))
    assert oracle(SCORED, "café") == ["café crème"]

    box.press("Escape")
    page.wait_for_function("() => document.getElementById('suggestions').hidden")
    assert box.get_attribute("aria-expanded") == "false"


def test_arrow_keys_and_enter_pick_the_second_suggestion(page) -> None:
    box = page.locator("#q")
    type_into_box(page, "ne")
    expected = oracle(SCORED, "ne")
    wait_for_list(page, expected)
    box.press("ArrowDown")
    box.press("ArrowDown")
    second = page.locator("#suggestions li[role=option]").nth(1)
    assert second.get_attribute("aria-selected") == "true"
    assert box.get_attribute("aria-activedescendant") == second.get_attribute("id")
    box.press("ArrowUp")
    assert page.locator("#suggestions li[role=option]").nth(0).get_attribute("aria-selected") == "true"
    box.press("ArrowDown")
    box.press("Enter")
    assert box.input_value() == expected[1]
    page.wait_for_function("() => document.getElementById('suggestions').hidden")


def test_region_eu_shows_the_eu_list_and_an_unknown_region_says_why(page) -> None:
    page.select_option("#region", "eu")
    type_into_box(page, "ne")
    wait_for_list(page, oracle(EU_SCORED, "ne"))
    assert oracle(EU_SCORED, "ne") != oracle(SCORED, "ne")
    page.select_option("#region", "")
    page.locator("#q").focus()
    wait_for_list(page, oracle(SCORED, "ne"))
    page.select_option("#region", "us")  # this artifact has no "us" trie: the server answers 404
    page.locator("#q").focus()
    assert "no suggestions for region 'us'" in wait_for_status(page, "suggestions unavailable: ")


def test_submitted_queries_come_back_as_recent(page, server: Server) -> None:
    box = page.locator("#q")

    type_into_box(page, "ne")
    expected = oracle(SCORED, "ne")
    wait_for_list(page, expected)
    box.press("ArrowDown")
    box.press("ArrowDown")
    box.press("Enter")
    picked = expected[1]
    assert box.input_value() == picked

    box.fill("")
    wait_for_list(page, [picked], [True])

    type_into_box(page, picked[:3])
    server_part = [p for p in oracle(SCORED, picked[:3]) if p != picked]
    wait_for_list(page, ([picked] + server_part)[:10], ([True] + [False] * len(server_part))[:10])
    page.screenshot(path=str(server.app.state.settings.var / "typeahead-page-recent.png"))

    # clicking picks too, and the newest submission leads the recent list
    box.fill("")
    type_into_box(page, "py")
    wait_for_list(page, oracle(SCORED, "py"))
    page.locator("#suggestions li[role=option]", has_text="pyspark").click()
    assert box.input_value() == "pyspark"
    box.fill("")
    wait_for_list(page, ["pyspark", picked], [True, True])
    assert json.loads(page.evaluate("() => localStorage.getItem('sixfold.typeahead.recent')")) == ["pyspark", picked]

    # Enter with nothing highlighted submits the typed text; a repeat is not stored twice
    type_into_box(page, "pyspark")
    wait_for_list(page, ["pyspark"], [True])
    box.press("Enter")
    box.fill("")
    wait_for_list(page, ["pyspark", picked], [True, True])

    # the cache survives a reload (localStorage), and the page refocuses the box
    page.reload()
    page.locator("#q").focus()
    wait_for_list(page, ["pyspark", picked], [True, True])


def test_a_signed_in_user_gets_their_searches_back_and_recorded(page, server: Server) -> None:
    """With a session (the feed page's sign-up keeps one), suggestions carry user_id and the token,
    and a submitted search is recorded as that user's search event."""
    import httpx

    from sixfold.platform.bus import open_bus

    answer = httpx.post(server.url + "/v1/users", json={"username": "searcher"}).json()
    seen: list[tuple[str, str | None]] = []
    page.on("request", lambda r: seen.append((r.url, r.headers.get("authorization"))))
    session = {"user_id": str(answer["user_id"]), "token": answer["token"]}  # as the feed page keeps it:
    page.evaluate("s => localStorage.setItem('sixfold.session', JSON.stringify(s))", session)  # 64-bit ids as text
    page.reload()
    type_into_box(page, "ne")
    wait_for_list(page, oracle(SCORED, "ne"))  # no recent searches of theirs yet: the trie's answer
    page.locator("#q").press("Enter")
    page.wait_for_function("() => !document.getElementById('searched').hidden")
    asked = [(url, auth) for url, auth in seen if "/v1/suggestions?" in url]
    assert asked and all(f"user_id={answer['user_id']}" in url and auth == f"Bearer {answer['token']}"
                         for url, auth in asked)
    consumer = open_bus(server.app.state.settings).consumer("search-events", "page-test")
    for _ in range(50):
        events = [m.json() for m in consumer.poll(timeout_s=0.1)]
        if events:
            break
    assert [(e["user_id"], e["query"]) for e in events] == [(str(answer["user_id"]), "ne")]


def test_out_of_order_answers_are_dropped(page) -> None:
    held: list = []

    def hold_first(route) -> None:
        if "prefix=n&" in route.request.url and not held:
            held.append(route)  # answered only after the newer request has been rendered
        else:
            route.continue_()

    page.route("**/v1/suggestions?*", hold_first)
    type_into_box(page, "n")
    for _ in range(100):  # let the debounce fire and the request reach the route handler
        if held:
            break
        page.wait_for_timeout(20)
    assert held, "the page never asked for prefix 'n'"
    type_into_box(page, "e")
    wait_for_list(page, oracle(SCORED, "ne"))
    held[0].fulfill(status=200, content_type="application/json",
                    body=json.dumps({"prefix": "n", "suggestions": [{"phrase": "nothing stale", "score": 1}]}))
    # a round trip after the stale answer: the list must still be the one for "ne"
    assert page.evaluate("() => fetch('/v1/health').then(r => r.status)") == 200
    assert [r["phrase"] for r in rows(page)] == oracle(SCORED, "ne")


def test_without_a_trie_the_status_line_shows_the_503(browser, home: Path, monkeypatch) -> None:
    empty = home / "no-trie"
    empty.mkdir()
    monkeypatch.setenv("SIXFOLD_HOME", str(empty))
    with Server() as server:
        context = browser.new_context()
        try:
            page = context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            page.goto(server.url + "/typeahead")
            type_into_box(page, "ne")
            status = wait_for_status(page, "suggestions unavailable: no trie has been built yet")
            assert "sixfold typeahead build" in status
            assert rows(page) == []
        finally:
            context.close()


def test_page_is_self_contained(server: Server) -> None:
    response = httpx.get(server.url + "/typeahead")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    html = response.text
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert 'role="combobox"' in html and 'role="listbox"' in html
