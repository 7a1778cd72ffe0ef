"""Per-app shared resources (bus, store, caches) opened once, on first use, by whichever request comes first."""

from __future__ import annotations

import threading
from typing import Any, Callable, TypeVar

T = TypeVar("T")
_lock = threading.RLock()  # re-entrant: one factory may need another resource


def shared(state: Any, name: str, factory: Callable[[], T]) -> T:
    """`state.<name>`, created by `factory()` the first time (double-checked, so only once)."""
    value = getattr(state, name, None)
    if value is None:
        with _lock:
            value = getattr(state, name, None)
            if value is None:
                value = factory()
                setattr(state, name, value)
    return value


def app_store(app: Any) -> Any:
    """The app's one serving store, shared by every router."""
    from sixfold.platform.store import open_store

    return shared(app.state, "store", lambda: open_store(app.state.settings))


def app_bus(app: Any) -> Any:
    """The app's one event bus, shared by every router."""
    from sixfold.platform.bus import open_bus

    return shared(app.state, "bus", lambda: open_bus(app.state.settings))


def app_sequencer(app: Any) -> Any:
    """The app's one id sequencer (users, posts, media, stories, ...), its worker id leased in the serving
    store so that no two server processes make ids with the same worker bits."""
    from sixfold.platform.worker_ids import LeasedSequencer

    return shared(app.state, "sequencer", lambda: LeasedSequencer(app_store(app)))


def store_on_loop(settings: Any) -> bool:
    """Where store work belongs: on the event loop on the embedded profile (SQLite answers in microseconds,
    and a worker thread would hold the GIL beside the loop in 5 ms slices, so every request on the loop
    queues behind it), in the thread pool on cluster (network round trips must not stall the loop). One
    answer for the fast paths, the chat gateway and `on_store`."""
    return settings.profile == "embedded"


async def on_store(app: Any, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` where store work belongs (`store_on_loop`). For routes whose work is mostly the store's,
    e.g. shortening a URL."""
    if store_on_loop(app.state.settings):
        return fn(*args)
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args)
