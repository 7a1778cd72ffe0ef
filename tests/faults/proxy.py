"""A local TCP proxy that injects network faults between a client and a server (Kafka, Cassandra, ...).

`DelayingProxy(upstream)` listens on 127.0.0.1 (a free port, kept across `down()`/`up()`) and forwards
every connection to `upstream`:

- `delay` (seconds, changeable at any time): what clients send is forwarded that late, in order and
  without limiting throughput; answers come back at once.
- `down()`: the service is gone: every connection is cut and new ones are refused (nothing listens)
  until `up()`.
- `reset_all()`: every live connection is closed with a TCP RST (SO_LINGER 0), as a crashed host or
  a middlebox would; the proxy keeps listening, so clients can connect again at once.

Used by tests/test_resilience.py and the fault-injection suite (tests/faults/).
"""

from __future__ import annotations

import queue
import socket
import struct
import threading
import time

_LINGER_0 = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST, not FIN


class _Link:
    """One proxied connection: the client's socket and ours to the upstream."""

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.client, self.server = client, server
        self.dead = False  # cut by the proxy: the pumps must not pass a graceful FIN on

    def cut(self, rst: bool) -> None:
        self.dead = True
        for s in (self.client, self.server):
            try:
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
                    s.shutdown(socket.SHUT_RD)  # wakes the blocked reader; sends nothing
                else:
                    s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            try:
                s.close()
            except OSError:
                pass


class DelayingProxy:
    """TCP proxy to `upstream` with `delay`, `down()`/`up()` and `reset_all()` (see the module doc)."""

    def __init__(self, upstream: tuple[str, int], port: int = 0) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.port = port
        self.closed = False
        self.accepted = 0  # connections accepted so far (a client reconnecting shows here)
        self._links: set[_Link] = set()
        self._lock = threading.Lock()
        self.listener: socket.socket | None = None
        self.up()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def up(self) -> None:
        """Listen again (on the same port) and forward new connections."""
        if self.listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self.listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name=f"proxy-{self.port}").start()

    def down(self) -> None:
        """Connections cut, new ones refused (nothing listens)."""
        listener, self.listener = self.listener, None
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread; close alone would not
            except OSError:
                pass
            listener.close()
        self._cut_all(rst=False)

    def reset_all(self) -> int:
        """Close every live connection with RST; keep listening. Returns how many were reset."""
        return self._cut_all(rst=True)

    def _cut_all(self, rst: bool) -> int:
        with self._lock:
            links, self._links = list(self._links), set()
        for link in links:
            link.cut(rst)
        return len(links)

    def live(self) -> int:
        with self._lock:
            return len(self._links)

    def _accept(self, listener: socket.socket) -> None:
        while not self.closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # the listener was taken down
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:  # the upstream itself is not there: the client sees its connection reset
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_0)
                client.close()
                continue
            for s in (client, server):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
                self.accepted += 1
            lane: queue.Queue = queue.Queue()
            threading.Thread(target=self._read, args=(link, lane), daemon=True).start()
            threading.Thread(target=self._write_late, args=(link, lane), daemon=True).start()
            threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _read(self, link: _Link, lane: queue.Queue) -> None:
        while True:
            try:
                data = link.client.recv(65536)
            except OSError:
                data = b""
            lane.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write_late(self, link: _Link, lane: queue.Queue) -> None:
        while True:
            due, data = lane.get()
            time.sleep(max(0.0, due - time.monotonic()))
            try:
                if not data:
                    if not link.dead:
                        link.server.shutdown(socket.SHUT_WR)
                    return
                link.server.sendall(data)
            except OSError:
                return

    def _pump(self, link: _Link) -> None:
        while True:
            try:
                data = link.server.recv(65536)
                if not data:
                    if not link.dead:
                        link.client.shutdown(socket.SHUT_WR)
                    break
                link.client.sendall(data)
            except OSError:
                break
        with self._lock:
            self._links.discard(link)
        for s in (link.client, link.server):  # a reader still blocked on the client returns when it closes
            try:
                s.close()
            except OSError:
                pass

    def close(self) -> None:
        self.closed = True
        self.down()
