"""The sync stage on fakes (no Kafka, no Redis, no CRM): a synced snapshot's offset is stored only after
the producer's flush; a permanent failure is dead-lettered before its offset moves."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from adapters.base import Failed, Synced, SyncOutcome, TargetState
from tests.fakes import Calls, FakeConsumer, FakeProducer, ScriptedTarget, json_message
from tests.support import wait_for
from worker.runtime.settings import Settings
from worker.store.budget import MemoryBudget
from worker.store.sync_state import MemorySyncStateStore
from worker.sync.stage import SyncStage

SETTINGS = Settings(_env_file=None, batch_timeout_seconds=0.05, drain_timeout_seconds=5.0)
UPSERTS = SETTINGS.upserts_topic


def _snapshot(interaction_id: str, version: int) -> dict[str, object]:
    return {"interaction_id": interaction_id, "version": version, "trigger": "finalized", "finalized": True}


@contextmanager
def _running(script: dict[str, list[SyncOutcome]], *documents: dict[str, object]) -> Iterator[
        tuple[ScriptedTarget, MemorySyncStateStore, FakeProducer, Calls]]:
    calls: Calls = []
    target, states, producer = ScriptedTarget(script), MemorySyncStateStore(), FakeProducer(calls)
    batch = [json_message(UPSERTS, 0, offset, document) for offset, document in enumerate(documents)]
    consumer = FakeConsumer(calls, [batch])
    stage = SyncStage(SETTINGS, [target], states, MemoryBudget({}), consumer, producer)  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,))
    thread.start()
    try:
        yield target, states, producer, calls
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()


def _stored(calls: Calls) -> list[object]:
    return [offsets for name, offsets in calls if name == "store_offsets"]


def _flushed_before_moving_past(calls: Calls, offset: int, after: str) -> bool:
    """The offsets move past `offset` only after a flush that follows the first `after` call."""
    names = [name for name, _ in calls]
    moved = calls.index(("store_offsets", [(UPSERTS, 0, offset + 1)]))
    return "flush" in names[names.index(after):moved]


def test_a_synced_snapshot_is_remembered_and_its_offset_stored_after_the_flush() -> None:
    with _running({"a": [Synced("T-1", 4)]}, _snapshot("a", 4)) as (target, states, _producer, calls):
        assert wait_for(lambda: [(UPSERTS, 0, 1)] in _stored(calls), 5.0, 0.02)
    assert [[("a", TargetState())]] == target.calls
    assert TargetState("T-1", 4) == states.states[("a", "crm")]
    assert _flushed_before_moving_past(calls, 0, after="subscribe")


def test_a_permanent_failure_is_dead_lettered_before_its_offset_moves() -> None:
    script: dict[str, list[SyncOutcome]] = {"b": [Failed("STRING_TOO_LONG", "Subject")]}
    with _running(script, _snapshot("b", 2)) as (_target, states, producer, calls):
        assert wait_for(lambda: [(UPSERTS, 0, 1)] in _stored(calls), 5.0, 0.02)
    letters = producer.on(SETTINGS.upserts_dlq_topic)
    assert [("b", b"crm", b"STRING_TOO_LONG", b"0")] == [
        (json.loads(m.value or b"")["interaction_id"], m.headers["target"], m.headers["code"],
         m.headers["original_offset"]) for m in letters]
    assert _flushed_before_moving_past(calls, 0, after="produce")
    assert TargetState() == states.states[("b", "crm")]  # the in-flight mark gives way to the state before
