"""The event bus: produce, consume with committed offsets (at-least-once), dead letters.

Two implementations of one contract: `SpoolBus` (embedded; an append-only, checksummed file
per topic under `var/spool/<topic>/`, consumer-group offsets in small JSON files replaced
atomically) and `KafkaBus` (cluster; Apache Kafka through kafka-python). A consumer only
advances its group's offset on `commit()`, so a crash before it replays, never skips.
Messages that cannot be processed go to `<topic>.dlq` with the reason.
"""

from __future__ import annotations

import fcntl
import os
import struct
import time
import zlib
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Protocol

import orjson

from sixfold.platform.errors import ServiceUnavailable
from sixfold.platform.resilience import guard
from sixfold.platform.settings import Settings


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dlq"


def _check_topic(topic: str) -> str:
    if not topic or len(topic) > 200 or not all(c.isalnum() or c in "._-" for c in topic) or topic in (".", ".."):
        raise ValueError(f"topic {topic!r} must be 1-200 characters of letters, digits, '.', '_' or '-'")
    return topic


def decode(raw: bytes) -> Any:
    """The JSON value of a message's bytes; ValueError ("not JSON: ...") for bytes that are not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: str | None
    raw: bytes
    timestamp_ms: int

    def json(self) -> Any:
        """The decoded JSON value; raises ValueError for a message that is not JSON (a poison message)."""
        return decode(self.raw)


class Consumer(Protocol):
    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]: ...
    def commit(self) -> None: ...
    def close(self) -> None: ...


class EventBus(Protocol):
    def produce(self, topic: str, value: Any, key: str | None = None) -> None: ...
    def produce_many(self, topic: str, items: Iterable[tuple[str | None, Any]]) -> int: ...
    def produce_raw(self, topic: str, raw: bytes, key: str | None = None) -> None: ...
    def consumer(self, topic: str, group: str, from_end: bool = False) -> Consumer: ...
    def close(self) -> None: ...


def encode(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z)


def dead_letter(bus: EventBus, message: Message, reason: str) -> None:
    """Send a message that cannot be processed to `<topic>.dlq`, verbatim, with the reason."""
    bus.produce(
        dead_letter_topic(message.topic),
        {
            "topic": message.topic,
            "reason": reason,
            "payload": message.raw.decode("utf-8", errors="replace"),
            "failed_at": datetime.now(timezone.utc),
        },
        key=message.key,
    )
    from sixfold.platform.metrics import dead_lettered

    dead_lettered(dead_letter_topic(message.topic))


# ---- embedded: the file spool ------------------------------------------------------------------
# Frame: u32 body length, u32 crc32(body), then body = u64 timestamp ms, u16 key length (0xFFFF = none),
# key bytes, value bytes. A frame whose length or checksum does not hold is a torn write from a crash.
_HEAD = struct.Struct(">II")
_BODY = struct.Struct(">QH")
_NO_KEY = 0xFFFF


def _frame(raw: bytes, key: str | None, ts_ms: int) -> bytes:
    kb = b"" if key is None else key.encode()
    if len(kb) >= _NO_KEY:
        raise ValueError("message key longer than 65534 bytes")
    body = _BODY.pack(ts_ms, _NO_KEY if key is None else len(kb)) + kb + raw
    return _HEAD.pack(len(body), zlib.crc32(body)) + body


class SpoolBus:
    """A durable single-partition log per topic in plain files; safe for several processes."""

    def __init__(self, root: Path | str, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._counted: dict[str, tuple[int, int]] = {}  # topic -> (byte position, messages before it)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ServiceUnavailable("spool", str(self.root), str(exc), "check SIXFOLD_HOME is writable") from exc

    def log_path(self, topic: str) -> Path:
        return self.root / _check_topic(topic) / "00000000.log"

    def _append(self, topic: str, frames: list[bytes]) -> None:
        path = self.log_path(topic)
        path.parent.mkdir(parents=True, exist_ok=True)
        end_path = path.with_suffix(".end")
        with open(path, "ab+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                # `.end` holds the byte length of the log after the last acknowledged append; anything
                # past it is a torn frame from a producer that crashed mid-append, so drop it first.
                try:
                    end = int(end_path.read_text())
                except (FileNotFoundError, ValueError):
                    end = _valid_end(f)
                if f.seek(0, os.SEEK_END) > end:
                    f.truncate(end)
                f.seek(end)
                f.write(b"".join(frames))
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
                tmp = end_path.with_suffix(f".{os.getpid()}.tmp")
                tmp.write_text(str(f.tell()))
                os.replace(tmp, end_path)
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def produce(self, topic: str, value: Any, key: str | None = None) -> None:
        self.produce_raw(topic, encode(value), key)

    def produce_raw(self, topic: str, raw: bytes, key: str | None = None) -> None:
        self._append(topic, [_frame(raw, key, int(time.time() * 1000))])

    def produce_many(self, topic: str, items: Iterable[tuple[str | None, Any]]) -> int:
        now = int(time.time() * 1000)
        frames = [_frame(encode(value), key, now) for key, value in items]
        if frames:
            self._append(topic, frames)
        return len(frames)

    def consumer(self, topic: str, group: str, from_end: bool = False) -> "SpoolConsumer":
        """A consumer of `topic` in `group`, from the group's committed offset; a group with none starts at
        the beginning, or with `from_end` at the end (it sees only what is produced after this returns)."""
        return SpoolConsumer(self, _check_topic(topic), _check_topic(group), from_end)

    def end_offset(self, topic: str) -> int:
        """How many complete messages the topic holds."""
        path = self.log_path(topic)
        if not path.exists():
            return 0
        count = 0
        with open(path, "rb") as f:
            for _ in _frames(f, 0, None):
                count += 1
        return count

    def lag(self, group: str) -> dict[str, int]:
        """Messages past `group`'s committed offset, per topic the group has committed on."""
        out = {}
        for offsets in self.root.glob(f"*/_groups/{_check_topic(group)}.json"):
            topic = offsets.parent.parent.name
            try:
                committed = int(orjson.loads(offsets.read_bytes())["offset"])
            except (OSError, ValueError, KeyError):
                continue
            out[topic] = max(0, self._message_count(topic) - committed)
        return out

    def _message_count(self, topic: str) -> int:
        """`end_offset`, counting only what was appended since the last call (the log only grows)."""
        counted = self._counted
        path = self.log_path(topic)
        position, count = counted.get(topic, (0, 0))
        try:
            with open(path, "rb") as f:
                if f.seek(0, os.SEEK_END) < position:  # replaced or truncated: count again
                    position, count = 0, 0
                for _start, position, _ts, _key, _value in _frames(f, position, None):
                    count += 1
        except FileNotFoundError:
            return 0
        counted[topic] = (position, count)
        return count

    def close(self) -> None:
        pass


_READ_CHUNK = 1 << 20


def _frames(f: Any, position: int, limit: int | None) -> Iterable[tuple[int, int, int, str | None, bytes]]:
    """Yield (start, end position, timestamp ms, key, value) of complete frames from `position`.

    The file is read in large chunks and cut into frames in memory (a read per frame would cost
    more than the frame's own work).
    """
    f.seek(position)
    buf, at = b"", 0  # `buf[at]` is the byte at file position `position`
    n = 0
    while limit is None or n < limit:
        if len(buf) - at < _HEAD.size:
            more = f.read(_READ_CHUNK)
            if not more:
                return
            buf, at = buf[at:] + more, 0
            continue
        length, crc = _HEAD.unpack_from(buf, at)
        end = at + _HEAD.size + length
        if end > len(buf):
            more = f.read(max(_READ_CHUNK, end - len(buf)))
            if not more:
                return
            buf, at = buf[at:] + more, 0
            continue
        body = buf[at + _HEAD.size:end]
        if zlib.crc32(body) != crc:
            return
        ts_ms, klen = _BODY.unpack_from(body)
        start = _BODY.size
        key = None if klen == _NO_KEY else body[start:start + klen].decode()
        value = body[start + (0 if klen == _NO_KEY else klen):]
        yield position, position + _HEAD.size + length, ts_ms, key, value
        position += _HEAD.size + length
        at = end
        n += 1


def _valid_end(f: Any) -> int:
    """Byte length of the complete frames at the start of the file."""
    end = 0
    for _pos, end, _ts, _key, _value in _frames(f, 0, None):
        pass
    return end


class SpoolConsumer:
    def __init__(self, bus: SpoolBus, topic: str, group: str, from_end: bool = False) -> None:
        self.bus = bus
        self.topic = topic
        self.group = group
        self._offsets_path = bus.root / topic / "_groups" / f"{group}.json"
        committed = self._read_committed(from_end)
        self._offset = committed["offset"]
        self._position = committed["position"]
        self._pending: tuple[int, int] | None = None

    def _read_committed(self, from_end: bool = False) -> dict[str, int]:
        try:
            data = orjson.loads(self._offsets_path.read_bytes())
            return {"offset": int(data["offset"]), "position": int(data["position"])}
        except FileNotFoundError:
            if not from_end:
                return {"offset": 0, "position": 0}
        offset = position = 0
        path = self.bus.log_path(self.topic)
        if path.exists():
            with open(path, "rb") as f:
                for _start, position, _ts, _key, _value in _frames(f, 0, None):
                    offset += 1
        return {"offset": offset, "position": position}

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while True:
            batch = self._read(max_records)
            if batch or time.monotonic() >= deadline:
                return batch
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    def _read(self, max_records: int) -> list[Message]:
        path = self.bus.log_path(self.topic)
        if not path.exists():
            return []
        out: list[Message] = []
        with open(path, "rb") as f:
            position, offset = self._position, self._offset
            for _start, position, ts_ms, key, value in _frames(f, position, max_records):
                out.append(Message(self.topic, 0, offset, key, value, ts_ms))
                offset += 1
        if out:
            self._offset, self._position = offset, position
            self._pending = (offset, position)
        return out

    def commit(self) -> None:
        """Make everything polled so far durable as consumed by this group."""
        if self._pending is None:
            return
        offset, position = self._pending
        self._offsets_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._offsets_path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(orjson.dumps({"offset": offset, "position": position}))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._offsets_path)
        self._pending = None

    def close(self) -> None:
        pass


# ---- cluster: Apache Kafka -----------------------------------------------------------------------
def _kafka_failures() -> tuple[type[BaseException], ...]:
    """What the Kafka guard counts as the broker failing: kafka-python's retriable errors, timeouts, lost
    connections (not a refusal such as a message too large or a denied topic)."""
    from kafka import errors

    return (errors.RetriableError, errors.KafkaTimeoutError, errors.KafkaConnectionError, errors.NodeNotReadyError,
            errors.RequestTimedOutError, errors.BrokerNotAvailableError)


class KafkaBus:
    """Kafka through kafka-python 3.x: idempotent acks=all producer, manual-commit consumers; every call goes
    through the process's Kafka guard (`sixfold.platform.resilience`: breaker, bulkhead, retries where safe)."""

    def __init__(self, settings: Settings, partitions: int = 1) -> None:
        from kafka import KafkaProducer
        from kafka.errors import KafkaError

        self.settings = settings
        self.where = settings.kafka_bootstrap_str
        self.partitions = partitions
        self.timeout_ms = int(settings.connect_timeout_s * 1000)
        self._topics: set[str] = set()
        self._guard = guard("kafka", "Kafka", self.where, timeout_s=settings.connect_timeout_s, settings=settings,
                            failures=_kafka_failures())
        try:
            # enable_idempotence: the client's own retries of a batch (retries=3) cannot write it twice
            self._producer = KafkaProducer(
                bootstrap_servers=self.where, acks="all", linger_ms=2, retries=3, enable_idempotence=True,
                request_timeout_ms=self.timeout_ms, max_block_ms=self.timeout_ms,
                bootstrap_timeout_ms=self.timeout_ms, client_id="sixfold",
            )
        except KafkaError as exc:
            raise self._unavailable(f"no broker answered within {settings.connect_timeout_s:.0f}s ({type(exc).__name__})",
                                    startup=True) from exc

    def _unavailable(self, detail: str, startup: bool = False) -> ServiceUnavailable:
        fix = ("set SIXFOLD_KAFKA_BOOTSTRAP=HOST:PORT to a running broker, or run `sixfold services up`"
               if startup else "")
        return ServiceUnavailable("Kafka", self.where, detail, fix)

    def ensure_topic(self, topic: str) -> None:
        if topic in self._topics:
            return
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import KafkaError, TopicAlreadyExistsError

        try:
            admin = KafkaAdminClient(bootstrap_servers=self.where, request_timeout_ms=self.timeout_ms,
                                     bootstrap_timeout_ms=self.timeout_ms, client_id="sixfold-admin")
        except KafkaError as exc:
            raise self._unavailable(f"admin client could not connect ({type(exc).__name__})") from exc
        try:  # creating a topic that exists is refused, not repeated: retried
            self._guard.call(admin.create_topics, [NewTopic(topic, self.partitions, 1)], idempotent=True)
        except TopicAlreadyExistsError:
            pass
        except KafkaError as exc:
            raise self._unavailable(f"creating topic {topic!r} failed ({exc})") from exc
        finally:
            admin.close()
        self._topics.add(topic)

    def produce(self, topic: str, value: Any, key: str | None = None) -> None:
        self.produce_raw(topic, encode(value), key)

    def produce_raw(self, topic: str, raw: bytes, key: str | None = None) -> None:
        self._send(topic, [(key, raw)])

    def produce_many(self, topic: str, items: Iterable[tuple[str | None, Any]]) -> int:
        return self._send(topic, [(k, encode(v)) for k, v in items])

    def _send(self, topic: str, items: list[tuple[str | None, bytes]]) -> int:
        from kafka.errors import KafkaError

        self.ensure_topic(_check_topic(topic))
        try:
            # Not retried here: after a timeout some records may be in the log, and a second send is a new
            # record the broker cannot tell from the first (idempotence covers only the client's own retries
            # of one batch). The caller decides: the click emitter keeps the batch and sends it again, its
            # click ids making the copies collapse when landed.
            self._guard.call(self._send_now, topic, items, idempotent=False)
        except KafkaError as exc:
            raise self._unavailable(f"producing to {topic!r} failed ({type(exc).__name__}: {exc})") from exc
        return len(items)

    def _send_now(self, topic: str, items: list[tuple[str | None, bytes]]) -> None:
        futures = [self._producer.send(topic, value=raw, key=None if k is None else k.encode()) for k, raw in items]
        self._producer.flush(timeout=self.timeout_ms / 1000)
        for fut in futures:
            fut.get(timeout=self.timeout_ms / 1000)

    def consumer(self, topic: str, group: str, from_end: bool = False) -> "KafkaBusConsumer":
        """As `SpoolBus.consumer`: a group without committed offsets starts at the end with `from_end`."""
        self.ensure_topic(_check_topic(topic))
        return KafkaBusConsumer(self, topic, _check_topic(group), from_end)

    def close(self) -> None:
        try:
            self._producer.close(timeout=2)
        except Exception:  # noqa: BLE001 - unsent messages were already reported by produce()
            pass


class KafkaBusConsumer:
    def __init__(self, bus: KafkaBus, topic: str, group: str, from_end: bool = False) -> None:
        from kafka import KafkaConsumer
        from kafka.errors import KafkaError

        self.bus = bus
        self.topic = topic
        self._early: list[Message] = []
        try:
            self._consumer = KafkaConsumer(
                topic, bootstrap_servers=bus.where, group_id=group, enable_auto_commit=False,
                auto_offset_reset="latest" if from_end else "earliest",
                request_timeout_ms=max(bus.timeout_ms, 30000) + 1000,
                bootstrap_timeout_ms=bus.timeout_ms, session_timeout_ms=10000, heartbeat_interval_ms=3000,
                client_id="sixfold-consumer",
            )
            # Join the group and look up where to start now (what arrives meanwhile is kept). Those are several
            # round trips: on a slow network (100 ms a request is enough) they outlast the first poll, which
            # comes back empty, and a consumer whose pass ends at an empty poll would never consume at all.
            # With from_end, "latest" is resolved here too, so whatever is produced after this returns is seen.
            deadline = time.monotonic() + max(bus.timeout_ms / 1000, 10.0)
            while not self._consumer.assignment() and time.monotonic() < deadline:
                self._early.extend(self._records(self._consumer.poll(timeout_ms=200)))
            for tp in self._consumer.assignment():
                self._consumer.position(tp)
        except KafkaError as exc:
            raise bus._unavailable(f"consumer could not connect ({type(exc).__name__})") from exc

    def _records(self, batches: dict) -> list[Message]:
        return [
            Message(self.topic, tp.partition, r.offset, None if r.key is None else r.key.decode(), r.value, r.timestamp)
            for tp, records in sorted(batches.items(), key=lambda kv: kv[0].partition)
            for r in records
        ]

    def _broker_alive(self) -> bool:
        from sixfold.platform.services.runner import port_open

        host, port = self.bus.settings.kafka_bootstrap
        return port_open(host, port, timeout=2.0)

    def poll(self, max_records: int = 500, timeout_s: float = 1.0) -> list[Message]:
        from kafka.errors import KafkaError

        if self._early:
            out, self._early = self._early[:max_records], self._early[max_records:]
            return out
        try:  # a read: offsets move only on commit, so polling again is safe (retried)
            batches = self.bus._guard.call(self._consumer.poll, timeout_ms=int(timeout_s * 1000),
                                           max_records=max_records, idempotent=True)
        except KafkaError as exc:
            raise self.bus._unavailable(f"poll failed ({type(exc).__name__}: {exc})") from exc
        out = self._records(batches)
        # kafka-python keeps polling a dead broker quietly; an empty poll checks the broker is still there.
        if not out and not self._broker_alive():
            raise self.bus._unavailable("the broker stopped answering while consuming")
        return out

    def commit(self) -> None:
        from kafka.errors import KafkaError

        if not self._broker_alive():
            raise self.bus._unavailable("the broker stopped answering; offsets not committed (messages will be redelivered)")
        try:  # committing the same offsets twice is committing them once (retried)
            self.bus._guard.call(self._consumer.commit, timeout_ms=self.bus.timeout_ms, idempotent=True)
        except KafkaError as exc:
            raise self.bus._unavailable(f"commit failed ({type(exc).__name__}: {exc})") from exc

    def close(self) -> None:
        try:
            self._consumer.close(autocommit=False)
        except Exception:  # noqa: BLE001 - a dead broker cannot be told goodbye
            pass


def open_bus(settings: Settings) -> EventBus:
    """The event bus of the configured profile."""
    if settings.profile == "cluster":
        return KafkaBus(settings)
    return SpoolBus(settings.spool_dir)
