"""The live system on one machine: every built system's stream consumers, run beside the server.

Each system declares its consumers (`consumers()` in its package, the same work its `streams/`
door runs as a process); `sixfold serve` on the embedded profile runs them all in threads, so a
post reaches timelines and search, searches and clicks reach the lake, with no other command.
"""

from __future__ import annotations

from sixfold.platform.consumer import Consumer, ConsumerThreads
from sixfold.platform.settings import Settings


def all_consumers() -> list[Consumer]:
    from sixfold.chat.groups import consumers as chat_consumers
    from sixfold.docs.views import consumers as docs_consumers
    from sixfold.feed.fanout import consumers as feed_consumers
    from sixfold.shortener.clicks import consumers as shortener_consumers
    from sixfold.typeahead.collection import consumers as typeahead_consumers

    return [*feed_consumers(), *typeahead_consumers(), *shortener_consumers(), *chat_consumers(), *docs_consumers()]


def start_consumers(settings: Settings, idle_s: float = 0.2) -> ConsumerThreads:
    """Every consumer in a thread of this process; `.stop()` ends them between passes."""
    return ConsumerThreads(settings, all_consumers(), idle_s=idle_s).start()
