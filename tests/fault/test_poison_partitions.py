"""Bad input stops only itself: poisons of every shape in one partition of a running fold stage."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from tests.support import (
    TopicReader,
    WorkerProcess,
    event,
    finalized_ids,
    header,
    offline_fold,
    snapshots_by_id,
    wait_for,
    without,
)
from worker.runtime.settings import Settings

POISON_PARTITION = 1
CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
             "customer": {"address": "+4930123456", "name": "Ada Example"}}


def _valid(start: datetime, count: int) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for i in range(count):
        subject, at = f"conv-pp-{i:02d}", start + timedelta(seconds=i * 0.1)
        events += [event("interaction.connected", subject, 1, at, CONNECTED),
                   event("log.updated", subject, 2, at + timedelta(seconds=1), {"notes": f"notes {i}"}),
                   event("interaction.disconnected", subject, 3, at + timedelta(seconds=2))]
    return events


Headers = list[tuple[str, str | bytes | None]]
Poison = tuple[str, bytes | None, bytes | None, Headers | None, str]
"""(label, key, value, headers, expected reason)"""


def _binary(time_text: str, **ce: bytes) -> Headers:
    base = {"specversion": b"1.0", "type": b"interaction.held", "source": b"/t", "time": time_text.encode()}
    return [(f"ce_{name}", value) for name, value in {**base, **ce}.items()]


def _poisons(start: datetime) -> list[Poison]:
    def doc(**fields: Any) -> bytes:
        return json.dumps({**event("interaction.held", "conv-pp-00", 50, start), **fields}).encode()

    at = start.isoformat().replace("+00:00", "Z")
    tomorrow = (start + timedelta(hours=20)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    raw_held = ('{"specversion":"1.0","id":"%s","source":"/t","type":"interaction.held",'
                '"subject":"%s","time":"%s","data":{}}')
    key = b"conv-pp-00"
    return [
        ("null-value", key, None, None, "invalid"),
        ("not-utf8", key, b"\xff\xfe\x00garbage", None, "invalid"),
        ("array", key, b"[1, 2]", None, "invalid"),
        ("string", None, b'"conv-pp-00"', None, "invalid"),
        ("deep-nesting", key, b"[" * 200_000, None, "invalid"),
        ("deep-object-over-bound", key, b'{"a":' * 50_000 + b"1" + b"}" * 50_000, None, "too_large"),
        ("nan-notes", key, doc(type="log.updated", data={"notes": float("nan")}), None, "invalid"),
        ("huge-int-notes", key, doc(type="log.updated", data={"notes": 10**400}), None, "invalid"),
        ("empty-subject", b"", doc(subject=""), None, "invalid"),
        ("naive-time", key, doc(time="2026-11-27T10:00:00"), None, "invalid"),
        ("bad-month", key, doc(time="2026-13-45T10:00:00Z"), None, "invalid"),
        ("year-9999", key, doc(time="9999-12-31T23:59:59Z"), None, "future_time"),
        ("tomorrow", key, doc(time=tomorrow), None, "future_time"),
        ("float-sequence", key, doc(sequence=1.5), None, "invalid"),
        ("bool-sequence", key, doc(sequence=True), None, "invalid"),
        ("negative-sequence", key, doc(sequence=-1), None, "invalid"),
        ("null-data", key, doc(type="interaction.connected", data=None), None, "invalid"),
        ("wrong-specversion", key, doc(specversion="0.3"), None, "invalid"),
        ("unknown-type", key, doc(type="interaction.exploded"), None, "unknown_type"),
        ("lone-surrogate-id", key, (raw_held % ("\\ud800", "conv-pp-00", at)).encode(), None, "invalid"),
        ("lone-surrogate-subject", key, (raw_held % ("s-1", "conv-\\udc00", at)).encode(), None, "invalid"),
        ("binary-not-utf8-id", key, b"{}", _binary(at, id=b"\xff\xfe"), "invalid"),
        ("binary-no-subject", key, b"{}", _binary(at, id=b"x-1"), "invalid"),
        ("binary-sequence-2^76", key, b"{}", _binary(at, id=b"x-2", subject=key, sequence=b"9" * 23), "too_large"),
        ("binary-data-not-json", key, b"{nope", _binary(at, id=b"x-3", subject=key), "invalid"),
    ]


def test_poisons_in_one_partition_are_dead_lettered_with_their_reason_and_every_partition_applies_the_rest(
    settings: Settings, tmp_path: Path,
) -> None:
    run = settings.model_copy(update={"edit_window_seconds": 6.0, "finalize_grace_seconds": 1.0})
    start = datetime.now(UTC) - timedelta(seconds=2)
    valid = _valid(start, 30)
    poisons = _poisons(start)
    offline = offline_fold(valid, tmp_path, run)
    producer = Producer(run.kafka_config(**{"enable.idempotence": True, "linger.ms": 5}))
    labels: dict[int, str] = {}

    def remember(label: str) -> Callable[[KafkaError | None, Message], None]:
        def report(error: KafkaError | None, message: Message) -> None:
            assert error is None, error
            labels[message.offset() or 0] = label
        return report

    worker = WorkerProcess("fold", run, tmp_path / "worker.log")
    dlq = TopicReader(run, run.events_dlq_topic)
    upserts = TopicReader(run, run.upserts_topic)
    try:
        for n, item in enumerate(valid):  # every partition: valid events; partition 1: a poison after each third
            producer.produce(run.events_topic, key=item["subject"], value=json.dumps(item).encode())
            if n % 3 == 0 and n // 3 < len(poisons):
                label, key, value, headers, _reason = poisons[n // 3]
                producer.produce(run.events_topic, key=key, value=value, headers=headers,
                                 partition=POISON_PARTITION, on_delivery=remember(label))
            producer.poll(0)
        assert producer.flush(30) == 0
        assert len(poisons) == len(labels)
        dlq.read_until(lambda m: len(m) >= len(poisons), timeout_s=60)
        messages = upserts.read_until(lambda m: finalized_ids(m) >= set(offline), timeout_s=60)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        dlq.read_until(lambda _m: False, timeout_s=2)
        found = {labels.get(int(header(m, "original_offset") or -1), "?"): header(m, "reason") for m in dlq.messages}
        assert {label: reason for label, *_, reason in poisons} == found
        assert len(poisons) == len(dlq.messages)
        assert all(header(m, "original_partition") == str(POISON_PARTITION) for m in dlq.messages)
        by_id = snapshots_by_id(messages)
        assert set(offline) == set(by_id)
        for interaction_id, expected in offline.items():
            final = max((s for s in by_id[interaction_id] if s["finalized"]), key=lambda s: s["version"])
            assert without(expected, "version", "trigger", "finalized") == without(
                final, "version", "trigger", "finalized"), interaction_id
        assert worker.log_text().count('"worker started"') == 1  # no restart
    finally:
        dlq.close()
        upserts.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_an_event_timed_ahead_within_the_allowed_skew_closes_no_other_window_early(
    settings: Settings, tmp_path: Path,
) -> None:
    """A producer whose clock runs 200 s fast (under ILOG_MAX_CLOCK_SKEW_SECONDS, so its event is taken)
    shares a partition with calls that just hung up: their in-window edits still land."""
    run = settings.model_copy(update={"edit_window_seconds": 20.0, "finalize_grace_seconds": 1.0})
    now = datetime.now(UTC)
    calls = [f"conv-skew-{n}" for n in range(5)]
    hung_up = [e for c in calls for e in (event("interaction.connected", c, 1, now - timedelta(seconds=10), CONNECTED),
                                          event("interaction.disconnected", c, 2, now))]
    fast_clock = event("interaction.connected", "conv-fast-clock", 1, now + timedelta(seconds=200), CONNECTED)
    edits = [event("log.updated", c, 3, now + timedelta(seconds=5), {"notes": f"edited {c}"}) for c in calls]
    producer = Producer(run.kafka_config(**{"enable.idempotence": True, "linger.ms": 5}))
    worker = WorkerProcess("fold", run, tmp_path / "worker.log")
    upserts = TopicReader(run, run.upserts_topic)
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), 30), worker.log_text()[-3000:]
        for item in [*hung_up, fast_clock]:
            producer.produce(run.events_topic, key=item["subject"], value=json.dumps(item).encode(), partition=0)
        assert producer.flush(30) == 0
        upserts.read_until(lambda m: "conv-fast-clock" in snapshots_by_id(m), timeout_s=30)
        time.sleep(3)  # the finalizer ticks with the fast clock's event folded
        for item in edits:
            producer.produce(run.events_topic, key=item["subject"], value=json.dumps(item).encode(), partition=0)
        assert producer.flush(30) == 0
        messages = upserts.read_until(lambda m: finalized_ids(m) >= set(calls), timeout_s=40)
        finals = {i: max(s, key=lambda s: s["version"]) for i, s in snapshots_by_id(messages).items() if i in calls}
        assert {c: (f"edited {c}", True) for c in calls} == {c: (f["notes"], f["finalized"]) for c, f in finals.items()}
        dlq = TopicReader(run, run.events_dlq_topic)
        try:
            assert [] == dlq.read_until(lambda _m: False, timeout_s=2)
        finally:
            dlq.close()
    finally:
        upserts.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
