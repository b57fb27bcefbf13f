"""Bad input stops only itself: poison messages on one partition, between valid events, real Kafka and Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AlterConfigOpType, ConfigEntry, ConfigResource  # type: ignore[attr-defined]

from tests.support import (
    TopicReader,
    WorkerProcess,
    event,
    finalized_ids,
    header,
    offline_fold,
    snapshots_by_id,
    without,
)
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

BIG_MESSAGE_BYTES = 16 * 1024 * 1024
CONNECTED = {"media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
             "customer": {"address": "+4930123456", "name": "Ada Example"}}


def _allow_big_messages(settings: Settings) -> None:
    """The 10 MB poison must reach the topic at all: raise the events topic's limit for this test."""
    admin = bootstrap.admin_client(settings)
    resource = ConfigResource("topic", settings.events_topic, incremental_configs=[
        ConfigEntry("max.message.bytes", str(BIG_MESSAGE_BYTES), incremental_operation=AlterConfigOpType.SET)])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result(timeout=30)


def _produce_on_partition_zero(settings: Settings, items: list[tuple[str, bytes, str | None]]) -> dict[str, int]:
    """(label, value, key) each, in order, all on partition 0; returns label → offset."""
    producer = Producer(settings.kafka_config(**{
        "enable.idempotence": True, "message.max.bytes": BIG_MESSAGE_BYTES, "linger.ms": 5}))
    offsets: dict[str, int] = {}

    def delivered(label: str) -> Any:
        def report(error: KafkaError | None, message: Message) -> None:
            assert error is None, error
            offsets[label] = message.offset() or 0
        return report

    for label, value, key in items:
        producer.produce(settings.events_topic, value=value, key=key, partition=0, on_delivery=delivered(label))
        producer.poll(0)
    assert producer.flush(60) == 0
    return offsets


def _valid_histories(start: datetime, count: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(first half: connect, notes, disconnect; second half: an in-window edit per interaction)."""
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    for i in range(count):
        subject, at = f"conv-{i:02d}", start + timedelta(seconds=i * 0.1)
        first += [event("interaction.connected", subject, 1, at, CONNECTED),
                  event("log.updated", subject, 2, at + timedelta(seconds=1), {"notes": f"first {i}"}),
                  event("interaction.disconnected", subject, 3, at + timedelta(seconds=2))]
        second.append(event("log.updated", subject, 4, at + timedelta(seconds=6), {"notes": f"edited {i}"}))
    return first, second


def _poisons(start: datetime) -> list[tuple[str, bytes, str | None, str]]:
    """(label, value, key, expected reason) of each poison of the fold-stage issue, and one over the snapshot bound."""
    def raw(document: dict[str, Any]) -> bytes:
        return json.dumps(document).encode()

    huge_sequence = {**event("log.opened", "conv-00", 90, start), "sequence": 2**64}
    long_name = event("interaction.connected", "poison-name", 1, start,
                      {**CONNECTED, "customer": {"name": "n" * 600_000}})
    big_attributes = event("interaction.attributes", "conv-01", 91, start,
                           {"attributes": {f"a{i}": "v" * 450_000 for i in range(3)}})
    ten_mb = b'{"specversion": "1.0", "id": "' + b"x" * (10 * 1024 * 1024) + b'"'
    from_2099 = event("log.updated", "conv-02", 92, datetime(2099, 1, 1, tzinfo=UTC), {"notes": "from the future"})
    over_snapshot = event("interaction.attributes", "conv-03", 93, start + timedelta(seconds=1),
                          {"attributes": {f"b{i}": "v" * 1000 for i in range(30)}})
    return [
        ("sequence-2^64", raw(huge_sequence), "conv-00", "too_large"),  # over its bound (CONTRACT.md)
        ("600kb-name", raw(long_name), "poison-name", "too_large"),
        ("3x450kb-attributes", raw(big_attributes), "conv-01", "too_large"),
        ("10mb-invalid", ten_mb, None, "too_large"),
        ("dated-2099", raw(from_2099), "conv-02", "future_time"),
        ("over-snapshot-bound", raw(over_snapshot), "conv-03", "too_large"),
    ]


def _interleaved(valid: list[dict[str, Any]], poisons: list[tuple[str, bytes, str | None, str]],
                 ) -> list[tuple[str, bytes, str | None]]:
    step = max(1, len(valid) // (len(poisons) + 1))
    items: list[tuple[str, bytes, str | None]] = []
    for index, document in enumerate(valid):
        items.append((document["id"], json.dumps(document).encode(), document["subject"]))
        if (index + 1) % step == 0 and (index + 1) // step <= len(poisons):
            label, value, key, _reason = poisons[(index + 1) // step - 1]
            items.append((label, value, key))
    return items


def test_each_poison_is_dead_lettered_with_its_reason_and_every_valid_event_folds(
    settings: Settings, tmp_path: Path,
) -> None:
    fold_settings = settings.model_copy(update={
        "edit_window_seconds": 30.0, "finalize_grace_seconds": 1.0, "max_snapshot_bytes": 20_000})
    _allow_big_messages(fold_settings)
    start = datetime.now(UTC) - timedelta(seconds=10)
    first, second = _valid_histories(start, 12)
    poisons = _poisons(start)
    expected_reasons = {label: reason for label, _value, _key, reason in poisons}
    ten_mb_size = next(len(value) for label, value, _key, _reason in poisons if label == "10mb-invalid")
    offline = offline_fold([*first, *second], tmp_path, fold_settings)

    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    dlq = TopicReader(fold_settings, fold_settings.events_dlq_topic)
    upserts = TopicReader(fold_settings, fold_settings.upserts_topic)
    try:
        offsets = _produce_on_partition_zero(fold_settings, _interleaved(first, poisons))
        letters = dlq.read_until(lambda m: len(m) >= len(poisons), timeout_s=90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        by_offset = {int(header(m, "original_offset") or -1): m for m in letters}
        assert {label: header(by_offset[offsets[label]], "reason") for label in expected_reasons} == expected_reasons
        assert all(header(m, "original_partition") == "0" for m in letters)
        assert header(by_offset[offsets["600kb-name"]], "subject") == "poison-name"
        # an event over the byte bound is still reported with its id (CONTRACT.md "Rejections")
        assert [header(by_offset[offsets[label]], "event_id") for label in ("600kb-name", "3x450kb-attributes")] == [
            "poison-name-1", "conv-01-91"]
        ten_mb = by_offset[offsets["10mb-invalid"]]
        assert (header(ten_mb, "truncated"), header(ten_mb, "original_size"), len(ten_mb.value() or b"")) == (
            "true", str(ten_mb_size), fold_settings.dlq_max_value_bytes)
        # the 2099 event moved no clock: no window closed before its in-window edit arrives
        upserts.read_until(lambda m: set(snapshots_by_id(m)) >= set(offline), timeout_s=30)
        assert finalized_ids(upserts.messages) == set()

        _produce_on_partition_zero(fold_settings, [(d["id"], json.dumps(d).encode(), d["subject"]) for d in second])
        messages = upserts.read_until(lambda m: finalized_ids(m) >= set(offline), timeout_s=90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        by_id = snapshots_by_id(messages)
        for interaction_id, expected in offline.items():
            final = max((s for s in by_id[interaction_id] if s["finalized"]), key=lambda s: s["version"])
            assert without(expected, "version", "trigger", "finalized") == without(
                final, "version", "trigger", "finalized"), interaction_id
        assert "poison-name" not in by_id
        dlq.read_until(lambda m: False, timeout_s=2)
        assert len(dlq.messages) == len(poisons)  # no valid event was dead-lettered
    finally:
        dlq.close()
        upserts.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
