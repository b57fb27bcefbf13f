"""A state that went backwards behind the fold stage (a failover that lost acknowledged writes, the marks
intact) is repaired before new events are folded over it: the final log equals the offline fold."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from tests.fakes import Calls, FakeConsumer, FakeMessage, FakeProducer, json_message
from tests.support import event
from worker.core.writes import State, StateWrite
from worker.fold.stage import FoldStage
from worker.ops.offline import OfflineFold
from worker.runtime.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.port import WriteResult

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)
EVENTS = SETTINGS.events_topic
CONNECTED = {"media": "voice", "direction": "inbound"}
EVENTS_OF_C1 = [
    event("interaction.connected", "c1", 1, T0, CONNECTED),
    event("interaction.held", "c1", 2, T0 + timedelta(seconds=5)),
    event("interaction.resumed", "c1", 3, T0 + timedelta(seconds=9)),
]


class LosingStore(MemoryStore):
    """Loses the state of `interaction_id` (back to `older`) right before its next write: a failover
    between the stage's load and its write."""

    def __init__(self) -> None:
        super().__init__()
        self.lose_next: tuple[str, State | None] | None = None

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        if self.lose_next is not None:
            self.lose_write(*self.lose_next)
            self.lose_next = None
        return super().write(writes, guard)


class ChangelogReader:
    """A changelog consumer over what the stage produced to the state changelog topic."""

    def __init__(self, producer: FakeProducer) -> None:
        self.producer = producer
        self.pending: list[FakeMessage] = []

    def _messages(self) -> list[FakeMessage]:
        produced = self.producer.on(SETTINGS.state_changelog_topic)
        return [_Stamped(SETTINGS.state_changelog_topic, 0, offset, m.value, str(m.key).encode(),
                         [(k, v or b"") for k, v in m.headers.items()]) for offset, m in enumerate(produced)]

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, len(self._messages())

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.pending = self._messages()

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[FakeMessage]:
        batch, self.pending = self.pending[:num_messages], self.pending[num_messages:]
        return batch

    def unassign(self) -> None:
        self.pending = []


class _Stamped(FakeMessage):
    def timestamp(self) -> tuple[int, int]:
        return (1, int(time.time() * 1000))


def _stage(store: MemoryStore, *batches: list[FakeMessage]) -> tuple[FoldStage, FakeProducer]:
    calls: Calls = []
    store.mark([0])
    producer = FakeProducer(calls)
    stage = FoldStage(SETTINGS, store, FakeConsumer(calls, list(batches)), producer,  # type: ignore[arg-type]
                      changelog_reader=ChangelogReader(producer))  # type: ignore[arg-type]
    return stage, producer


def _batches() -> list[list[FakeMessage]]:
    return [[json_message(EVENTS, 0, offset, document)] for offset, document in enumerate(EVENTS_OF_C1)]


def _offline(events: list[dict[str, Any]]) -> Any:
    fold = OfflineFold(edit_window_s=SETTINGS.edit_window_seconds, applied_ids_kept=SETTINGS.applied_ids_kept)
    for line, document in enumerate(events, start=1):
        fold.apply(line, json.dumps(document).encode())
    return fold.logs["c1"]


def _regressions() -> float:
    return REGISTRY.get_sample_value("ilog_state_regressions_total") or 0.0


def _run_losing(store: LosingStore, *, older_of: int | None, evict: bool, at_write: bool) -> FakeProducer:
    """Fold event 1 (keeping its state), event 2, then lose event 2's write and fold event 3."""
    stage, producer = _stage(store, *_batches())
    stage.step()
    older = store.states["c1"][1] if older_of == 1 else None
    stage.step()
    if evict:
        stage.cache.evict(["c1"])  # the consumer does not remember the state: the changelog must
    if at_write:
        store.lose_next = ("c1", older)
    else:
        store.lose_write("c1", older)
    stage.step()
    return producer


def test_a_lost_write_the_cache_remembers_is_written_back_before_the_next_event_is_folded() -> None:
    before = _regressions()
    store = LosingStore()
    producer = _run_losing(store, older_of=1, evict=False, at_write=False)
    assert (3, _offline(EVENTS_OF_C1)) == store.states["c1"]
    assert 1 == _regressions() - before
    assert [] == producer.on(SETTINGS.events_dlq_topic)


def test_a_deleted_state_the_cache_remembers_is_written_back_with_its_deadline_entry() -> None:
    store = LosingStore()
    producer = _run_losing(store, older_of=None, evict=False, at_write=False)
    final = _offline(EVENTS_OF_C1)
    assert (3, final) == store.states["c1"]
    assert [] == producer.on(SETTINGS.events_dlq_topic)
    snapshots = [json.loads(m.value or b"") for m in producer.on(SETTINGS.upserts_topic)]
    assert [1, 2, 3] == [s["version"] for s in snapshots]


def test_a_write_lost_between_load_and_write_is_restored_from_the_changelog() -> None:
    before = _regressions()
    store = LosingStore()
    producer = _run_losing(store, older_of=1, evict=True, at_write=True)
    assert (3, _offline(EVENTS_OF_C1)) == store.states["c1"]
    assert 1 == _regressions() - before
    assert [] == producer.on(SETTINGS.events_dlq_topic)
