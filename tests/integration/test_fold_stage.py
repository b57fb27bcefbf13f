"""The fold stage against the real broker and the real redis-server, as operators run it: a process."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from tests.support import (
    TopicReader,
    WorkerProcess,
    event,
    finalized_ids,
    header,
    offline_fold,
    produce,
    snapshots_by_id,
    wait_for,
    without,
)
from worker.core.fold import snapshot
from worker.core.state import InteractionLog, StoredLog, Tombstone, as_log
from worker.dev.generator import GeneratorMix, generate_histories
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

FAST_GROUP = {"ILOG_KAFKA__SESSION_TIMEOUT_MS": "6000", "ILOG_KAFKA__HEARTBEAT_INTERVAL_MS": "500"}


def _stream(n: int, *, seed: int, window_s: float, start: datetime) -> list[dict[str, Any]]:
    """Mixed media, 5% duplicates, shuffled inside each interaction; interactions one after another."""
    histories = generate_histories(
        n, seed=seed, start=start, rate_per_s=500, edit_window_s=window_s, time_scale=0.01,
        mix=GeneratorMix(duplicate_ratio=0.05, shuffle_within_interaction=True),
    )
    return [event for history in histories for event in history]


def _fold_settings(settings: Settings, window_s: float = 20.0) -> Settings:
    return settings.model_copy(update={"edit_window_seconds": window_s, "finalize_grace_seconds": 1.0})


def _redis_logs(settings: Settings, ids: list[str]) -> dict[str, InteractionLog | Tombstone | None]:
    store = bootstrap.log_store(settings)
    try:
        return {i: as_log(s.state) if isinstance(s.state, StoredLog) else s.state for i, s in store.load(ids).items()}
    finally:
        store.close()


def _assert_finalized_like_offline(messages: list[Any], offline: dict[str, dict[str, Any]]) -> None:
    by_id = snapshots_by_id(messages)
    assert set(offline) == finalized_ids(messages)
    for interaction_id, expected in offline.items():
        final = max((s for s in by_id[interaction_id] if s["finalized"]), key=lambda s: s["version"])
        assert expected["version"] + 1 == final["version"], interaction_id
        assert without(expected, "version", "trigger", "finalized") == without(
            final, "version", "trigger", "finalized"
        )


def test_ten_thousand_events_fold_like_ilog_fold_and_every_window_finalizes(
    settings: Settings, tmp_path: Path
) -> None:
    fold_settings = _fold_settings(settings, window_s=20)
    events = _stream(1000, seed=11, window_s=20, start=datetime.now(UTC))
    assert len(events) >= 9000
    offline = offline_fold(events, tmp_path, fold_settings)
    produce(fold_settings, fold_settings.events_topic, events)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    try:
        ids = sorted(offline)
        assert wait_for(
            lambda: all(
                isinstance(s, InteractionLog) and s.version == offline[i]["version"]
                for i, s in _redis_logs(fold_settings, ids).items()
            ),
            timeout_s=60,
        ), worker.log_text()[-3000:]
        in_redis = _redis_logs(fold_settings, ids)
        for interaction_id in ids:
            log = in_redis[interaction_id]
            assert isinstance(log, InteractionLog)
            assert offline[interaction_id] == snapshot(log).model_dump(mode="json")

        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        messages = reader.read_until(lambda m: len(finalized_ids(m)) >= len(ids), timeout_s=90)
        reader.close()
        _assert_finalized_like_offline(messages, offline)
        tombstones = _redis_logs(fold_settings, ids)
        assert {i: offline[i]["version"] + 1 for i in ids} == {
            i: t.version for i, t in tombstones.items() if isinstance(t, Tombstone)
        }
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_sigkill_three_times_gives_the_same_final_logs_and_versions(settings: Settings, tmp_path: Path) -> None:
    fold_settings = _fold_settings(settings, window_s=8)
    events = _stream(1000, seed=12, window_s=8, start=datetime.now(UTC))
    offline = offline_fold(events, tmp_path, fold_settings)
    produce(fold_settings, fold_settings.events_topic, events)
    rng = random.Random(12)
    instance = {"ILOG_GROUP_INSTANCE_ID": "fold-crash-test", **FAST_GROUP}
    for moment_s in sorted(rng.uniform(0.3, 12.0) for _ in range(3)):
        worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
        time.sleep(moment_s / 3)
        worker.kill()
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    try:
        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        messages = reader.read_until(lambda m: len(finalized_ids(m)) >= len(offline), timeout_s=120)
        reader.close()
        _assert_finalized_like_offline(messages, offline)
        tombstones = _redis_logs(fold_settings, sorted(offline))
        assert {i: entry["version"] + 1 for i, entry in offline.items()} == {
            i: t.version for i, t in tombstones.items() if isinstance(t, Tombstone)
        }
    finally:
        worker.stop()


def _produce_to(settings: Settings, items: list[tuple[int, dict[str, Any]]]) -> None:
    """(partition, event) each, to the events topic."""
    producer = Producer(settings.kafka_config(**{"linger.ms": 5}))
    for partition, item in items:
        producer.produce(settings.events_topic, key=item["subject"], value=json.dumps(item).encode(),
                         partition=partition)
    assert producer.flush(30) == 0


def _open_version(settings: Settings, interaction_id: str) -> int | None:
    log = _redis_logs(settings, [interaction_id])[interaction_id]
    return log.version if isinstance(log, InteractionLog) and not log.finalized else None


def test_a_restarted_worker_behind_a_backlog_folds_the_in_window_edit_before_closing_the_window(
    settings: Settings, tmp_path: Path
) -> None:
    """Restarted behind a backlog on the other partitions, the worker's fetcher reaches the end of
    partition 0 long before the stage is handed its events: the window of `x`, past deadline + grace
    by the wall clock by then, closes with the edit that waited in Kafka, not before it is read."""
    window_s = 10.0
    fold_settings = _fold_settings(settings, window_s=window_s)
    ended = datetime.now(UTC)
    _produce_to(fold_settings, [(0, event("interaction.connected", "x", 1, ended - timedelta(seconds=5), CONNECTED)),
                                (0, event("interaction.disconnected", "x", 2, ended))])
    instance = {"ILOG_GROUP_INSTANCE_ID": "fold-backlog-test", **FAST_GROUP}  # rejoins at once after the kill
    first = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    try:
        assert wait_for(lambda: _open_version(fold_settings, "x") == 2, window_s), first.log_text()[-3000:]
    finally:
        first.kill()
    edit = event("log.updated", "x", 3, ended + timedelta(seconds=1), {"notes": "in time"})
    backlog = [(1 + i % 5, event("interaction.connected", f"b-{i}", 1, ended, CONNECTED)) for i in range(10_000)]
    _produce_to(fold_settings, [(0, edit), *backlog])
    closes_at = ended + timedelta(seconds=window_s + fold_settings.finalize_grace_seconds)
    assert wait_for(lambda: datetime.now(UTC) > closes_at, window_s + 5)
    second = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    try:
        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        messages = reader.read_until(lambda m: "x" in finalized_ids(m), timeout_s=90)
        reader.close()
        final = [(s["version"], s["notes"]) for s in snapshots_by_id(messages)["x"] if s["finalized"]]
        assert [(4, "in time")] == final, second.log_text()[-3000:]
    finally:
        assert second.stop() == 0, second.log_text()[-3000:]


def test_survivor_takes_over_a_killed_workers_partitions_and_finalizes_on_time(
    settings: Settings, tmp_path: Path
) -> None:
    fold_settings = _fold_settings(settings, window_s=25)
    events = _stream(400, seed=13, window_s=25, start=datetime.now(UTC))
    half = len(events) // 2
    survivor = WorkerProcess("fold", fold_settings, tmp_path / "a.log", **FAST_GROUP)
    victim = WorkerProcess("fold", fold_settings, tmp_path / "b.log", **FAST_GROUP)
    try:
        assert wait_for(lambda: "partitions assigned" in victim.log_text(), 30)
        produce(fold_settings, fold_settings.events_topic, events[:half])
        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        reader.read_until(lambda m: len(m) >= 50, timeout_s=30)
        victim.kill()
        produce(fold_settings, fold_settings.events_topic, events[half:])
        ids = {e["subject"] for e in events}
        messages = reader.read_until(lambda m: finalized_ids(m) >= ids, timeout_s=90)
        reader.close()
        assert ids == finalized_ids(messages)
        grace_ms = fold_settings.finalize_grace_seconds * 1000
        for message in messages:
            snap = json.loads(message.value() or b"")
            if snap["finalized"]:
                deadline_ms = datetime.fromisoformat(snap["edit_deadline"]).timestamp() * 1000
                _, produced_ms = message.timestamp()
                assert produced_ms - deadline_ms <= grace_ms + 1000, snap["interaction_id"]
    finally:
        survivor.stop()
        victim.stop()


CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "a-1",
             "customer": {"address": "+4930123", "name": "Ada Example"}}


def test_late_edit_and_truncated_json_go_to_the_dlq_while_their_batch_neighbours_apply(
    settings: Settings, tmp_path: Path
) -> None:
    fold_settings = _fold_settings(settings, window_s=60)
    t0 = datetime.now(UTC) - timedelta(minutes=5)
    late_edit = event("log.updated", "conv-late", 3, t0 + timedelta(seconds=100), {"notes": "too late"})
    stream: list[dict[str, Any] | bytes] = [
        event("interaction.connected", "conv-late", 1, t0, CONNECTED),
        event("interaction.disconnected", "conv-late", 2, t0 + timedelta(seconds=30)),
        late_edit,
        b'{"specversion": "1.0", "id": "evt-trunc", "type": "interaction.held", "subj',
        event("interaction.connected", "conv-ok", 1, t0, CONNECTED),
        event("log.updated", "conv-ok", 2, t0 + timedelta(seconds=5), {"notes": "in time"}),
    ]
    produce(fold_settings, fold_settings.events_topic, stream)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    try:
        reader = TopicReader(fold_settings, fold_settings.events_dlq_topic)
        dead = reader.read_until(lambda m: len(m) >= 2, timeout_s=60)
        reader.close()
        reasons = {header(m, "reason"): m for m in dead}
        assert {"late_edit", "invalid"} == set(reasons)
        assert header(reasons["late_edit"], "event_id") == late_edit["id"]
        assert header(reasons["late_edit"], "original_topic") == fold_settings.events_topic
        assert header(reasons["late_edit"], "original_offset") is not None
        assert "JSON" in (header(reasons["invalid"], "message") or "")
        assert (reasons["invalid"].value() or b"").startswith(b'{"specversion"')
        ok = _redis_logs(fold_settings, ["conv-ok"])["conv-ok"]
        assert isinstance(ok, InteractionLog)
        assert "in time" == snapshot(ok).notes
        assert "too late" not in json.dumps(snapshot(ok).model_dump(mode="json"))
    finally:
        worker.stop()


def test_idle_partition_closes_a_window_within_grace_plus_one_second(settings: Settings, tmp_path: Path) -> None:
    fold_settings = _fold_settings(settings, window_s=2)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), 30)
        now = datetime.now(UTC)
        produce(fold_settings, fold_settings.events_topic, [
            event("interaction.connected", "conv-idle", 1, now - timedelta(seconds=1), CONNECTED),
            event("interaction.disconnected", "conv-idle", 2, now),
        ])
        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        messages = reader.read_until(lambda m: bool(finalized_ids(m)), timeout_s=30)
        reader.close()
        final = next(m for m in messages if json.loads(m.value() or b"")["finalized"])
        deadline_ms = (now + timedelta(seconds=2)).timestamp() * 1000
        _, produced_ms = final.timestamp()
        assert deadline_ms + 1000 <= produced_ms + 50 <= deadline_ms + 2000 + 50
    finally:
        worker.stop()


def test_lagging_consumer_applies_an_in_window_edit_before_finalizing(settings: Settings, tmp_path: Path) -> None:
    # a window long enough that the first worker (slow to start on a busy machine) stops before it closes
    window_s, grace_s = 10.0, 1.0
    fold_settings = _fold_settings(settings, window_s=window_s)
    now = datetime.now(UTC)
    produce(fold_settings, fold_settings.events_topic, [
        event("interaction.connected", "conv-lag", 1, now - timedelta(seconds=2), CONNECTED),
        event("interaction.disconnected", "conv-lag", 2, now),
    ])
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    assert wait_for(lambda: isinstance(_redis_logs(fold_settings, ["conv-lag"])["conv-lag"], InteractionLog), 30)
    assert worker.stop() == 0
    assert isinstance(_redis_logs(fold_settings, ["conv-lag"])["conv-lag"], InteractionLog), "closed too early"
    # The edit is inside the window by event time, but waits in Kafka until the wall clock is past it.
    produce(fold_settings, fold_settings.events_topic, [
        event("log.updated", "conv-lag", 3, now + timedelta(seconds=2), {"notes": "written in time"}),
    ])
    past_deadline = now + timedelta(seconds=window_s + grace_s + 1)
    time.sleep(max(0.0, (past_deadline - datetime.now(UTC)).total_seconds()))
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log")
    try:
        reader = TopicReader(fold_settings, fold_settings.upserts_topic)
        messages = reader.read_until(lambda m: bool(finalized_ids(m)), timeout_s=30)
        reader.close()
        final = [json.loads(m.value() or b"") for m in messages if json.loads(m.value() or b"")["finalized"]]
        assert ["written in time"] == [snap["notes"] for snap in final]
    finally:
        worker.stop()


@pytest.mark.parametrize("command", [["inspect", "conv-none"]])
def test_inspect_says_clearly_when_there_is_no_log(settings: Settings, command: list[str]) -> None:
    import subprocess

    from tests.support import ILOG, REPO, settings_env

    result = subprocess.run([*ILOG, *command], cwd=REPO, env=settings_env(settings), capture_output=True, text=True)
    assert 1 == result.returncode
    assert "no log in Redis" in result.stderr
