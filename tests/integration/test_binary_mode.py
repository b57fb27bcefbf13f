"""Binary-mode CloudEvents (`ce_` headers, `data` as the value) through the fold stage, real Kafka and Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from tests.support import TopicReader, WorkerProcess, event, header, offline_fold, snapshots_by_id, without
from worker.runtime.settings import Settings

CONNECTED = {"media": "chat", "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
             "customer": {"address": "ada@example.com", "name": "Ada Example"},
             "name": {"system": "salesforce", "type": "Contact", "id": "003A"}}
ENVELOPE = ("specversion", "id", "source", "type", "subject", "time", "sequence")

Headers = list[tuple[str, str | bytes | None]]


def binary(structured: dict[str, Any]) -> tuple[Headers, bytes | None]:
    """The same event in binary mode: every envelope attribute a `ce_` header (text), `data` the value."""
    headers: Headers = [(f"ce_{name}", str(structured[name]).encode()) for name in ENVELOPE if name in structured]
    data = structured.get("data")
    return headers, None if not data else json.dumps(data).encode()


def test_binary_mode_events_fold_like_their_structured_twins_and_a_bad_one_is_dead_lettered_with_its_headers(
    settings: Settings, tmp_path: Path,
) -> None:
    run = settings.model_copy(update={"edit_window_seconds": 3.0, "finalize_grace_seconds": 1.0})
    start = datetime.now(UTC) - timedelta(seconds=5)
    subject = "conv-bin-1"
    stream = [
        event("interaction.connected", subject, 1, start, CONNECTED),
        event("interaction.held", subject, 2, start + timedelta(seconds=10)),
        event("interaction.resumed", subject, 3, start + timedelta(seconds=25)),
        event("log.updated", subject, 4, start + timedelta(seconds=30), {"notes": "refund asked"}),
        event("interaction.attributes", subject, 5, start + timedelta(seconds=31), {"attributes": {"tier": "gold"}}),
        event("interaction.disconnected", subject, 6, start + timedelta(seconds=40), {"reason": "agent"}),
    ]
    offline = offline_fold(stream, tmp_path, run)[subject]
    bad_headers, bad_value = binary({**event("log.updated", subject, 7, start), "sequence": -1,
                                     "data": {"notes": "x"}})
    producer = Producer(run.kafka_config(**{"enable.idempotence": True}))
    for n, item in enumerate(stream):
        if n == 2:  # one structured event among the binary ones, and a binary-mode copy of one already sent
            producer.produce(run.events_topic, key=subject, value=json.dumps(item).encode())
            producer.produce(run.events_topic, key=subject, value=binary(stream[0])[1], headers=binary(stream[0])[0])
            continue
        headers, value = binary(item)
        producer.produce(run.events_topic, key=subject, value=value, headers=headers)
    producer.produce(run.events_topic, key=subject, value=bad_value, headers=bad_headers)
    assert producer.flush(30) == 0

    worker = WorkerProcess("fold", run, tmp_path / "worker.log")
    upserts = TopicReader(run, run.upserts_topic)
    dlq = TopicReader(run, run.events_dlq_topic)
    try:
        messages = upserts.read_until(
            lambda m: any(s["finalized"] for s in snapshots_by_id(m).get(subject, [])), timeout_s=60)
        final = max(snapshots_by_id(messages)[subject], key=lambda s: s["version"])
        assert final["finalized"], worker.log_text()[-3000:]
        assert (offline["version"] + 1, without(offline, "version", "trigger", "finalized")) == (
            final["version"], without(final, "version", "trigger", "finalized"))
        assert (6, "chat", 15, 1, "refund asked", {"tier": "gold"}) == (
            offline["version"], final["media"], final["hold_seconds"], final["hold_count"], final["notes"],
            final["attributes"])
        letters = dlq.read_until(lambda m: len(m) >= 1, timeout_s=30)
        assert [("invalid", "sequence: Input should be a valid integer", f"{subject}-7", subject, "-1")] == [
            (header(m, "reason"), header(m, "message"), header(m, "event_id"), header(m, "subject"),
             header(m, "ce_sequence")) for m in letters]
    finally:
        upserts.close()
        dlq.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
