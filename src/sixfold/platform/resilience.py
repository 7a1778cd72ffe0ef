"""Timeouts, retries, circuit breakers and bulkheads around every call to a backing service.

Each backing service this process talks to (Cassandra, Kafka, the blob store, Memcached) is one
`Guard`, shared per (dependency name, target) across the process; an adapter runs each call
through `guard.call(fn, *args, idempotent=...)`:

* Timeouts: `guard.timeout_s` is what the adapter hands its driver for one attempt (drivers enforce
  it on their own sockets, which a wrapper thread could not cancel); retries stop once
  `Policy.budget_s` has passed since the first attempt, whatever attempts are left.
* Retries (tenacity, exponential backoff with full jitter: attempt n waits uniform(0, min(cap,
  base * 2**(n-1)))) only for `idempotent=True` calls and only for the dependency's own failures
  (`failures`: timeouts, connection errors); a refusal the service answered (a bad statement, a
  missing key) is passed on at once. A write whose outcome is unknown after a timeout is never
  retried: the call site says `idempotent=False` and the caller sees the failure.
* A circuit breaker per guard: `Policy.failures_to_open` failures in a row open it; while open, calls
  fail at once with `CircuitOpen` (a ServiceUnavailable: 503 with Retry-After) instead of waiting
  out a timeout each; after `Policy.open_s` it lets `half_open_probes` calls through (half-open): a
  success closes it, a failure opens it again.
* A bulkhead per guard: at most `SIXFOLD_DEPENDENCY_CONCURRENCY` calls in flight, at most
  `SIXFOLD_DEPENDENCY_QUEUE` more waiting (each at most `timeout_s`); past that, `Overloaded` at once.
  A call made on an event-loop thread never waits for a slot (waiting would stall every connection).

The success path costs a few microseconds (no tenacity objects unless an attempt has failed).
Breaker states are exported as `sixfold_circuit_breaker_state` and listed by `/readyz`.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sixfold.platform.errors import ServiceUnavailable

T = TypeVar("T")

CLOSED, HALF_OPEN, OPEN = 0, 1, 2  # the gauge's values: higher is worse, so a max across processes shows the worst
STATE_NAMES = {CLOSED: "closed", HALF_OPEN: "half_open", OPEN: "open"}


@dataclass(frozen=True)
class Policy:
    """How one kind of dependency is retried and when its breaker opens."""

    attempts: int = 3  # for idempotent calls; every other call gets exactly one
    backoff_base_s: float = 0.05  # the first retry waits up to this, each later one up to twice the previous ...
    backoff_cap_s: float = 1.0  # ... but never more than this
    budget_s: float = 5.0  # no new attempt once this long has passed since the first
    failures_to_open: int = 5  # failures in a row that open the breaker
    open_s: float = 5.0  # how long an open breaker fails fast before letting a probe through
    half_open_probes: int = 1  # calls let through at once while half-open


# Per dependency kind: a serving store read retried briefly; the cache is cheaper to skip than to wait
# for (a miss reads the store), so it retries nothing but its own invalidations and opens sooner.
POLICIES: dict[str, Policy] = {
    "cassandra": Policy(),
    "kafka": Policy(budget_s=10.0),
    "blobs": Policy(backoff_base_s=0.02, backoff_cap_s=0.5, budget_s=2.0),
    "memcached": Policy(attempts=2, backoff_base_s=0.01, backoff_cap_s=0.05, budget_s=0.2, failures_to_open=3,
                        open_s=2.0),
}
DEFAULT_CONCURRENCY = 32  # SIXFOLD_DEPENDENCY_CONCURRENCY
DEFAULT_QUEUE = 64  # SIXFOLD_DEPENDENCY_QUEUE


class CircuitOpen(ServiceUnavailable):
    """The breaker of a dependency is open: failing fast; `retry_after_s` is when it lets a probe through."""

    def __init__(self, service: str, where: str, detail: str, retry_after_s: int) -> None:
        super().__init__(service, where, detail, f"retry after {retry_after_s} s")
        self.retry_after_s = retry_after_s


class Overloaded(ServiceUnavailable):
    """Every slot of a dependency's bulkhead is taken and its wait queue is full."""

    def __init__(self, service: str, where: str, detail: str) -> None:
        super().__init__(service, where, detail, "retry after 1 s; SIXFOLD_DEPENDENCY_CONCURRENCY and "
                                                 "SIXFOLD_DEPENDENCY_QUEUE bound the calls per dependency")
        self.retry_after_s = 1


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Guard:
    """Breaker, bulkhead and retries of one dependency (name, target) in this process."""

    def __init__(self, name: str, service: str, where: str, *, timeout_s: float, policy: Policy | None = None,
                 failures: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError),
                 concurrency: int = DEFAULT_CONCURRENCY, queue: int = DEFAULT_QUEUE,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name, self.service, self.where = name, service, where
        self.timeout_s = timeout_s
        self.policy = policy or POLICIES.get(name, Policy())
        self.failures = failures
        self.concurrency, self.queue = concurrency, queue
        self.clock, self.sleep = clock, sleep
        self.state = CLOSED
        self.failed_in_a_row = 0
        self.opened_at = 0.0
        self.last_failure = ""
        self._probes = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(concurrency)
        self._waiting = 0
        self._publish()

    # ---- the call -----------------------------------------------------------------------------------
    def call(self, fn: Callable[..., T], *args: Any, idempotent: bool, **kwargs: Any) -> T:
        """`fn(*args, **kwargs)` through the breaker and the bulkhead, retried with backoff when `idempotent`."""
        try:
            return self._once(fn, args, kwargs)
        except self.failures as exc:
            if not idempotent or self.policy.attempts < 2:
                raise
            return self._retry(fn, args, kwargs, exc)

    def _once(self, fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
        probe = self._admit()
        if not self._slots.acquire(blocking=False):
            self._wait_for_slot(probe)
        try:
            result = fn(*args, **kwargs)
        except self.failures as exc:
            self._failed(exc, probe)
            raise
        except BaseException:
            self._answered(probe)  # the service answered (a refusal, a bad request): it is up
            raise
        finally:
            self._slots.release()
        self._answered(probe)
        return result

    def _retry(self, fn: Callable[..., T], args: tuple, kwargs: dict, first: BaseException) -> T:
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            stop_after_attempt,
            stop_after_delay,
            wait_random_exponential,
        )

        p = self.policy
        pending = [first]  # attempt 1 already ran (outside tenacity, so a success costs nothing extra)

        def attempt() -> T:
            if pending:
                raise pending.pop()
            return self._once(fn, args, kwargs)

        retrying = Retrying(stop=stop_after_attempt(p.attempts) | stop_after_delay(p.budget_s),
                            wait=wait_random_exponential(multiplier=p.backoff_base_s, max=p.backoff_cap_s),
                            retry=retry_if_exception_type(self.failures), sleep=self.sleep, reraise=True)
        return retrying(attempt)

    # ---- the breaker ----------------------------------------------------------------------------------
    def _admit(self) -> bool:
        """Whether this call is a half-open probe; raises CircuitOpen while the breaker is open."""
        if self.state == CLOSED:
            return False
        with self._lock:
            if self.state == OPEN:
                wait = self.opened_at + self.policy.open_s - self.clock()
                if wait > 0:
                    raise CircuitOpen(self.service, self.where,
                                      f"circuit open after {self.failed_in_a_row} failures in a row "
                                      f"(last: {self.last_failure})", max(1, math.ceil(wait)))
                self._set(HALF_OPEN)
                self._probes = 0
            if self.state == HALF_OPEN:
                if self._probes >= self.policy.half_open_probes:
                    raise CircuitOpen(self.service, self.where, "circuit half-open: a probe call is deciding", 1)
                self._probes += 1
                return True
            return False

    def _answered(self, probe: bool) -> None:
        if self.failed_in_a_row == 0 and not probe:
            return
        with self._lock:
            self.failed_in_a_row = 0
            if probe:
                self._probes -= 1
            if self.state != CLOSED:
                self._set(CLOSED)

    def _failed(self, exc: BaseException, probe: bool) -> None:
        with self._lock:
            self.failed_in_a_row += 1
            self.last_failure = f"{type(exc).__name__}: {exc}"[:300]
            if probe:
                self._probes -= 1
            if probe or (self.state == CLOSED and self.failed_in_a_row >= self.policy.failures_to_open):
                self.opened_at = self.clock()
                self._set(OPEN)

    def _set(self, state: int) -> None:
        self.state = state
        self._publish()

    def _publish(self) -> None:
        from sixfold.platform.metrics import record_breaker

        record_breaker(self.name, self.where, self.state)

    # ---- the bulkhead -----------------------------------------------------------------------------------
    def _wait_for_slot(self, probe: bool) -> None:
        refused = None
        if _on_event_loop():
            refused = f"all {self.concurrency} call slots are taken (an event-loop thread does not wait)"
        else:
            with self._lock:
                if self._waiting >= self.queue:
                    refused = f"all {self.concurrency} call slots are taken and {self._waiting} calls wait"
                else:
                    self._waiting += 1
            if refused is None:
                try:
                    if self._slots.acquire(timeout=self.timeout_s):
                        return
                finally:
                    with self._lock:
                        self._waiting -= 1
                refused = f"no call slot freed within {self.timeout_s:g} s ({self.concurrency} in flight)"
        if probe:
            with self._lock:
                self._probes -= 1
        raise Overloaded(self.service, self.where, refused)

    # ---- what /readyz shows --------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {"dependency": self.name, "target": self.where, "state": STATE_NAMES[self.state],
                               "failures_in_a_row": self.failed_in_a_row,
                               "in_flight": self.concurrency - self._slots._value, "waiting": self._waiting}
        if self.state == OPEN:
            out["probe_in_s"] = round(max(0.0, self.opened_at + self.policy.open_s - self.clock()), 2)
        if self.last_failure:
            out["last_failure"] = self.last_failure
        return out


_GUARDS: dict[tuple[str, str], Guard] = {}
_GUARDS_LOCK = threading.Lock()


def guard(name: str, service: str, where: str, *, timeout_s: float, settings: Any = None,
          failures: tuple[type[BaseException], ...] = (ConnectionError, TimeoutError)) -> Guard:
    """The process's one Guard of dependency `name` at `where` (every store or bus object on the same
    target shares its breaker and bulkhead); the first caller's timeout and failure types hold."""
    key = (name, where)
    found = _GUARDS.get(key)
    if found is not None:
        return found
    with _GUARDS_LOCK:
        found = _GUARDS.get(key)
        if found is None:
            found = _GUARDS[key] = Guard(
                name, service, where, timeout_s=timeout_s, failures=failures,
                concurrency=getattr(settings, "dependency_concurrency", DEFAULT_CONCURRENCY),
                queue=getattr(settings, "dependency_queue", DEFAULT_QUEUE))
        return found


def breakers() -> dict[str, dict[str, Any]]:
    """Every guard of this process, as `/readyz` lists them: "cassandra 127.0.0.1:9042" -> its state."""
    return {f"{g.name} {g.where}": g.describe() for g in list(_GUARDS.values())}


# ---- load shedding: the server-wide in-flight limit ------------------------------------------------------
EXEMPT_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
SHED_RETRY_AFTER_S = 1


class InFlightLimit:
    """ASGI middleware: at most `limit` HTTP requests of this process in flight at once; the next one is
    answered 503 with Retry-After at once, never queued. Probes and metrics (`EXEMPT_PATHS`) and WebSocket
    connections (long-lived: bounded by their own systems) are not counted. Outermost under `sixfold
    serve` (`create_asgi`); a request it admitted is not counted again by the app's own instance."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.in_flight = 0
        self.shed = 0
        import orjson

        from sixfold.platform.errors import error_body

        body = orjson.dumps(error_body(503, f"this server has {limit} requests in flight "
                                            "(SIXFOLD_MAX_IN_FLIGHT); retry after "
                                            f"{SHED_RETRY_AFTER_S} s"))
        self._start = {"type": "http.response.start", "status": 503,
                       "headers": [(b"content-type", b"application/json"),
                                   (b"retry-after", str(SHED_RETRY_AFTER_S).encode()),
                                   (b"content-length", str(len(body)).encode())]}
        self._body = {"type": "http.response.body", "body": body}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("sixfold.admitted") or scope["path"] in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.limit:  # one event loop per process: no lock needed
            self.shed += 1
            await send(self._start)
            await send(self._body)
            from sixfold.platform.metrics import observe_request

            observe_request(scope["method"], "(shed)", 503, 0.0)
            scope["sixfold.counted"] = True
            return
        self.in_flight += 1
        scope["sixfold.admitted"] = True
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
