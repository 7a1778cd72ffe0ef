"""Generated short keys: unique across every API process, unpredictable, at least six characters.

The course's short-URL generator is a sequencer whose ids are base-58 encoded, starting at
1,000,000,000 (the range below is kept for custom aliases), handed out at random from a pool of
unused ids. Here:

* Uniqueness without a coordinator on the hot path: a process leases a block of `block` counters
  at a time by advancing `url_id_counter.leased` with the store's atomic `add` (a SQLite write
  transaction; a compare-and-set lightweight transaction on Cassandra), so no two processes ever
  hold the same counter, whatever block sizes they use. Counters left unused when a process stops are simply never issued.
* Unpredictability: a counter becomes an id through a keyed permutation (a 4-round Feistel
  network over 42 bits with BLAKE2b rounds, cycle-walked into 2**41 values), then 1e9 is added.
  A permutation cannot map two counters to one id, and without the shared secret nothing about
  one key tells which others exist: 2**41 possible ids hold the issued ones sparsely, unlike a
  dense counter range where every neighbour of a key is a live link.
* The pool: each block's ids are drawn uniformly at random (`secrets`), and the next block is
  leased in a background thread once the pool runs low, so creations never wait on the store
  for a lease.

Ids from 1e9 to 1e9 + 2**41 encode to 6 or 7 base-58 characters. Past 2**41 counters (2.2
trillion links) counters map to 1e9 + counter unpermuted, still unique, 8 characters and more.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
from collections.abc import Callable
from datetime import UTC, datetime

from schemas.records import SERVING_TABLES
from sixfold.platform.store import ServingStore

COUNTER = SERVING_TABLES["url_id_counter"]
SECRETS = SERVING_TABLES["shortener_secrets"]
FIRST_ID = 1_000_000_000
DOMAIN_BITS = 41
_HALF = 21  # the Feistel network works on 2 x 21 bits and walks back into 41
_MASK = (1 << _HALF) - 1
ROUNDS = 4
log = logging.getLogger("sixfold.shortener")


def shared_secret(store: ServingStore) -> bytes:
    """The permutation key every process shares: made once (insert_if_absent), then read."""
    row = store.get(SECRETS, {"name": "key_permutation"})
    if row is None:
        store.insert_if_absent(SECRETS, {"name": "key_permutation", "secret": secrets.token_hex(32),
                                         "created_at": datetime.now(UTC)})
        row = store.get(SECRETS, {"name": "key_permutation"})
    return bytes.fromhex(row["secret"])


class Permutation:
    """A keyed bijection of 0..2**41-1 (Feistel network, cycle walking)."""

    def __init__(self, secret: bytes) -> None:
        self._keys = [hashlib.blake2b(secret, digest_size=32, person=f"round{r}".encode()).digest()
                      for r in range(ROUNDS)]

    def _round(self, r: int, half: int) -> int:
        digest = hashlib.blake2b(half.to_bytes(3, "big"), key=self._keys[r], digest_size=4).digest()
        return int.from_bytes(digest, "big") & _MASK

    def _feistel(self, value: int) -> int:
        left, right = value >> _HALF, value & _MASK
        for r in range(ROUNDS):
            left, right = right, left ^ self._round(r, right)
        return (left << _HALF) | right

    def forward(self, counter: int) -> int:
        if not 0 <= counter < 1 << DOMAIN_BITS:
            raise ValueError(f"counter {counter} is outside 0..2**{DOMAIN_BITS}-1")
        value = self._feistel(counter)
        while value >= 1 << DOMAIN_BITS:  # cycle walking: stays a bijection of the smaller domain
            value = self._feistel(value)
        return value


def counter_to_id(permutation: Permutation, counter: int) -> int:
    if counter < 1 << DOMAIN_BITS:
        return FIRST_ID + permutation.forward(counter)
    return FIRST_ID + counter  # past the permuted range: above every permuted id, so still unique


def lease_block(store: ServingStore, size: int) -> range:
    """`size` counters no other lease ever got (processes may lease blocks of different sizes)."""
    end = store.add(COUNTER, {"name": "generated"}, "leased", size)
    return range(end - size, end)


class KeyPool:
    """Unused generated ids of this process, drawn at random; refilled in the background.

    The pool holds leased counters; a drawn counter goes through the permutation when it is taken (some
    microseconds), not a whole block at lease time: that was 10,000 Feistel evaluations, 100-250 ms of
    Python holding the GIL, on the event loop at the first creation and beside it at every refill."""

    def __init__(self, store: ServingStore, block: int = 10_000, low_water: float = 0.25,
                 secret: bytes | None = None, on_refill: Callable[[int], None] | None = None) -> None:
        self.store = store
        self.block = block
        self.low = max(1, int(block * low_water))
        self.permutation = Permutation(secret if secret is not None else shared_secret(store))
        self.on_refill = on_refill
        self._pool: list[int] = []
        self._lock = threading.Lock()
        self._refilling: threading.Thread | None = None
        self.blocks_leased = 0

    def _counters_of_new_block(self) -> list[int]:
        """A new block's counters (each becomes an id when taken)."""
        counters = lease_block(self.store, self.block)
        self.blocks_leased += 1
        if self.on_refill:
            self.on_refill(counters.start)
        return list(counters)

    def _refill_in_background(self) -> None:
        try:
            counters = self._counters_of_new_block()
        except Exception:  # noqa: BLE001 - the next take() leases in the foreground and reports it
            log.exception("leasing a block of short-key ids failed; the next creation will try again")
            counters = []
        with self._lock:
            self._pool.extend(counters)
            self._refilling = None

    def take(self) -> int:
        """One id never handed out before by any process."""
        with self._lock:
            if not self._pool:
                self._pool.extend(self._counters_of_new_block())  # first use, or the background lease fell behind
            i = secrets.randbelow(len(self._pool))
            pool = self._pool
            pool[i], pool[-1] = pool[-1], pool[i]
            taken = pool.pop()
            if len(pool) < self.low and self._refilling is None:
                self._refilling = threading.Thread(target=self._refill_in_background, name="short-key-pool",
                                                   daemon=True)
                self._refilling.start()
        return counter_to_id(self.permutation, taken)

    def size(self) -> int:
        with self._lock:
            return len(self._pool)
