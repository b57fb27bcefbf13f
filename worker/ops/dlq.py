"""`ilog dlq list|replay`: look at dead letters and send them back to where they came from.

Both DLQs are understood: their headers are written and read in `worker.kafka.dead_letters`.

Replay records what it did in two places, by design:
- the re-published message carries `replayed_from=<dlq topic>:<partition>:<offset>`, so whoever
  reads the source topic can tell a resent letter from a fresh event;
- one JSON line per resent letter goes to the topic `<dlq topic>.replayed` (key = the same
  `<dlq>:<partition>:<offset>`). It lives next to the DLQ in Kafka, with the same durability and
  retention as the letters it describes, needs no other store, and `kafka-console-consumer` can
  read it. A second replay of a letter listed there is refused unless `--force`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from worker.errors import ConfigError, DeliveryError
from worker.kafka.clients import DeliveryTracker, Headers
from worker.kafka.dead_letters import OUR_HEADERS, DeadLetter
from worker.ops.replay import ensure_topic
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

_METADATA_TIMEOUT_S = 15.0
_READ_IDLE_S = 5.0


def read_topic(settings: Settings, topic: str) -> list[Message]:
    """Every message of `topic` up to its ends at call time, with a throwaway group that never commits."""
    consumer = bootstrap.plain_consumer(settings, **{
        "group.id": f"ilog-dlq-reader-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    try:
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None:
            raise ConfigError(f"topic {topic!r} not found on {settings.kafka_bootstrap}")
        ranges = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S)
                  for p in sorted(metadata.partitions)}
        wanted = {p: high for p, (low, high) in ranges.items() if high > low}
        if not wanted:
            return []
        consumer.assign([TopicPartition(topic, p, ranges[p][0]) for p in wanted])
        return _read_to(consumer, wanted)
    finally:
        consumer.close()


def _read_to(consumer: Consumer, ends: dict[int, int]) -> list[Message]:
    messages: list[Message] = []
    left = dict(ends)
    idle_since = time.monotonic()
    while left and time.monotonic() - idle_since < _READ_IDLE_S:
        batch = consumer.consume(500, 0.5)
        if batch:
            idle_since = time.monotonic()
        for message in batch:
            if message.error() is not None:
                continue
            partition, offset = message.partition() or 0, message.offset() or 0
            if partition in left and offset < left[partition]:
                messages.append(message)
            if partition in left and offset + 1 >= left[partition]:
                del left[partition]
    return messages


def read_dead_letters(settings: Settings, topic: str) -> list[DeadLetter]:
    replayed = replayed_positions(settings, topic)
    letters = [_letter(m) for m in read_topic(settings, topic)]
    for letter in letters:
        letter.replayed = letter.position in replayed
    return sorted(letters, key=lambda d: (d.timestamp_ms or 0, d.partition, d.offset))


def _letter(message: Message) -> DeadLetter:
    stamp_type, stamp_ms = message.timestamp()
    raw: list[tuple[str, object]] = list(message.headers() or [])  # type: ignore[arg-type]
    headers: Headers = [(k, v if v is None or isinstance(v, bytes) else str(v).encode()) for k, v in raw]
    return DeadLetter(topic=message.topic() or "", partition=message.partition() or 0,
                      offset=message.offset() or 0, timestamp_ms=stamp_ms if stamp_type != 0 else None,
                      key=message.key(), value=message.value(), headers=headers)


def replayed_topic(dlq_topic: str) -> str:
    return f"{dlq_topic}.replayed"


def replayed_positions(settings: Settings, dlq_topic: str) -> set[str]:
    try:
        messages = read_topic(settings, replayed_topic(dlq_topic))
    except ConfigError:  # nothing was ever replayed from this DLQ
        return set()
    return {(m.key() or b"").decode() for m in messages}


@dataclass(frozen=True)
class Selection:
    reason: str | None = None
    offsets: tuple[str, ...] = ()  # "N" (any partition) or "P:N"
    include_replayed: bool = False
    limit: int | None = None

    def matches(self, letter: DeadLetter) -> bool:
        if self.reason is not None and self.reason not in (letter.reason, letter.header("code")):
            return False
        if self.offsets and not any(_offset_matches(spec, letter) for spec in self.offsets):
            return False
        return self.include_replayed or not letter.replayed


def _offset_matches(spec: str, letter: DeadLetter) -> bool:
    """`N` (any partition), `P:N`, or `TOPIC:P:N` as `ilog dlq list` prints it."""
    parts = spec.rsplit(":", 2)
    if len(parts) == 3 and parts[0] != letter.topic:
        return False
    if len(parts) >= 2 and int(parts[-2]) != letter.partition:
        return False
    return int(parts[-1]) == letter.offset


def select(letters: Iterable[DeadLetter], selection: Selection) -> list[DeadLetter]:
    chosen = [letter for letter in letters if selection.matches(letter)]
    return chosen if selection.limit is None else chosen[: selection.limit]


def check_offsets(specs: Sequence[str]) -> None:
    for spec in specs:
        parts = spec.rsplit(":", 2)
        if not all(part.isdigit() for part in parts[-2:]) or (len(parts) == 3 and not parts[0]):
            raise ConfigError(f"--offset {spec!r}: use N, PARTITION:N or TOPIC:PARTITION:N (as `ilog dlq list` shows)")


@dataclass
class ReplayOutcome:
    resent: list[dict[str, object]] = field(default_factory=list)


def resend(settings: Settings, dlq_topic: str, letters: Sequence[DeadLetter]) -> ReplayOutcome:
    """Re-publish each letter to its original topic, then record it in `<dlq>.replayed`.

    The new message keeps the key, the value and the original headers (ours removed) and gains
    `replayed_from`. The record is written only after the re-published message is acknowledged.
    """
    for letter in letters:
        if not letter.header("original_topic"):
            raise ConfigError(f"{letter.position}: no original_topic header; cannot tell where it came from")
    ensure_topic(settings, replayed_topic(dlq_topic))
    producer = bootstrap.plain_producer(settings, **{"enable.idempotence": True, "acks": "all"})
    tracker = DeliveryTracker()
    delivered: dict[str, tuple[int, int]] = {}

    def reporter(position: str) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(error: KafkaError | None, message: Message) -> None:
            tracker.callback(error, message)
            if error is None:
                delivered[position] = (message.partition() or 0, message.offset() or 0)
        return on_delivery

    for letter in letters:
        headers = [(k, v) for k, v in letter.headers if k not in OUR_HEADERS]
        producer.produce(letter.header("original_topic") or "", key=letter.key, value=letter.value,
                         headers=[*headers, ("replayed_from", letter.position.encode())],
                         on_delivery=reporter(letter.position))
        producer.poll(0)
    tracker.flush(producer, settings.drain_timeout_seconds)
    outcome = ReplayOutcome()
    now = datetime.now(UTC).isoformat()
    for letter in letters:
        if letter.position not in delivered:
            raise DeliveryError(f"{letter.position}: no delivery report for the re-published message")
        partition, offset = delivered[letter.position]
        note: dict[str, object] = {"dlq": letter.position, "reason": letter.reason, "interaction": letter.interaction,
                "to_topic": letter.header("original_topic"), "to_partition": partition, "to_offset": offset,
                "replayed_at": now}
        producer.produce(replayed_topic(dlq_topic), key=letter.position.encode(),
                         value=json.dumps(note).encode(), on_delivery=tracker.callback)
        outcome.resent.append(note)
    tracker.flush(producer, settings.drain_timeout_seconds)
    return outcome


def letters_as_json(letters: Sequence[DeadLetter]) -> str:
    return json.dumps([letter.as_json() for letter in letters], ensure_ascii=False)


def outcome_as_json(outcome: ReplayOutcome) -> str:
    return json.dumps(asdict(outcome))
