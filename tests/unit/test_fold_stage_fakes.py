"""The fold stage on fakes (no Kafka, no Redis): a batch folds into the store, the store is written before
the snapshot is produced, offsets are stored only after the producer's flush, a rejection is dead-lettered."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime

from tests.fakes import Calls, FakeConsumer, FakeMessage, FakeProducer, json_message
from tests.support import event
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.fold.stage import FoldStage
from worker.runtime.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.port import WriteResult

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)
EVENTS = SETTINGS.events_topic
CONNECTED = {"media": "voice", "direction": "inbound"}


class RecordingStore(MemoryStore):
    def __init__(self, calls: Calls) -> None:
        super().__init__()
        self.calls = calls

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        self.calls.append(("write", sorted(item.interaction_id for item in writes)))
        return super().write(writes, guard)


def _stage(*batches: list[FakeMessage]) -> tuple[FoldStage, RecordingStore, FakeProducer, Calls]:
    calls: Calls = []
    store = RecordingStore(calls)
    store.mark([0])  # the store holds partition 0's state (a fresh one would be restored first)
    producer = FakeProducer(calls)
    stage = FoldStage(SETTINGS, store, FakeConsumer(calls, list(batches)), producer)  # type: ignore[arg-type]
    return stage, store, producer, calls


def _effects(calls: Calls) -> list[str]:
    return [name for name, _ in calls if name in {"write", "produce", "flush", "store_offsets"}]


def test_a_batch_is_written_then_produced_then_flushed_and_only_then_its_offsets_are_stored() -> None:
    stage, store, producer, calls = _stage([
        json_message(EVENTS, 0, 10, event("interaction.connected", "c1", 1, T0, CONNECTED)),
        json_message(EVENTS, 0, 11, event("interaction.held", "c1", 2, T0)),
    ])
    stage.step()
    version, state = store.states["c1"]
    assert isinstance(state, InteractionLog) and 2 == version
    upserts = producer.on(SETTINGS.upserts_topic)
    assert [("c1", 2)] == [(json.loads(m.value or b"")["interaction_id"], json.loads(m.value or b"")["version"])
                           for m in upserts]
    effects = _effects(calls)
    assert effects.index("write") < effects.index("produce") < effects.index("flush") < effects.index("store_offsets")
    assert ("store_offsets", [(EVENTS, 0, 12)]) == [c for c in calls if c[0] == "store_offsets"][-1]


def test_a_rejected_event_is_dead_lettered_with_its_reason_and_its_offset_still_moves() -> None:
    stage, store, producer, calls = _stage([FakeMessage(EVENTS, 0, 5, b"{not json")])
    stage.step()
    letters = producer.on(SETTINGS.events_dlq_topic)
    assert 1 == len(letters)
    assert (b"{not json", b"invalid", b"5") == (
        letters[0].value, letters[0].headers["reason"], letters[0].headers["original_offset"])
    assert {} == store.states
    assert ("store_offsets", [(EVENTS, 0, 6)]) == [c for c in calls if c[0] == "store_offsets"][-1]
