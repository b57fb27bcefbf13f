"""A stage's producer reports failed deliveries only, and a failure still reaches its `DeliveryTracker` (real Kafka)."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # type: ignore[attr-defined]

from tests.support import TopicReader, header
from worker.errors import DeliveryError
from worker.kafka.clients import DeliveryTracker
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

TOPIC_LIMIT_BYTES = 4_096


def _limit_upserts_topic(settings: Settings) -> None:
    """The broker refuses what the client sends: the topic's own limit, far below the client's."""
    admin = bootstrap.admin_client(settings)
    resource = ConfigResource("topic", settings.upserts_topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(TOPIC_LIMIT_BYTES), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)
    deadline = time.monotonic() + 30  # the broker applies it from its metadata: wait until it says so
    while time.monotonic() < deadline:
        described = admin.describe_configs([ConfigResource("topic", settings.upserts_topic)])
        try:
            [entries] = [future.result(timeout=30) for future in described.values()]
        except KafkaException as exc:  # a loaded broker's metadata may not hold the new topic yet
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise
            entries = {}  # nothing to read yet
        if "max.message.bytes" in entries and entries["max.message.bytes"].value == str(TOPIC_LIMIT_BYTES):
            return
        time.sleep(0.1)
    raise AssertionError("the topic's max.message.bytes did not change within 30 s")


def _counting(tracker: DeliveryTracker) -> list[KafkaError | None]:
    """The tracker's callback, counted: every report the producer serves goes through it."""
    reports: list[KafkaError | None] = []
    track = tracker.callback

    def counted(error: KafkaError | None, message: Message) -> None:
        reports.append(error)
        track(error, message)

    tracker.callback = counted  # type: ignore[method-assign]
    return reports


def _produce_small(settings: Settings, tracker: DeliveryTracker) -> Any:
    producer = bootstrap.stage_producer(settings)
    for n in range(50):
        tracker.produce(producer, settings.upserts_topic, f"c{n}", b"small %d" % n, [("trigger", b"updated")])
    return producer


def _produce_big(settings: Settings, tracker: DeliveryTracker, producer: Any) -> None:
    """Alone in its batch: the broker refuses a whole record batch, the messages beside it too."""
    incompressible = os.urandom(3 * TOPIC_LIMIT_BYTES)  # the limit is on the batch as compressed
    tracker.produce(producer, settings.upserts_topic, "big", incompressible, [("trigger", b"updated")])


def test_delivered_messages_make_no_report_and_a_refused_one_fails_the_flush(settings: Settings) -> None:
    _limit_upserts_topic(settings)
    tracker = DeliveryTracker()
    reports = _counting(tracker)
    producer = _produce_small(settings, tracker)
    tracker.flush(producer, 30)
    assert reports == []  # 50 messages acknowledged, not one report served for them
    _produce_big(settings, tracker, producer)
    with pytest.raises(DeliveryError, match="1 messages failed"):
        tracker.flush(producer, 30)
    assert [error.code() for error in reports if error is not None] == [KafkaError.MSG_SIZE_TOO_LARGE]
    assert len(reports) == 1
    reader = TopicReader(settings, settings.upserts_topic)
    delivered = reader.read_until(lambda m: len(m) >= 50, timeout_s=30)
    reader.close()
    assert sorted(m.key() or b"" for m in delivered) == sorted(f"c{n}".encode() for n in range(50))


def test_a_stage_still_dead_letters_a_message_the_broker_refused(settings: Settings) -> None:
    _limit_upserts_topic(settings)
    tracker = DeliveryTracker(dead_letter_refused=True)
    producer = bootstrap.stage_producer(settings)
    _produce_big(settings, tracker, producer)
    tracker.flush(producer, 30)  # the refusal is dead-lettered, not a failure of the flush
    reader = TopicReader(settings, settings.upserts_dlq_topic)
    [letter] = reader.read_until(lambda m: len(m) >= 1, timeout_s=30)
    reader.close()
    assert (letter.key(), header(letter, "reason"), header(letter, "original_topic")) == (
        b"big", "too_large", settings.upserts_topic)
