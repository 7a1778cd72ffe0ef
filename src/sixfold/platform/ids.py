"""Time-ordered 64-bit ids from a sequencer (the course's design, Snowflake's layout).

    | 1 bit 0 | 41 bits ms since 2020-01-01 UTC | 10 bits worker | 12 bits sequence |

A later id from one worker is always larger (a worker whose clock goes back keeps counting from its last millisecond, and one that
runs out of sequence numbers borrows the next millisecond).
Ids from different workers in the same millisecond are ordered by worker id.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Annotated, Callable

from annotated_types import Interval

EPOCH_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z
WORKER_BITS, SEQUENCE_BITS = 10, 12
MAX_WORKER = (1 << WORKER_BITS) - 1
MAX_SEQUENCE = (1 << SEQUENCE_BITS) - 1
ID_LIMIT = 1 << 63  # the sign bit is 0: every id is below this, and fits the stores' signed 64-bit keys

# An id as a request names it (a body field, a path or query parameter): what is out of this range
# can name nothing, and would not fit a store's key, so the edge refuses it with a 422.
Id = Annotated[int, Interval(ge=0, lt=ID_LIMIT)]


class Sequencer:
    def __init__(self, worker: int = 0, clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        if not 0 <= worker <= MAX_WORKER:
            raise ValueError(f"worker id must be 0..{MAX_WORKER}, got {worker}")
        self.worker = worker
        self.clock_ms = clock_ms
        self._last_ms = -1
        self._sequence = 0
        self._lock = threading.Lock()

    def next_id(self) -> int:
        with self._lock:
            now = max(self.clock_ms(), self._last_ms)  # never go back in time
            if now == self._last_ms:
                self._sequence += 1
                if self._sequence > MAX_SEQUENCE:  # 4096 ids in one millisecond: borrow the next one
                    now, self._sequence = self._last_ms + 1, 0
            else:
                self._sequence = 0
            self._last_ms = now
            return ((now - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)) | (self.worker << SEQUENCE_BITS) | self._sequence


def id_time(identifier: int) -> datetime:
    """When an id was made (millisecond precision)."""
    ms = (identifier >> (WORKER_BITS + SEQUENCE_BITS)) + EPOCH_MS
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def first_id_at(when: datetime) -> int:
    """The smallest id any worker can make at `when` (a cursor for "posts before this time")."""
    ms = int(when.timestamp() * 1000)
    return (ms - EPOCH_MS) << (WORKER_BITS + SEQUENCE_BITS)
