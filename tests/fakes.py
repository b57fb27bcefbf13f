"""Fakes of the few confluent-kafka calls the stages make, for stage unit tests without a broker, and a
scripted sync target. Every Kafka fake appends what it was asked to do to a shared `calls` list, so a
test can check the order of effects (state written, messages produced, producer flushed, offsets stored)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import requests
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, TopicPartition

from adapters.base import SyncItem, SyncOutcome, TargetState, TargetTraits
from schemas.snapshot import LogSnapshot

Calls = list[tuple[str, Any]]


@dataclass
class FakeMessage:
    """A consumed record, or a partition-end marker when `eof`."""

    _topic: str
    _partition: int
    _offset: int
    _value: bytes | None = None
    _key: bytes | None = None
    _headers: list[tuple[str, bytes]] | None = None
    eof: bool = False
    # Kafka's timestamp (type, ms): CreateTime, when the fake was made (produced), like a producer stamps it
    _timestamp: tuple[int, int] = field(default_factory=lambda: (TIMESTAMP_CREATE_TIME, int(time.time() * 1000)))

    def error(self) -> KafkaError | None:
        return KafkaError(KafkaError._PARTITION_EOF) if self.eof else None

    def topic(self) -> str:
        return self._topic

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes | None:
        return self._value

    def key(self) -> bytes | None:
        return self._key

    def headers(self) -> list[tuple[str, bytes]] | None:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def json_message(topic: str, partition: int, offset: int, document: dict[str, Any]) -> FakeMessage:
    """A structured-mode event keyed by its subject, as the contract has producers key it."""
    subject = document.get("subject")
    return FakeMessage(topic, partition, offset, json.dumps(document).encode(),
                       subject.encode() if isinstance(subject, str) else None)


@dataclass
class FakeConsumer:
    """Hands out the queued batches one `consume` at a time; records stored offsets and commits."""

    calls: Calls
    batches: list[list[FakeMessage]] = field(default_factory=list)
    assigned: list[TopicPartition] = field(default_factory=list)

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        if self.batches:
            return self.batches.pop(0)
        time.sleep(min(max(timeout, 0.0), 0.01))  # nothing to read: wait a little, as a real consume would
        return []

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.calls.append(("store_offsets", sorted((tp.topic, tp.partition, tp.offset) for tp in offsets)))

    def subscribe(self, topics: list[str], **callbacks: Callable[..., None]) -> None:
        self.calls.append(("subscribe", topics))

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("assign", sorted((tp.partition, tp.offset) for tp in partitions)))
        self.assigned = list(partitions)

    def assignment(self) -> list[TopicPartition]:
        return list(self.assigned)

    def pause(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("pause", sorted(tp.partition for tp in partitions)))

    def resume(self, partitions: list[TopicPartition]) -> None:
        self.calls.append(("resume", sorted(tp.partition for tp in partitions)))

    def commit(self, asynchronous: bool = True) -> None:
        self.calls.append(("commit", None))

    def close(self) -> None:
        self.calls.append(("close", None))


@dataclass
class Produced:
    topic: str
    key: str | bytes | None
    value: bytes | None
    headers: dict[str, bytes | None]
    partition: int | None = None  # as asked for (None: the partitioner's choice)


@dataclass
class FakeProducer:
    """Keeps what was produced; `flush` acknowledges everything (or fails it, with `fail_with`)."""

    calls: Calls
    produced: list[Produced] = field(default_factory=list)
    fail_with: KafkaError | None = None
    _pending: list[tuple[Callable[[KafkaError | None, Any], None], FakeMessage]] = field(default_factory=list)

    def produce(self, topic: str, value: bytes | None = None, key: str | bytes | None = None,
                headers: list[tuple[str, bytes | None]] | None = None,
                on_delivery: Callable[[KafkaError | None, Any], None] | None = None, partition: int | None = None,
                **_: Any) -> None:
        self.produced.append(Produced(topic, key, value, dict(headers or []), partition))
        self.calls.append(("produce", topic))
        if on_delivery is not None:
            self._pending.append((on_delivery, FakeMessage(topic, 0, len(self.produced) - 1, value)))

    def poll(self, timeout: float = 0) -> int:
        return 0

    def flush(self, timeout: float = -1) -> int:
        self.calls.append(("flush", None))
        pending, self._pending = self._pending, []
        for callback, message in pending:
            callback(self.fail_with, message)
        return 0

    def on(self, topic: str) -> list[Produced]:
        return [message for message in self.produced if message.topic == topic]


class ScriptedTarget:
    """Answers each call from a script of per-interaction outcomes; records what it was sent."""

    name = "crm"
    traits = TargetTraits()

    def __init__(self, script: dict[str, list[SyncOutcome]]) -> None:
        self.script = script
        self.calls: list[list[tuple[str, TargetState]]] = []

    def wants(self, snapshot: LogSnapshot) -> bool:
        return True

    def estimate_requests(self, items: Sequence[SyncItem]) -> int:
        return len(items)

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        self.calls.append([(item.snapshot.interaction_id, item.target_state) for item in batch])
        return [self.script[item.snapshot.interaction_id].pop(0) for item in batch]

    def close(self) -> None:
        return None


def json_response(status: int, body: Any) -> requests.Response:
    """A `requests.Response` answering `body` as JSON with `status`, as an adapter's error handling reads it."""
    response = requests.Response()
    response.status_code = status
    response._content = json.dumps(body).encode()
    response.headers["Content-Type"] = "application/json"
    return response
