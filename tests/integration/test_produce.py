"""`ilog produce` against the real local Kafka, and its file output."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Consumer
from typer.testing import CliRunner

from worker.dev.generator import GeneratorMix, StreamItem, generate_stream
from worker.dev.produce import (
    best_effort_subject,
    encode_item,
    pacing_offsets_s,
    produce_to_kafka,
    write_json_lines,
)
from worker.ops.cli import app
from worker.runtime.settings import Settings

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


def read_back(settings: Settings, expected: int, deadline_polls: int = 120) -> list[tuple[str | None, bytes]]:
    consumer = Consumer(settings.kafka_config(**{
        "group.id": f"{settings.fold_group}-readback", "auto.offset.reset": "earliest",
        "enable.auto.commit": False,
    }))
    consumer.subscribe([settings.events_topic])
    received: list[tuple[str | None, bytes]] = []
    try:
        for _ in range(deadline_polls):
            for message in consumer.consume(500, timeout=0.5):
                assert message.error() is None, message.error()
                key = message.key()
                received.append((key.decode() if key is not None else None, message.value() or b""))
            if len(received) >= expected:
                break
    finally:
        consumer.close()
    return received


def test_fifty_interactions_arrive_keyed_by_subject_in_their_own_order(settings: Settings) -> None:
    stream = generate_stream(50, seed=21, start=START, rate_per_s=10.0,
                             mix=GeneratorMix(duplicate_ratio=0.05, malformed_ratio=0.05))
    counts = produce_to_kafka(stream, settings, paced=False, progress=False)
    assert (counts.failed, counts.errors, counts.interactions) == (0, [], 50)
    assert counts.events + counts.malformed == len(stream) and counts.malformed > 0

    received = read_back(settings, len(stream))
    assert len(received) == len(stream)
    sent_by_key: dict[str | None, list[bytes]] = defaultdict(list)
    for item in stream:
        key, value = encode_item(item)
        sent_by_key[key].append(value)
    received_by_key: dict[str | None, list[bytes]] = defaultdict(list)
    for key, value in received:
        received_by_key[key].append(value)
    # Kafka keeps order within a key (one partition); keyless payloads spread over partitions.
    assert sorted(received_by_key.pop(None, [])) == sorted(sent_by_key.pop(None, []))
    assert received_by_key == sent_by_key
    events = [json.loads(value) for key, value in received if key is not None and value.endswith(b"}")]
    assert {event["subject"] for event in events if "subject" in event} == {f"conv-21-{n}" for n in range(50)}


def test_produce_command_writes_json_lines_that_decode_back(tmp_path: Path) -> None:
    out = tmp_path / "events.jsonl"
    result = CliRunner().invoke(app, ["produce", "--interactions", "20", "--seed", "4", "--out", str(out),
                                      "--malformed", "0.1", "--late-edits", "0.5", "--time-scale", "0.05"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    lines = out.read_bytes().splitlines()
    assert (summary["target"], summary["seed"], summary["interactions"]) == (str(out), 4, 20)
    assert summary["events"] + summary["malformed"] == len(lines)
    assert sum(1 for line in lines if _is_json_object(line)) >= summary["events"]


def test_file_output_is_one_item_per_line_in_stream_order(tmp_path: Path) -> None:
    stream = generate_stream(10, seed=2, start=START, rate_per_s=1.0, mix=GeneratorMix(malformed_ratio=0.3))
    out = tmp_path / "stream.jsonl"
    counts = write_json_lines(stream, out)
    assert out.read_bytes().splitlines() == [encode_item(item)[1] for item in stream]
    assert (counts.events, counts.malformed, counts.interactions) == (
        sum(isinstance(i, dict) for i in stream), sum(isinstance(i, bytes) for i in stream), 10)


def test_malformed_payloads_are_keyed_by_a_subject_found_in_them() -> None:
    assert best_effort_subject(b'{"id":"x","subject":"conv-9-1","ty') == "conv-9-1"
    assert best_effort_subject(b'{"id":"x","subj') is None
    assert encode_item(b'{"subject": "conv-1-2"') == ("conv-1-2", b'{"subject": "conv-1-2"')


def test_paced_offsets_follow_event_time_from_the_first_event() -> None:
    stream: list[StreamItem] = [
        {"subject": "a", "time": "2026-11-27T10:00:00.000Z"},
        b"{broken",
        {"subject": "b", "time": "2026-11-27T10:00:01.500Z"},
        {"subject": "a", "time": "2026-11-27T10:00:01.250Z"},
    ]
    assert pacing_offsets_s(stream) == [0.0, None, 1.5, 1.25]


def _is_json_object(line: bytes) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False
