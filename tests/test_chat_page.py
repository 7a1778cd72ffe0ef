"""End to end: the chat page `/chat` in headless Chromium, two users in two browser contexts.

Ann writes to Bob while Bob's page is closed: her message shows one tick (sent). Bob opens the page
again and his browser gets it but has not opened the chat: two ticks (delivered). Bob opens the chat
in a background tab: still two ticks; he looks at the tab: two blue ticks (read). A MutationObserver
in Ann's page records every state the tick went through, so the order is checked, not only the end. Then Bob answers and Ann's page,
open on the chat, reads it. Every message shown equals what was typed, and the server holds only the
encrypted envelopes (history read with a plain HTTP client), sealed by the page's in-browser NaCl;
what a browser sealed opens with PyNaCl, and what the Python client sealed opens in the browser.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from accounts import bearer
from browser import TIMEOUT_MS, People, Server, goto
from playwright import sync_api as playwright_sync  # a dev dependency: missing, the run must fail, not skip

from sixfold.chat.client import SecureChat
from sixfold.chat.client import sign_up as sign_up_user
from sixfold.chat.e2e import DeviceKeys, open_sealed

pytestmark = pytest.mark.e2e

TICK_LOG = """() => {
  window.tickLog = [];
  const record = () => {
    const li = document.querySelector('#messages li[data-direction="out"]');
    const status = li ? li.dataset.status : null;
    if (status && window.tickLog[window.tickLog.length - 1] !== status) window.tickLog.push(status);
  };
  new MutationObserver(record).observe(document.getElementById('messages'),
                                       {childList: true, subtree: true, attributes: true});
  record();
}"""

# the tab going to the background and back (headless pages are always visible otherwise)
VISIBILITY = """(state) => {
  Object.defineProperty(document, 'visibilityState', {configurable: true, get: () => state});
  Object.defineProperty(document, 'hidden', {configurable: true, get: () => state === 'hidden'});
  document.dispatchEvent(new Event('visibilitychange'));
}"""


@pytest.fixture
def server(home: Path) -> Iterator[Server]:
    with Server() as running:
        yield running


@pytest.fixture
def person(browser, server: Server) -> Iterator[Callable[[], Any]]:
    """A browser context of its own (own localStorage: one person, one device) with /chat open."""
    people = People(browser, server.url + "/chat", width=900)
    yield people
    people.close()


def goto_chat(page: Any, server: Server) -> None:
    goto(page, server.url + "/chat")


def sign_up(page: Any, username: str) -> str:
    page.fill("#username", username)
    page.click("#signup button[type=submit]")
    online(page)
    return str(page.text_content("#me-id"))


def online(page: Any) -> None:
    try:
        page.wait_for_function("() => document.body.dataset.connection === 'online'", timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"the page never connected: {page.text_content('#connection')!r}; "
                             f"{page.text_content('#account-status')!r}") from None


def open_chat(page: Any, peer: str) -> None:
    page.fill("#peer-id", peer)
    page.click("#open-form button[type=submit]")
    page.wait_for_function("(p) => document.getElementById('thread-title').textContent === 'User ' + p", arg=peer)


def send(page: Any, text: str) -> None:
    page.fill("#text", text)
    page.click("#send")


def wait_status(page: Any, wanted: str, index: int = 0) -> None:
    try:
        page.wait_for_function("([w, i]) => document.querySelectorAll('#messages li[data-direction=\"out\"]')[i]"
                               "?.dataset.status === w", arg=[wanted, index], timeout=TIMEOUT_MS)
    except playwright_sync.TimeoutError:
        raise AssertionError(f"the tick never said {wanted}: {shown(page, 'out')}; "
                             f"{page.text_content('#send-status')!r}") from None


def shown(page: Any, direction: str) -> list[dict[str, str]]:
    return page.evaluate("(d) => Array.from(document.querySelectorAll(`#messages li[data-direction=\"${d}\"]`))"
                         ".map(li => ({text: li.querySelector('.text').textContent, status: li.dataset.status,"
                         " ticks: li.querySelector('.ticks')?.textContent || ''}))", direction)


def wait_shown(page: Any, direction: str, texts: list[str]) -> None:
    deadline = time.monotonic() + TIMEOUT_MS / 1000
    while [m["text"] for m in shown(page, direction)] != texts:
        if time.monotonic() > deadline:
            raise AssertionError(f"{direction} messages: {shown(page, direction)}, wanted {texts}")
        page.wait_for_timeout(50)


async def python_device_says(base: str, to: int, text: str) -> int:
    cat = await sign_up_user(base, "cat")
    device = await SecureChat.open(base, cat, "tablet")
    try:
        await device.send_text(text, to=to)
    finally:
        await device.close()
    return cat.user_id


def run_async(work: Any) -> Any:
    """Run a coroutine to its end on a thread of its own (Playwright's sync API holds this thread's loop)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, work).result(timeout=60)


def test_two_browsers_exchange_messages_and_watch_the_ticks(person, server: Server) -> None:
    bob = person()
    bob_id = sign_up(bob, "bob")
    bob_device = bob.text_content("#device-id")
    assert bob_device and bob_device.startswith("web-")
    bob.goto("about:blank")  # Bob's phone is off: his device (and key) is registered, no socket

    ann = person()
    ann_id = sign_up(ann, "ann")
    assert ann_id != bob_id
    open_chat(ann, bob_id)
    ann.evaluate(TICK_LOG)
    hello = "Hi Bob! Lunch at 12:30? 🍜 <b>not bold</b>"
    send(ann, hello)
    wait_status(ann, "sent")
    ann.wait_for_timeout(800)  # nobody has it yet: it stays at one tick
    assert shown(ann, "out") == [{"text": hello, "status": "sent", "ticks": "✓"}]

    goto_chat(bob, server)  # Bob is back: the same device from localStorage, the pending message replayed
    online(bob)
    assert bob.text_content("#device-id") == bob_device and bob.text_content("#me-id") == bob_id
    wait_status(ann, "delivered")
    bob.wait_for_function("() => document.querySelector('#conversations .unread')?.textContent === '1'")
    ann.wait_for_timeout(800)  # delivered, not read: Bob has not opened the chat
    assert shown(ann, "out")[0]["status"] == "delivered" and shown(ann, "out")[0]["ticks"] == "✓✓"

    # Bob opens the chat while his tab is in the background: shown, but nobody has seen it yet
    bob.evaluate(VISIBILITY, "hidden")
    bob.click(f"#conversations li[data-peer='{ann_id}'] button")
    wait_shown(bob, "in", [hello])
    ann.wait_for_timeout(800)
    assert shown(ann, "out")[0]["status"] == "delivered"
    bob.evaluate(VISIBILITY, "visible")  # he looks at it
    wait_status(ann, "read")
    assert ann.evaluate("() => window.tickLog") in (["sending", "sent", "delivered", "read"],
                                                    ["sent", "delivered", "read"])
    tick_color = "() => getComputedStyle(document.querySelector('#messages li.out .ticks')).color"
    assert ann.evaluate(tick_color) == "rgb(14, 165, 233)"  # two blue ticks

    # Bob answers; Ann's page has the chat open and visible, so it reads it at once
    reply = "Yes! See you at \"the usual\" place & bring 2 umbrellas"
    send(bob, reply)
    wait_shown(ann, "in", [reply])
    wait_status(bob, "read")
    wait_shown(ann, "out", [hello])
    wait_shown(bob, "out", [reply])

    # the server only ever had envelopes sealed in the browsers
    token = json.loads(ann.evaluate("() => localStorage.getItem('sixfold.session')"))["token"]
    low, high = sorted((int(ann_id), int(bob_id)))
    history = httpx.get(f"{server.url}/v1/chat/conversations/d:{low}:{high}/messages", headers=bearer(token),
                        timeout=10).json()["messages"]
    assert len(history) == 2
    for message in history:
        envelope = json.loads(message["body"])
        assert envelope["v"] == 1 and set(envelope["to"]) == {f"{bob_id}/{bob_device}" if message["from"] == int(ann_id)
                                                              else f"{ann_id}/{ann.text_content('#device-id')}"}
        assert hello not in message["body"] and reply not in message["body"] and "Lunch" not in message["body"]
    # what tweetnacl sealed in Ann's browser opens with PyNaCl and the key Bob's browser holds (one format)
    bob_keys = json.loads(bob.evaluate("() => localStorage.getItem('sixfold.chat.devices')"))[bob_id]
    from_ann = next(m for m in history if m["from"] == int(ann_id))
    assert open_sealed(from_ann["body"], DeviceKeys.from_private_key(bob_keys["secret_key"]),
                       f"{bob_id}/{bob_device}") == hello

    # a reload shows the conversation from history, decrypted in the browser with the stored key
    goto_chat(ann, server)
    online(ann)
    open_chat(ann, bob_id)
    wait_shown(ann, "out", [hello])
    wait_shown(ann, "in", [reply])

    # and the other way: a Python device (PyNaCl, sixfold.chat.client) writes; Ann's browser opens it
    note = "from a Python device: ünïcode & <tags> stay text"
    cat_id = run_async(python_device_says(server.url, int(ann_id), note))
    ann.wait_for_function("(p) => document.querySelector(`#conversations li[data-peer='${p}'] .unread`)"
                          "?.textContent === '1'", arg=str(cat_id))
    open_chat(ann, str(cat_id))
    wait_shown(ann, "in", [note])

    for page in (ann, bob):
        off_server = [u for u in page.requested if not u.split("://", 1)[-1].startswith(server.url.split("://")[1])
                      and not u.startswith("about:")]
        assert off_server == [], off_server
