"""What cannot be encoded or produced becomes a dead letter: snapshot bound, encoding errors, DLQ copies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from pydantic import ValidationError

from schemas.decode import decode_event
from schemas.events import LogUpdatedEvent, Rejection, RejectReason
from worker.core.batch import Record, TtlPolicy, plan_batch
from worker.core.state import InteractionLog, StoredLog, Tombstone, as_log
from worker.kafka.clients import DeliveryTracker, decode_message
from worker.kafka.dead_letters import rejection_message
from worker.runtime.settings import Settings

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)


def raw(kind: str, n: int, data: dict[str, Any] | None = None, subject: str = "c1") -> bytes:
    return json.dumps({"specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind, "subject": subject,
                       "time": (T0 + timedelta(seconds=n)).isoformat(), "data": data or {}}).encode()


def records(*values: bytes) -> list[Record]:
    return [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(values)]


def plan(items: list[Record], max_snapshot_bytes: int | None) -> Any:
    return plan_batch(items, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=0,
                      max_snapshot_bytes=max_snapshot_bytes)


NOTES = {"notes": "n" * 20_000}
ATTRIBUTES = {"attributes": {f"k{i}": "v" * 1000 for i in range(10)}}  # about 10 kB in the snapshot


def test_the_event_that_takes_the_snapshot_over_its_bound_is_too_large_and_the_rest_applies() -> None:
    batch = records(raw("log.opened", 1), raw("log.updated", 2, NOTES), raw("interaction.attributes", 3, ATTRIBUTES),
                    raw("log.opened", 4), raw("log.opened", 1, subject="c2"))
    result = plan(batch, max_snapshot_bytes=25_000)
    assert [(r.event_id, r.reason) for _, r in result.rejections] == [("c1-3", RejectReason.TOO_LARGE)]
    assert result.rejections[0][1].message.startswith("snapshot: the log would be ")
    written = {w.interaction_id: w.state for w in result.writes}
    assert isinstance(written["c1"], InteractionLog | StoredLog)
    c1 = as_log(written["c1"])
    assert (c1.applied_ids, c1.attributes, c1.version) == (("c1-1", "c1-2", "c1-4"), (), 3)
    assert {s.interaction_id: s.version for _, s in result.snapshots} == {"c1": 3, "c2": 1}
    assert all(len(s.payload) <= 25_000 for _, s in result.snapshots)
    documents = [InteractionLog.from_bytes(w.document) for w in result.writes if w.document is not None]
    assert documents == [as_log(state) for state in written.values() if not isinstance(state, Tombstone)]


def test_without_a_bound_or_under_it_the_whole_batch_applies() -> None:
    batch = records(raw("log.updated", 1, NOTES), raw("interaction.attributes", 2, ATTRIBUTES))
    for bound in (None, 40_000):
        result = plan(batch, max_snapshot_bytes=bound)
        assert result.rejections == [] and [w.state.version for w in result.writes] == [2]


def test_an_event_that_cannot_be_encoded_is_invalid_and_the_rest_of_its_interaction_applies() -> None:
    # decode refuses such a sequence; an event built past it must still not crash the batch
    decoded = decode_event(raw("log.updated", 2, {"notes": "n"}))
    assert isinstance(decoded, LogUpdatedEvent)
    bad = decoded.model_copy(update={"sequence": 2**64})
    batch = [*records(raw("log.opened", 1)), Record("events", 0, 1, b"{}", [], bad), *records(raw("log.opened", 3))]
    result = plan(batch, max_snapshot_bytes=None)
    (_, rejection), = result.rejections
    assert (rejection.event_id, rejection.reason) == ("c1-2", RejectReason.INVALID)
    assert rejection.message == ("log.updated: the log cannot be encoded with this event: "
                                 "TypeError: Integer exceeds 64-bit range")
    (write,) = result.writes
    assert isinstance(write.state, InteractionLog | StoredLog) and as_log(write.state).applied_ids == ("c1-1", "c1-3")


REJECTION = Rejection("e-1", "c1", RejectReason.TOO_LARGE, "event: too big")
BASE_HEADERS = [("reason", b"too_large"), ("message", b"event: too big"), ("original_topic", b"events"),
                ("original_partition", b"3"), ("original_offset", b"17"), ("event_id", b"e-1"), ("subject", b"c1")]


@pytest.mark.parametrize(("value", "headers", "expected_value", "expected_headers"), [
    (b"x" * 1000, [("h", b"v")], b"x" * 1000, [("h", b"v"), *BASE_HEADERS]),
    (b"x" * 1001, [("h", b"v")], b"x" * 1000,
     [("h", b"v"), *BASE_HEADERS, ("truncated", b"true"), ("original_size", b"1001")]),
    (b"x" * 10, [("ce_big", b"b" * 5000)], b"x" * 10,
     [("ce_big", b"b" * 1024), *BASE_HEADERS, ("truncated", b"true"), ("original_size", b"10")]),
    (None, [], None, BASE_HEADERS),
], ids=["fits", "value-over", "headers-over", "no-value"])
def test_a_dlq_copy_over_the_bound_is_cut_says_so_and_keeps_where_it_came_from(
    value: bytes | None, headers: list[tuple[str, bytes | None]], expected_value: bytes | None,
    expected_headers: list[tuple[str, bytes | None]],
) -> None:
    record = Record("events", 3, 17, value, headers, REJECTION)
    assert rejection_message(record, REJECTION, max_value_bytes=1000) == (expected_value, expected_headers)


class FakeProducer:
    """Refuses values over `max_bytes` at `produce`, as librdkafka's message.max.bytes check does."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.sent: list[tuple[str, bytes | None, list[tuple[str, Any]]]] = []

    def produce(self, topic: str, key: Any = None, value: bytes | None = None, headers: Any = None,
                on_delivery: Any = None) -> None:
        if value is not None and len(value) > self.max_bytes:
            raise KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
        self.sent.append((topic, value, list(headers or [])))

    def flush(self, timeout: float) -> int:
        return 0


def test_a_message_refused_for_its_size_goes_to_its_dlq_cut_and_the_flush_succeeds() -> None:
    producer = FakeProducer(max_bytes=100 * 1024)
    tracker = DeliveryTracker(dead_letter_refused=True)
    tracker.produce(producer, "upserts", "c1", b"s" * 200 * 1024, [("trigger", b"updated")])  # type: ignore[arg-type]
    tracker.produce(producer, "events.dlq", "c2", b"e" * 200 * 1024,  # type: ignore[arg-type]
                    [("original_topic", b"events"), ("reason", b"invalid")])
    tracker.flush(producer, 1.0)  # type: ignore[arg-type]
    assert [(topic, len(value or b""), dict(headers)) for topic, value, headers in producer.sent] == [
        ("upserts.dlq", 64 * 1024, {"trigger": b"updated", "reason": b"too_large", "truncated": b"true",
                                    "message": b"refused by Kafka: Broker: Message size too large",
                                    "original_size": b"204800", "original_topic": b"upserts"}),
        ("events.dlq", 64 * 1024, {"original_topic": b"events", "reason": b"too_large", "truncated": b"true",
                                   "message": b"refused by Kafka: Broker: Message size too large",
                                   "original_size": b"204800"}),
    ]


def test_without_dead_lettering_a_refusal_raises_as_before() -> None:
    with pytest.raises(KafkaException):
        DeliveryTracker().produce(FakeProducer(10), "t", None, b"x" * 11, [])  # type: ignore[arg-type]


def test_the_state_document_is_bounded_too_because_the_changelog_carries_it() -> None:
    long_ids = [json.dumps({"specversion": "1.0", "id": f"{n:03d}" + "i" * 252, "source": "/t", "type": "log.opened",
                            "subject": "c1", "time": T0.isoformat()}).encode() for n in range(40)]
    result = plan(records(*long_ids), max_snapshot_bytes=8_000)
    (write,) = result.writes
    assert write.document is not None and len(write.document) <= 8_000 - 64
    kept = len(as_log(write.state).applied_ids) if isinstance(write.state, InteractionLog | StoredLog) else 0
    assert 20 < kept < 40 and len(result.rejections) == 40 - kept
    assert {r.reason for _, r in result.rejections} == {RejectReason.TOO_LARGE}
    assert all(r.message.startswith("state: the log would be ") for _, r in result.rejections)


def test_a_snapshot_bound_the_producer_would_refuse_is_a_bad_setting() -> None:
    fits = Settings(_env_file=None, kafka={"MESSAGE_MAX_BYTES": "1000000"})
    assert fits.max_snapshot_bytes == 900_000
    with pytest.raises(ValidationError, match=r"does not fit the producer's message\.max\.bytes=500000"):
        Settings(_env_file=None, kafka={"message_max_bytes": "500000"})


@pytest.mark.parametrize(("key", "value", "subject"), [
    (b"conv-9", b"x" * (256 * 1024 + 1), "conv-9"),  # too large to parse: the key names the interaction
    (b"conv-9", b"{", "conv-9"),
    (None, b"{", None),
    (b"conv-9", b'{"subject": "from-the-event", "type": "teleported"}', "from-the-event"),
])
def test_a_message_that_cannot_be_read_is_dead_lettered_under_its_kafka_key(
    key: bytes | None, value: bytes, subject: str | None,
) -> None:
    message = Message(topic="events", partition=0, offset=5, key=key, value=value)
    item = decode_message(message).item
    assert isinstance(item, Rejection) and item.subject == subject


def test_a_loop_producing_by_itself_keeps_a_size_refusal_as_produce_does() -> None:
    """The fold stage's snapshot loop calls the producer itself and hands a refusal to the tracker."""
    producer = FakeProducer(max_bytes=100 * 1024)
    tracker = DeliveryTracker(dead_letter_refused=True)
    value = b"s" * 200 * 1024
    with pytest.raises(KafkaException) as refused:
        producer.produce("upserts", key="c1", value=value, headers=[("trigger", b"updated"), ("version", "3")])
    tracker.refused_at_produce(refused.value, "upserts", "c1", value, [("trigger", b"updated"), ("version", "3")])
    tracker.flush(producer, 1.0)  # type: ignore[arg-type]
    ((topic, cut, headers),) = producer.sent
    assert (topic, len(cut or b"")) == ("upserts.dlq", 64 * 1024)
    assert dict(headers)["version"] == b"3" and dict(headers)["reason"] == b"too_large"


def test_a_loop_producing_by_itself_raises_any_other_refusal_again() -> None:
    error = KafkaException(KafkaError(KafkaError._QUEUE_FULL))
    with pytest.raises(KafkaException) as raised:
        DeliveryTracker(dead_letter_refused=True).refused_at_produce(error, "upserts", "c1", b"x", [])
    assert raised.value is error
