"""End to end: the docs editor page `/docs/{id}` in headless Chromium, two users typing into one document at once.

Ann signs up on `/docs`, creates a document and shares it with Bob as an editor from the page; a seed
line is written through `POST /v1/docs/{id}/edits` and reaches her open editor over the WebSocket. Both
pages then type at once (keyboard.type calls interleaved while both are connected, Ann at the end of the
first line, Bob at the end of the text), each from its own alphabet (Ann lowercase, accents and an emoji
beyond the BMP, so the browser's UTF-16 and the server's code points must agree; Bob capitals and
digits). The oracle: both editors end with the same text, equal to what `GET /v1/docs/{id}` says; the
characters of Ann's alphabet in it are exactly what Ann typed, in order (each keystroke lands after her
previous one, whatever arrives around it), the same for Bob, and the seed is intact. Presence (who is
here, the other's cursor), a dropped connection (what was typed meanwhile arrives after the page
reconnects), a restore from the history list, which both editors follow, and a comment on a selection
are checked too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts import bearer
from browser import TIMEOUT_MS, People, Server, goto
from playwright import sync_api as playwright_sync  # a dev dependency: missing, the run must fail, not skip

pytestmark = pytest.mark.e2e

SEED = "##\n##"
ANN = ["the quick ", "brown fox ", "jumps over ", "the lazy dog, ", "café ", "😀 naïve ", "wor"]
BOB = ["PACK-", "MY-BOX-", "WITH-", "FIVE-", "DOZEN-", "LIQUOR-", "JUGS-42"]
ANN_CHARS = re.compile(r"[a-zçéï😀 ,]")
BOB_CHARS = re.compile(r"[A-Z0-9\-]")


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def person(browser, server: Server) -> Iterator[Callable[[], Any]]:
    """A browser context of its own (own localStorage: one person) with /docs open."""
    people = People(browser, server.url + "/docs", width=1100)
    yield people
    people.close()


def sign_up(page: Any, username: str) -> str:
    page.fill("#username", username)
    page.click("#signup button[type=submit]")
    page.wait_for_function("() => document.getElementById('me-id').textContent !== ''")
    return str(page.text_content("#me-id"))


def online(page: Any) -> None:
    try:
        page.wait_for_function("() => document.body.dataset.connection === 'online'", timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"the page never synced: {page.text_content('#connection')!r}; "
                             f"{page.text_content('#doc-status')!r}; errors {page.errors}") from None


def token_of(page: Any) -> str:
    return str(page.evaluate("() => JSON.parse(localStorage.getItem('sixfold.session')).token"))


def text_of(page: Any) -> str:
    return str(page.evaluate("() => window.docsPage.text()"))


def settled(pages: list[Any], server: Server, doc_id: str, token: str) -> str:
    """Wait until every page has nothing unacknowledged and all show the server's text; return it."""
    deadline = TIMEOUT_MS * 2
    step = 100
    server_text = ""
    for _ in range(deadline // step):
        states = [page.evaluate("() => window.docsPage.state()") for page in pages]
        texts = [text_of(page) for page in pages]
        server_text = httpx.get(f"{server.url}/v1/docs/{doc_id}", headers=bearer(token), timeout=10).json()["content"]
        if all(s["pending"] == 0 and s["synced"] for s in states) and all(t == server_text for t in texts):
            loro = [page.evaluate("() => window.docsPage.loroText()") for page in pages]
            assert loro == texts, "a page's LoroDoc and its editor differ"
            return server_text
        pages[0].wait_for_timeout(step)
    raise AssertionError(f"the pages never agreed: server {server_text!r}, pages {[text_of(p) for p in pages]!r}, "
                         f"states {[p.evaluate('() => window.docsPage.state()') for p in pages]}")


def test_two_pages_typing_at_once_end_with_the_same_text_as_the_server(person, server: Server) -> None:
    ann = person()
    sign_up(ann, "ann")
    ann.fill("#new-title", "Shared draft")
    ann.click("#create")
    ann.wait_for_url(re.compile(r".*/docs/[0-9]+$"))
    ann.wait_for_function("() => document.body.dataset.ready === 'true'")
    online(ann)
    doc_id = ann.url.rsplit("/", 1)[1]
    assert ann.text_content("#doc-title") == "Shared draft" and ann.text_content("#role") == "owner"
    ann_token = token_of(ann)

    bob = person()
    bob_id = sign_up(bob, "bob")
    ann.fill("#member-id", bob_id)
    ann.click("#add-member")
    ann.wait_for_function("() => /now an editor/.test(document.getElementById('share-status').textContent)")

    seeded = httpx.post(f"{server.url}/v1/docs/{doc_id}/edits", json=[[0, 0, SEED]], headers=bearer(ann_token),
                        timeout=10)
    assert seeded.status_code == 200, seeded.text
    seed_version = seeded.json()["version"]
    ann.wait_for_function("(s) => window.docsPage.text() === s", arg=SEED)  # over the WebSocket

    goto(bob, f"{server.url}/docs/{doc_id}")
    online(bob)
    assert text_of(bob) == SEED and bob.text_content("#role") == "editor"
    ann.wait_for_function("() => document.querySelectorAll('#peers li').length === 2")
    assert sorted(ann.eval_on_selector_all("#peers li .name", "els => els.map(e => e.textContent)")) == \
        ["ann (you)", "bob"]

    ann.click(".cm-content")
    ann.keyboard.press("Control+Home")
    ann.keyboard.press("End")
    bob.click(".cm-content")
    bob.keyboard.press("Control+End")
    for a, b in zip(ANN, BOB, strict=True):  # both connected; each types while the other's frames are in flight
        ann.keyboard.type(a)
        bob.keyboard.type(b)

    final = settled([ann, bob], server, doc_id, ann_token)
    overlaps = [page.evaluate("() => window.docsPage.state().concurrent") for page in (ann, bob)]
    assert sum(overlaps) > 0, "no remote update ever arrived while a page had its own in flight: nothing overlapped"
    assert "".join(ANN_CHARS.findall(final)) == "".join(ANN)
    assert "".join(BOB_CHARS.findall(final)) == "".join(BOB)
    assert re.sub(r"[^#\n]", "", final) == SEED
    assert len(final) == len(SEED) + sum(len(s) for s in ANN + BOB)
    version = httpx.get(f"{server.url}/v1/docs/{doc_id}", headers=bearer(ann_token), timeout=10).json()["version"]
    ann.wait_for_function("(v) => Number(document.body.dataset.version) <= v && document.body.dataset.pending === '0'",
                          arg=version)

    # presence: each page draws the other's cursor; Ann's ends after her last keystroke ("wor")
    ann.wait_for_function("() => document.querySelector('#editor .remote-caret[data-user=\"bob\"]') !== null")
    bob.wait_for_function("() => document.querySelector('#editor .remote-caret[data-user=\"ann\"]') !== null")
    # word suggestions for the word at Ann's cursor (the server loads its word list on the first request)
    ann.wait_for_function("() => document.querySelectorAll('#suggestions button.suggestion').length > 0",
                          timeout=3 * TIMEOUT_MS)
    assert all(w.startswith("wor") for w in ann.eval_on_selector_all("#suggestions button", "els => els.map(e => e.textContent)"))

    # Bob's connection drops; what he types meanwhile is kept, and after the page reconnects (hello with its
    # version vector) it is sent again and everybody has it
    bob.evaluate("() => window.docsPage.drop()")
    bob.keyboard.type("-AGAIN")
    bob.wait_for_function("() => window.docsPage.state().syncs === 2")
    final = settled([ann, bob], server, doc_id, ann_token)
    assert "".join(BOB_CHARS.findall(final)) == "".join(BOB) + "-AGAIN"
    assert "".join(ANN_CHARS.findall(final)) == "".join(ANN)

    # restore the seed from Ann's history list (one version per keystroke: it is on an older page)
    for _ in range(10):
        if ann.query_selector(f"#history li[data-version='{seed_version}'] button"):
            break
        ann.click("#history-more")
        ann.wait_for_function("(n) => document.querySelectorAll('#history li').length > n",
                              arg=len(ann.query_selector_all("#history li")))
    ann.click(f"#history li[data-version='{seed_version}'] button")
    assert settled([ann, bob], server, doc_id, ann_token) == SEED
    assert re.fullmatch(rf"Restored version {seed_version} as version \d+\.", str(ann.text_content("#history-status")))

    # a comment on Ann's selection (the second line): offsets in code points, the quote as selected
    ann.click(".cm-content")
    ann.keyboard.press("Control+End")
    ann.keyboard.press("Shift+Home")
    ann.fill("#comment-text", "two hashes")
    ann.click("#add-comment")
    ann.wait_for_function("() => document.querySelectorAll('#comments li[data-comment]').length === 1")
    assert ann.text_content("#comments li .quote") == "“##”"
    comments = httpx.get(f"{server.url}/v1/docs/{doc_id}/comments", headers=bearer(ann_token), timeout=10).json()
    assert [(c["start"], c["end"], c["quote"], c["text"]) for c in comments["comments"]] == [(3, 5, "##", "two hashes")]

    for page in (ann, bob):
        assert page.errors == []
        off_server = [u for u in page.requested if not u.split("://", 1)[-1].startswith(server.url.split("://")[1])
                      and not u.startswith(("about:", "data:"))]
        assert off_server == [], off_server
