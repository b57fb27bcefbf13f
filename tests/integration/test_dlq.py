"""`ilog dlq list|replay` against the real broker, with dead letters written by a real fold stage."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.support import ILOG, REPO, TopicReader, WorkerProcess, header, headers_of, produce, settings_env
from worker.runtime.settings import Settings

CONNECTED: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-dlq-1", "source": "/platform/conversations",
    "type": "interaction.connected", "subject": "conv-dlq-1", "time": "2026-01-05T10:00:00Z", "sequence": 1,
    "data": {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-1",
             "customer": {"address": "+4930123456", "name": "Ada Example"}},
}


def _letters() -> list[dict[str, Any] | bytes]:
    unknown = {**CONNECTED, "id": "evt-dlq-2", "type": "conversation.recording.started", "subject": "conv-dlq-2"}
    missing_time = {k: v for k, v in CONNECTED.items() if k != "time"} | {"id": "evt-dlq-3",
                                                                         "subject": "conv-dlq-3"}
    return [CONNECTED, json.dumps(unknown).encode(), json.dumps(missing_time).encode(), b'{"specversion": "1.']


def _ilog(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ILOG, *args], cwd=REPO, env=settings_env(settings, COLUMNS="200"),
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture
def dead_letters(settings: Settings, tmp_path: Path) -> Iterator[Settings]:
    """Three rejected payloads in `<events>.dlq`, written by `ilog worker fold`; the worker keeps running."""
    produce(settings, settings.events_topic, _letters())
    worker = WorkerProcess("fold", settings, tmp_path / "worker.log")
    try:
        reader = TopicReader(settings, settings.events_dlq_topic)
        assert 3 == len(reader.read_until(lambda m: len(m) >= 3, timeout_s=60)), worker.log_text()[-2000:]
        reader.close()
        yield settings
    finally:
        assert worker.stop() == 0, worker.log_text()[-2000:]


def test_dlq_list_shows_reason_message_interaction_and_origin_of_every_letter(dead_letters: Settings) -> None:
    result = _ilog(dead_letters, "dlq", "list", "--json")
    assert 0 == result.returncode, result.stderr
    letters = json.loads(result.stdout)
    got = sorted((d["reason"], d["interaction"], d["original_topic"], d["replayed"]) for d in letters)
    topic = dead_letters.events_topic
    assert [("invalid", "", topic, False), ("invalid", "conv-dlq-3", topic, False),
            ("unknown_type", "conv-dlq-2", topic, False)] == got
    assert all(d["message"] and d["original_offset"] is not None for d in letters)
    assert any("time" in d["message"] for d in letters if d["interaction"] == "conv-dlq-3")

    table = _ilog(dead_letters, "dlq", "list", "--reason", "unknown_type")
    assert 0 == table.returncode, table.stderr
    assert "unknown_type" in table.stdout and "conv-dlq-2" in table.stdout
    assert "invalid" not in table.stdout
    limited = json.loads(_ilog(dead_letters, "dlq", "list", "--json", "--limit", "1").stdout)
    assert 1 == len(limited)


def test_dlq_replay_resends_to_the_original_topic_records_it_and_refuses_a_second_time(
    dead_letters: Settings,
) -> None:
    settings = dead_letters
    listed = json.loads(_ilog(settings, "dlq", "list", "--json", "--reason", "unknown_type").stdout)
    position = listed[0]["dlq"]

    first = _ilog(settings, "dlq", "replay", "--offset", position, "--yes", "--json")
    assert 0 == first.returncode, first.stderr
    note = json.loads(first.stdout)["resent"][0]
    assert (position, settings.events_topic, "unknown_type", "conv-dlq-2") == (
        note["dlq"], note["to_topic"], note["reason"], note["interaction"])

    events = TopicReader(settings, settings.events_topic)
    resent = [m for m in events.read_until(lambda ms: any(header(m, "replayed_from") for m in ms), 30)
              if header(m, "replayed_from")]
    events.close()
    assert [(position, "conv-dlq-2")] == [(header(m, "replayed_from"), json.loads(m.value() or b"")["subject"])
                                          for m in resent]
    assert {"replayed_from"} == {name for name, _ in headers_of(resent[0])}  # ours stripped

    # The fold stage reads the resent event again: still an unknown type, so a new letter that says so.
    dlq = TopicReader(settings, settings.events_dlq_topic)
    again = dlq.read_until(lambda ms: any(header(m, "replayed_from") == position for m in ms), 30)
    dlq.close()
    assert ["unknown_type"] == [header(m, "reason") for m in again if header(m, "replayed_from") == position]

    refused = _ilog(settings, "dlq", "replay", "--offset", position, "--yes")
    assert 1 == refused.returncode
    assert "replayed before" in refused.stderr and position in refused.stderr
    forced = _ilog(settings, "dlq", "replay", "--offset", position, "--yes", "--force")
    assert 0 == forced.returncode, forced.stderr
    listed_after = {d["dlq"]: d["replayed"] for d in json.loads(_ilog(settings, "dlq", "list", "--json").stdout)}
    assert listed_after[position] is True


def test_dlq_replay_without_yes_off_a_terminal_asks_for_it_and_sends_nothing(dead_letters: Settings) -> None:
    result = _ilog(dead_letters, "dlq", "replay", "--reason", "invalid")
    assert 1 == result.returncode
    assert "pass --yes" in result.stderr
    replayed = TopicReader(dead_letters, f"{dead_letters.events_dlq_topic}.replayed")
    assert [] == replayed.read_until(lambda m: False, timeout_s=2)
    replayed.close()


def test_dlq_replay_rejects_an_offset_it_cannot_read(settings: Settings) -> None:
    result = _ilog(settings, "dlq", "replay", "--offset", "first", "--yes")
    assert 2 == result.returncode
    assert "--offset 'first'" in result.stderr


def test_dlq_list_of_a_missing_topic_says_so(settings: Settings) -> None:
    missing = f"nope-{datetime.now(UTC).timestamp()}"
    result = _ilog(settings, "dlq", "list", "--topic", missing)
    assert 2 == result.returncode
    assert "not found" in result.stderr


def test_dlq_replay_leaves_out_a_cut_copy_and_names_where_the_whole_message_is(
    settings: Settings, tmp_path: Path,
) -> None:
    oversized = {**CONNECTED, "id": "evt-dlq-big", "subject": "conv-dlq-big",
                 "data": {**CONNECTED["data"], "pad": "x" * 300_000}}
    produce(settings, settings.events_topic, [oversized])
    worker = WorkerProcess("fold", settings, tmp_path / "worker.log")
    try:
        reader = TopicReader(settings, settings.events_dlq_topic)
        [letter] = reader.read_until(lambda m: len(m) >= 1, timeout_s=60)
        reader.close()
    finally:
        assert worker.stop() == 0, worker.log_text()[-2000:]
    assert ("too_large", "true") == (header(letter, "reason"), header(letter, "truncated"))
    position = f"{settings.events_dlq_topic}:{letter.partition()}:{letter.offset()}"

    result = _ilog(settings, "dlq", "replay", "--yes")
    assert 1 == result.returncode
    assert "1 letter(s) are cut copies (truncated) and are left out" in result.stderr
    assert f"{position} ({settings.events_topic}[{header(letter, 'original_partition')}]@" in " ".join(
        result.stderr.split())
    replayed = TopicReader(settings, f"{settings.events_dlq_topic}.replayed")
    assert [] == replayed.read_until(lambda m: False, timeout_s=2)
    replayed.close()


def test_dlq_list_shows_the_letters_of_both_dlqs_oldest_first_and_limit_keeps_the_oldest(settings: Settings) -> None:
    """The events DLQ and the upserts DLQ are one list, by time: `--limit 1` is the oldest letter of either."""
    from confluent_kafka import Producer

    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    producer = Producer(settings.kafka_config())
    for topic, original, stamp_ms, reason in (
        (settings.events_dlq_topic, settings.events_topic, now_ms - 60_000, "invalid"),
        (settings.upserts_dlq_topic, settings.upserts_topic, now_ms - 120_000, "salesforce:STRING_TOO_LONG"),
        (settings.events_dlq_topic, settings.events_topic, now_ms - 30_000, "unknown_type"),
    ):
        producer.produce(topic, key=b"conv-order", value=b"{}", timestamp=stamp_ms, partition=0,
                         headers=[("reason", reason.encode()), ("message", b"m"), ("original_topic", original.encode()),
                                  ("original_partition", b"0"), ("original_offset", b"0")])
    assert producer.flush(30) == 0

    letters = json.loads(_ilog(settings, "dlq", "list", "--json").stdout)
    assert ["salesforce:STRING_TOO_LONG", "invalid", "unknown_type"] == [d["reason"] for d in letters]
    oldest = json.loads(_ilog(settings, "dlq", "list", "--json", "--limit", "1").stdout)
    assert ["salesforce:STRING_TOO_LONG"] == [d["reason"] for d in oldest]
