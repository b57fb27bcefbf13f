"""Kafka edges shared by the stages: client configuration, decoding records, delivery reports, offsets."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import structlog
from confluent_kafka import (
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)

from schemas.common import MAX_FIELD_CHARS
from schemas.events import Rejection, RejectReason
from schemas.fast import AnyEvent, decode_event_fast
from worker.core.batch import Record
from worker.errors import DeliveryError, DeliveryTimeoutError, KafkaClientError
from worker.runtime import metrics
from worker.runtime.logs import RepeatThrottle
from worker.runtime.settings import Settings

Headers = list[tuple[str, bytes | None]]
_CUT_HEADER_BYTES = 1024
_KEY_QUOTE_CHARS = 64
_REFUSED_COPY_BYTES = 64 * 1024
"""A message the broker or the client refused as too large goes to its DLQ cut to this many bytes."""
_TOO_LARGE = frozenset({KafkaError.MSG_SIZE_TOO_LARGE, KafkaError.RECORD_LIST_TOO_LARGE})
CONSUMER_TUNING: dict[str, Any] = {
    "auto.commit.interval.ms": 1000,
    "reconnect.backoff.max.ms": 2000,
}
"""Consumer defaults an operator may override with `ILOG_KAFKA__<KEY>`."""
BUSY_TOPIC_FETCH: dict[str, Any] = {"fetch.wait.max.ms": 50, "fetch.min.bytes": 65536}
"""Fetch settings for busy topics (docs/benchmarks.md, `tests.bench.fetch_tuning`), not the default:
an operator sets them with `ILOG_KAFKA__FETCH_WAIT_MAX_MS` and `ILOG_KAFKA__FETCH_MIN_BYTES`."""
PRODUCER_TUNING: dict[str, Any] = {"linger.ms": 5, "compression.type": "lz4"}
"""Producer defaults an operator may override with `ILOG_KAFKA__<KEY>`."""
log = structlog.get_logger("ilog.kafka")
_ERROR_REPEATS = RepeatThrottle()


def consumer_config(settings: Settings, group: str, stage: str | None = None, **extra: Any) -> dict[str, Any]:
    """Offsets are stored by the stage only after its effects are durable; librdkafka commits them.

    Static membership (`group.instance.id`) when the settings give an id or the pod has a name
    (`Settings.instance_id`), each stage with its own id: a restarted process rejoins under the same
    id and gets its partitions back without a rebalance. Reconnects back off at most 2 s, so a
    broker that comes back is used again within seconds.

    The passthrough options (`ILOG_KAFKA__…`) override `CONSUMER_TUNING`, never the keys set here for the
    stage's guarantees. Fetches keep librdkafka's defaults (1 byte, 500 ms): a consumer of a busy topic
    then sends a fetch for every few messages (about 500 a second at 5,000 messages a second, ~0.1 core
    of the broker's CPU); `BUSY_TOPIC_FETCH` cuts that to 32, but lets more changes of one interaction
    meet in one batch, so a target sees fewer of its versions (docs/benchmarks.md)."""
    config: dict[str, Any] = {
        "group.id": group,
        "enable.auto.commit": True,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "enable.partition.eof": True,
        "statistics.interval.ms": 250,  # lag metrics; the fold stage's partition clocks read them too
    }
    instance_id = settings.instance_id(stage or group)
    if instance_id:
        config["group.instance.id"] = instance_id
    config.update(extra)
    return settings.kafka_config(CONSUMER_TUNING, **config)


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Idempotent, `acks=all` (not overridable); batching and compression are tuning (`PRODUCER_TUNING`).

    Delivery reports come for failed messages only (`delivery.report.only.error`): a stage's
    `DeliveryTracker` acts on failures alone, and a flush still waits for every message to be
    acknowledged or failed. A report per delivered message was a Python call and a `Message` object for
    each snapshot and changelog entry the fold stage produces (docs/benchmarks.md)."""
    return settings.kafka_config(PRODUCER_TUNING, **{"enable.idempotence": True, "acks": "all",
                                                     "delivery.report.only.error": True, **extra})


def decode_message(message: Message) -> Record:
    """The record of a message without an error (`decode_messages`)."""
    records, _others = decode_messages([message])
    return records[0]


def decode_messages(messages: Sequence[Message]) -> tuple[list[Record], list[Message]]:
    """The records of the messages without an error, and apart the others (a partition's end, a consume error),
    each list in the messages' order. One loop for a consumed batch: the fold stage reads every event through it,
    so each Python call saved here is saved per event."""
    records: list[Record] = []
    others: list[Message] = []
    add = records.append
    for message in messages:
        if message.error() is not None:
            others.append(message)
            continue
        raw_headers: list[tuple[str, Any]] | None = message.headers()  # type: ignore[assignment]
        headers: Headers = [(name, _header_bytes(value)) for name, value in raw_headers] if raw_headers else []
        value = message.value()
        item = decode_event_fast(value, headers)
        key = message.key()
        # the key names the event's interaction, or the event is refused (`_checked_against_key`, called only
        # where the key does not simply match)
        if key is not None and (isinstance(item, Rejection) or not isinstance(key, bytes)
                                or key.decode("utf-8", "replace") != item.subject):
            item = _checked_against_key(item, key)
        stamp_type, stamp_ms = message.timestamp()
        add(Record(message.topic() or "", message.partition() or 0, message.offset() or 0, value, headers, item,
                   stamp_ms if stamp_type != TIMESTAMP_NOT_AVAILABLE and stamp_ms >= 0 else None))
    return records, others


def _checked_against_key(item: AnyEvent | Rejection, key: bytes | str | None) -> AnyEvent | Rejection:
    """The contract makes the Kafka key the interaction id: an event keyed by another one is `invalid`.

    The key chose its partition, so such an event sits beside other interactions' events: its interaction
    would be folded on two partitions at once, and its deadline kept and closed by another partition's clock
    (which may run ahead of the partition still holding its in-window edits). A message without a key is
    folded: nothing says it belongs elsewhere, and refusing every event of a producer that does not key its
    messages would stop all of them (README: key by `subject`). An event that could not be read (too large to
    parse, not JSON) names its interaction by the key, so its dead letter still says whose it was."""
    text = None if key is None else key if isinstance(key, str) else key.decode("utf-8", errors="replace")
    if isinstance(item, Rejection):
        if item.subject is not None or not text:
            return item
        return replace(item, subject=text[:MAX_FIELD_CHARS].encode("utf-8", errors="replace").decode("utf-8"))
    if text is None or text == item.subject:
        return item
    problem = f"subject: {item.subject!r} is not the Kafka message key {_quoted(text)}; the key must be the " \
              "interaction id"
    return Rejection(item.id, item.subject, RejectReason.INVALID, problem)


def _quoted(text: str) -> str:
    """A key as a rejection message quotes it: cut to `_KEY_QUOTE_CHARS`, with lone surrogates replaced."""
    cut = text if len(text) <= _KEY_QUOTE_CHARS else text[:_KEY_QUOTE_CHARS] + "…"
    return repr(cut.encode("utf-8", errors="replace").decode("utf-8"))


def _header_bytes(value: object) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    return str(value).encode()


def _utf8(text: str) -> bytes:
    return text.encode("utf-8", errors="replace")


@dataclass(frozen=True)
class Refused:
    """A message Kafka would not take because of its size (client check or broker)."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: Headers
    error: str


@dataclass
class DeliveryTracker:
    """Collects delivery reports so a stage can tell whether everything it produced was acknowledged.

    With `dead_letter_refused`, a message refused for its size is not a failure of the stage: it goes
    to the DLQ of its topic (a DLQ message: to the same DLQ) as a cut copy with `reason: too_large`,
    and the flush goes on. Without it (tools), such a refusal fails the flush like any other.
    """

    dead_letter_refused: bool = False
    failures: list[str] = field(default_factory=list)
    refused: list[Refused] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def callback(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            return
        with self._lock:
            if self.dead_letter_refused and error.code() in _TOO_LARGE:
                self.refused.append(_refused(message.topic() or "", message.key(), message.value(),
                                             _headers_of(message), error.str()))
            else:
                self.failures.append(f"{message.topic()}[{message.partition()}]: {error.str()}")

    def produce(self, producer: Producer, topic: str, key: str | bytes | None, value: bytes | None,
                headers: Headers) -> None:
        """`producer.produce` with this tracker's callback; a refusal for size is kept, not raised."""
        sent: list[tuple[str, str | bytes | None]] = list(headers)
        try:
            producer.produce(topic, key=key, value=value, headers=sent, on_delivery=self.callback)
        except KafkaException as exc:
            self.refused_at_produce(exc, topic, key, value, headers)

    def refused_at_produce(self, exc: KafkaException, topic: str, key: str | bytes | None, value: bytes | None,
                           headers: Sequence[tuple[str, str | bytes | None]]) -> None:
        """`producer.produce` raised `exc` for this message (a loop producing with `callback` itself): a refusal
        for size is kept, as `produce` keeps it; anything else is raised again."""
        error = exc.args[0]
        if not self.dead_letter_refused or not isinstance(error, KafkaError) or error.code() not in _TOO_LARGE:
            raise exc
        kept: Headers = [(name, value.encode() if isinstance(value, str) else value) for name, value in headers]
        with self._lock:
            self.refused.append(_refused(topic, key, value, kept, error.str()))

    def flush(self, producer: Producer, timeout_s: float) -> None:
        """Wait for every report; raise DeliveryError when one failed or did not arrive in time."""
        try:
            remaining = producer.flush(timeout_s)
        except KafkaException as exc:
            raise DeliveryError(f"flushing the producer failed: {exc}") from exc
        if remaining:  # the failures reported so far stay for the flush that finishes
            raise DeliveryTimeoutError(f"{remaining} messages not acknowledged within {timeout_s} s")
        with self._lock:
            failures, self.failures = self.failures, []
            if failures:  # refused messages stay for the flush that succeeds
                raise DeliveryError(f"{len(failures)} messages failed: {failures[:3]}")
            refused, self.refused = self.refused, []
        if refused:
            _dead_letter_refused(producer, refused, timeout_s)


def _refused(topic: str, key: str | bytes | None, value: bytes | None, headers: Headers, error: str) -> Refused:
    raw_key = key.encode() if isinstance(key, str) else key
    return Refused(topic, raw_key, value, headers, error)


def _headers_of(message: Message) -> Headers:
    raw_headers: list[tuple[str, Any]] = list(message.headers() or [])  # type: ignore[arg-type]
    return [(name, _header_bytes(value)) for name, value in raw_headers]


def _dead_letter_refused(producer: Producer, refused: list[Refused], timeout_s: float) -> None:
    """Cut copies of refused messages to their DLQ; one attempt, what fails again is logged and counted."""
    lost: list[str] = []

    def report(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            lost.append(f"{message.topic()}: {error.str()}")

    for item in refused:
        dlq_topic = item.topic if item.topic.endswith(".dlq") else f"{item.topic}.dlq"
        headers = [(name, raw[:_CUT_HEADER_BYTES] if raw else raw) for name, raw in item.headers
                   if name not in {"reason", "message", "truncated", "original_size"}]
        headers += [("reason", b"too_large"), ("message", _utf8(f"refused by Kafka: {item.error}")),
                    ("truncated", b"true"), ("original_size", str(len(item.value or b"")).encode())]
        if not any(name == "original_topic" for name, _ in headers):
            headers.append(("original_topic", item.topic.encode()))
        value = item.value[:_REFUSED_COPY_BYTES] if item.value is not None else None
        sent: list[tuple[str, str | bytes | None]] = list(headers)
        log.error("message refused for its size; a cut copy goes to the DLQ", topic=item.topic,
                  dlq_topic=dlq_topic, size=len(item.value or b""), error=item.error)
        metrics.MESSAGES_REFUSED.labels(item.topic).inc()
        try:
            producer.produce(dlq_topic, key=item.key, value=value, headers=sent, on_delivery=report)
        except KafkaException as exc:
            lost.append(f"{dlq_topic}: {exc}")
    producer.flush(timeout_s)
    if lost:
        log.error("cut copies of refused messages were lost too", count=len(lost), errors=lost[:3])


class Positioned(Protocol):
    """Anything read from a partition: a fold-stage record, a sync-stage record."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...


def highest_offsets(records: Sequence[Positioned]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset to store: one past the last record of the batch. The records of one
    partition come in the order they were consumed (a batch, or a part of one: offsets ascend), so the last
    one of each partition is its highest; a comprehension, once per record of every batch."""
    return {(record.topic, record.partition): record.offset + 1 for record in records}


def record_lag(group: str, raw_stats: str, sink: Callable[[dict[str, Any]], None] | None = None) -> None:
    """librdkafka's `stats_cb`: consumer lag per partition into the metrics; the parsed statistics to `sink`."""
    stats = json.loads(raw_stats)
    lags = stats_lag(stats)
    for (_topic, partition), lag in lags.items():
        metrics.CONSUMER_LAG.labels(group, str(partition)).set(lag)
    metrics.keep_lag_series(group, (partition for _topic, partition in lags))
    if sink is not None:
        sink(stats)


def log_kafka_error(error: KafkaError) -> None:
    """librdkafka's `error_cb`: client-wide errors (brokers down, authentication) as log lines, each
    repeated message once per `REPEAT_WINDOW_S` with the count of the ones held back."""
    held = _ERROR_REPEATS.admit(f"{error.name()} {error.str()}")
    if held is not None:
        # a fatal error (the idempotent producer fenced, say) ends the client: error, not a passing warning
        emit = log.error if error.fatal() else log.warning
        emit("kafka client error", code=error.name(), error=error.str(), fatal=error.fatal(), repeated=held)
_ANSWERED_WITHIN_US = 3_000_000  # a leader that sent nothing for this long is not answering


def partitions_at_end(
    stats: dict[str, Any], topic: str, owned: Sequence[int], eofs_read: Mapping[int, int] | None = None,
) -> tuple[dict[int, int], bool]:
    """(owned partitions read to their high watermark → µs their leader had been silent when the statistics
    were taken, whether an owned partition's leader is silent).

    From librdkafka's statistics: a partition is at its end when it is fetched, the application has
    read up to the high watermark of the last fetch response, and its leader broker is UP and sent
    something within the last 3 s. What the application has read is the last message it was handed
    (`app_offset`) or the last end of partition it was handed (`eofs_read`: partition → offset, kept by
    the caller since the assignment). librdkafka's own `eof_offset` is no evidence: it says where its
    fetcher reached the end, and what it fetched may still wait in the local queue (`fetchq_cnt`),
    right after a restart all of it. The leader's silence (`rxidle`) dates the answer: the partition was
    at its end as of the statistics' time less that silence (`statistics_age_ms` gives their age)."""
    answering = {
        int(broker.get("nodeid", -1)): idle_us for broker in stats.get("brokers", {}).values()
        if broker.get("state") == "UP" and 0 <= (idle_us := int(broker.get("rxidle", -1))) < _ANSWERED_WITHIN_US
    }
    partitions = stats.get("topics", {}).get(topic, {}).get("partitions", {})
    eofs = eofs_read or {}
    ends: dict[int, int] = {}
    silent = False
    for partition in owned:
        entry = partitions.get(str(partition))
        if entry is None:
            continue
        leader_idle_us = answering.get(int(entry.get("leader", -1)))
        if leader_idle_us is None:
            silent = True
            continue
        high = int(entry.get("hi_offset", -1))
        read = max(int(entry.get("app_offset", -1)), eofs.get(partition, -1))
        if entry.get("fetch_state") == "active" and high >= 0 and read == high:
            ends[partition] = leader_idle_us
    return ends, silent


def statistics_age_ms(stats: dict[str, Any], monotonic_us: int | None = None) -> int:
    """How long ago librdkafka took these statistics: its `ts` is CLOCK_MONOTONIC in µs, the clock of Python's
    `time.monotonic`. 0 when it is missing or ahead (never a negative age)."""
    taken_us = stats.get("ts")
    if not isinstance(taken_us, int):
        return 0
    now_us = time.monotonic_ns() // 1000 if monotonic_us is None else monotonic_us
    return max(0, (now_us - taken_us) // 1000)


def store_offsets(consumer: Consumer, positions: dict[tuple[str, int], int]) -> None:
    """Store (topic, partition) → next offset for librdkafka to commit; its error leaves as KafkaClientError."""
    try:
        consumer.store_offsets(offsets=[TopicPartition(topic, partition, offset)
                                        for (topic, partition), offset in positions.items()])
    except KafkaException as exc:
        raise KafkaClientError(f"storing offsets of {len(positions)} partitions failed: {exc}") from exc


def commit_quietly(consumer: Consumer) -> None:
    """Commit stored offsets; nothing stored yet, or a group that moved on, are both harmless here."""
    try:
        consumer.commit(asynchronous=False)
    except KafkaException as exc:
        log.info("commit skipped", error=str(exc))


def stats_lag(stats: dict[str, Any]) -> dict[tuple[str, int], int]:
    """Consumer lag per partition from librdkafka's statistics JSON (-1 = unknown, skipped)."""
    lags: dict[tuple[str, int], int] = {}
    for topic, topic_stats in stats.get("topics", {}).items():
        for partition, partition_stats in topic_stats.get("partitions", {}).items():
            lag = int(partition_stats.get("consumer_lag", -1))
            if int(partition) >= 0 and lag >= 0:
                lags[(topic, int(partition))] = lag
    return lags
