"""A backfill gives the logs the live worker gave: event times ahead of their time, live and replayed.

The live fold stage runs in this process on a wall clock set two days back (`worker.fold.stage.wall_ms`,
the one clock the stage reads), over real Kafka and Redis; every message is produced with that clock's
time as its Kafka timestamp, so the history is two days old when `ilog replay` (a process, on the real
clock) folds it again into a group, key prefix, upserts topic and DLQ of its own. On one partition a
call is timed an hour ahead of when it was sent (rejected `future_time` live), on another 200 s ahead
(within `ILOG_MAX_CLOCK_SKEW_SECONDS`: folded, but the live partition clock stayed at the wall clock).
Calls that hung up just before share those partitions, and their in-window edits come after.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from confluent_kafka import Message, Producer

from tests.support import ILOG, REPO, TopicReader, event, header, settings_env, snapshots_by_id
from worker.fold import stage as fold_stage_module
from worker.kafka.topics import create_topics
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

PAST = timedelta(days=2)  # within the events topic's retention
WINDOW_S = 30.0
CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "a-1",
             "customer": {"address": "+4930123", "name": "Ada Example"}}
AHEAD = {0: ("conv-far", timedelta(hours=1)), 1: ("conv-fast", timedelta(seconds=200))}  # partition → call
HUNG_UP = {p: [f"conv-p{p}-{n}" for n in range(3)] for p in AHEAD}


def past_now() -> datetime:
    """The live worker's wall clock in this test: two days ago."""
    return datetime.now(UTC) - PAST


@contextmanager
def live_fold_in_the_past(run: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The live fold stage (group member, wall-clock following, skew check), its wall clock `past_now`."""
    monkeypatch.setattr(fold_stage_module, "wall_ms", lambda: int(past_now().timestamp() * 1000))
    stage = bootstrap.fold_stage(run)
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,), daemon=True)
    thread.start()
    try:
        assert stage.assigned_once.wait(30)
        yield
    finally:
        stop.set()
        thread.join(30)
        assert not thread.is_alive()


def _send(producer: Producer, run: Settings, items: list[tuple[int, dict[str, Any]]]) -> None:
    """Each event to its partition, stamped (Kafka timestamp) with the live worker's clock as it is sent."""
    for partition, item in items:
        producer.produce(run.events_topic, key=item["subject"], value=json.dumps(item).encode(),
                         partition=partition, timestamp=int(past_now().timestamp() * 1000))
    assert producer.flush(30) == 0


def _history(t0: datetime) -> tuple[list[tuple[int, dict[str, Any]]], list[tuple[int, dict[str, Any]]]]:
    """(calls that hung up 2 s ago and the calls timed ahead, the hung-up calls' in-window edits)."""
    first: list[tuple[int, dict[str, Any]]] = []
    edits: list[tuple[int, dict[str, Any]]] = []
    for partition, calls in HUNG_UP.items():
        for call in calls:
            first += [(partition, event("interaction.connected", call, 1, t0 - timedelta(seconds=30), CONNECTED)),
                      (partition, event("interaction.disconnected", call, 2, t0 - timedelta(seconds=2)))]
            edits.append((partition, event("log.updated", call, 3, t0 + timedelta(seconds=3),
                                           {"notes": f"Notes of {call}."})))
        ahead_call, ahead_by = AHEAD[partition]
        first.append((partition, event("interaction.connected", ahead_call, 1, t0 + ahead_by, CONNECTED)))
    return first, edits


def _newest_logs(messages: list[Message]) -> dict[str, dict[str, Any]]:
    """Each interaction's newest snapshot, without its trigger (the strongest of its batch's events)."""
    return {i: {k: v for k, v in max(snaps, key=lambda s: s["version"]).items() if k != "trigger"}
            for i, snaps in snapshots_by_id(messages).items()}


def _rejections(messages: list[Message]) -> set[tuple[str | None, str | None, str | None]]:
    return {(header(m, "subject"), header(m, "event_id"), header(m, "reason")) for m in messages}


def _read(run: Settings, topic: str, done: Any, timeout_s: float) -> list[Message]:
    reader = TopicReader(run, topic)
    try:
        return reader.read_until(done, timeout_s=timeout_s)
    finally:
        reader.close()


def _all_finalized(messages: list[Message]) -> bool:
    snaps = snapshots_by_id(messages)
    return all(any(s["finalized"] for s in snaps.get(c, [])) for calls in HUNG_UP.values() for c in calls)


def test_a_replay_judges_event_times_by_the_message_timestamps_and_gives_the_live_logs_and_rejections(
    settings: Settings, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one event per batch, live and replayed: the finalizer ticks between every two events
    run = settings.model_copy(update={"edit_window_seconds": WINDOW_S, "finalize_grace_seconds": 1.0,
                                      "fold_batch_size": 1})
    producer = Producer(run.kafka_config(**{"enable.idempotence": True, "linger.ms": 5}))
    began = past_now() - timedelta(minutes=1)
    t0 = past_now()
    first, edits = _history(t0)
    with live_fold_in_the_past(run, monkeypatch):
        _send(producer, run, first)
        assert _read(run, run.events_dlq_topic, lambda m: len(m) >= 1, 20)
        assert _read(run, run.upserts_topic, lambda m: "conv-fast" in snapshots_by_id(m), 20)
        time.sleep(1.0)  # the live finalizer ticks with the calls timed ahead read
        # the edits must reach the live worker well before their windows close by its wall clock
        assert past_now() < t0 + timedelta(seconds=WINDOW_S - 10)
        _send(producer, run, edits)
        live_upserts = _read(run, run.upserts_topic, _all_finalized, 60)
    live_dlq = _read(run, run.events_dlq_topic, lambda _m: False, 2)
    live_logs = _newest_logs(live_upserts)
    hung_up = [c for calls in HUNG_UP.values() for c in calls]
    assert {c: (f"Notes of {c}.", True) for c in hung_up} == {
        c: (live_logs[c]["notes"], live_logs[c]["finalized"]) for c in hung_up}
    assert {("conv-far", "conv-far-1", "future_time")} == _rejections(live_dlq)

    replay_upserts, replay_dlq = f"{run.upserts_topic}.replay", f"{run.events_topic}.replay.dlq"
    create_topics(run.model_copy(update={"upserts_topic": replay_upserts}))
    result = subprocess.run(
        [*ILOG, "replay", "--from", began.isoformat(), "--to", (past_now() + timedelta(seconds=1)).isoformat(),
         "--group", "clock-replay", "--upserts-topic", replay_upserts],
        cwd=REPO, env=settings_env(run), capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    assert 0 == json.loads(result.stdout.strip().splitlines()[-1])["remaining_lag"]
    replayed = _read(run, replay_upserts, lambda m: len(snapshots_by_id(m)) >= len(live_logs) and _all_finalized(m),
                     20)
    assert live_logs == _newest_logs(replayed)
    assert _rejections(live_dlq) == _rejections(_read(run, replay_dlq, lambda _m: False, 2))
