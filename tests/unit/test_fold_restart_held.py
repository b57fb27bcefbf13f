"""A fold stage that starts with an empty state cache (a restart, a rebalance) folds the logs it loads from the
store over their documents (`load(..., held=True)`, `worker.core.fold.held_log`), and ends exactly where one stage
that never stopped ends: the same stored documents and the same snapshots."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.fakes import Calls, FakeConsumer, FakeMessage, FakeProducer, json_message
from tests.support import event
from worker.core import native
from worker.core.batch import BatchPlan, Record
from worker.core.batch import plan_batch as real_plan_batch
from worker.core.state import InteractionLog, StoredLog
from worker.core.writes import Stored
from worker.fold.stage import FoldStage
from worker.runtime.settings import Settings
from worker.store.memory import MemoryStore

pytestmark = pytest.mark.unit

SETTINGS = Settings(_env_file=None, store_retry_max_seconds=0.05)
EVENTS = SETTINGS.events_topic
T0 = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=30)
IDS = ("r1", "r2", "r3")


def _events() -> list[dict[str, Any]]:
    """Open calls only (no disconnect: no window closes, whichever clock a tick reads)."""
    made: list[dict[str, Any]] = []
    for index, subject in enumerate(IDS):
        at = T0 + timedelta(seconds=index)
        made += [
            event("interaction.connected", subject, 1, at, {"media": "voice", "direction": "inbound",
                                                            "customer": {"name": f"Caller {index}"}}),
            event("record.viewed", subject, 2, at + timedelta(seconds=5),
                  {"record": {"system": "zendesk", "type": "ticket", "id": f"{100 + index}"}}),
            event("log.updated", subject, 3, at + timedelta(seconds=6), {"notes": f"first {index}"}),
            event("interaction.held", subject, 4, at + timedelta(seconds=7)),
            event("interaction.resumed", subject, 5, at + timedelta(seconds=9)),
            event("log.updated", subject, 6, at + timedelta(seconds=10), {"notes": f"second {index}"}),
            event("interaction.attributes", subject, 7, at + timedelta(seconds=11), {"attributes": {"k": "v"}}),
            event("log.updated", subject, 3, at + timedelta(seconds=6), {"notes": "again"}),  # a duplicate
        ]
    return sorted(made, key=lambda item: (item["time"], item["subject"]))  # the calls' events interleaved


def _batches() -> list[list[FakeMessage]]:
    messages = [json_message(EVENTS, 0, offset, made) for offset, made in enumerate(_events())]
    half = len(messages) // 2
    return [messages[:half], messages[half:]]


def _run(store: MemoryStore, batches: list[list[FakeMessage]], settings: Settings = SETTINGS) -> FakeProducer:
    calls: Calls = []
    producer = FakeProducer(calls)
    stage = FoldStage(settings, store, FakeConsumer(calls, batches), producer)  # type: ignore[arg-type]
    assert stage.cache.capacity == settings.state_cache_entries
    stage.clocks.assign([0])
    steps = len(batches) + 2
    for _ in range(steps):
        stage.step()
    return producer


def _upserts(producer: FakeProducer) -> list[bytes]:
    return [message.value or b"" for message in producer.on(SETTINGS.upserts_topic)]


def _documents(store: MemoryStore) -> dict[str, tuple[int, bytes]]:
    documents = {}
    for interaction_id in IDS:
        version, state = store.states[interaction_id]
        assert isinstance(state, InteractionLog)
        documents[interaction_id] = (version, state.to_bytes())
    return documents


def test_a_restarted_stage_folds_loaded_logs_over_their_documents_and_ends_as_one_that_never_stopped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loaded_states: list[type] = []

    def plan_batch(records: Sequence[Record], loaded: dict[str, Stored], *args: Any, **kwargs: Any) -> BatchPlan:
        loaded_states.extend(type(stored.state) for stored in loaded.values())
        return real_plan_batch(records, loaded, *args, **kwargs)

    monkeypatch.setattr("worker.fold.stage.plan_batch", plan_batch)
    first, second = _batches()

    never_stopped = MemoryStore()
    never_stopped.mark([0])
    whole = _run(never_stopped, [first, second])

    restarted = MemoryStore()
    restarted.mark([0])
    before = _run(restarted, [first])
    loaded_states.clear()
    after = _run(restarted, [second])  # a new stage: its cache is empty, every log comes from the store

    assert _documents(restarted) == _documents(never_stopped)
    assert _upserts(before) + _upserts(after) == _upserts(whole)
    assert [json.loads(value)["version"] for value in _upserts(after)] == [
        json.loads(value)["version"] for value in _upserts(whole)[len(_upserts(before)):]]
    # the restarted stage found every log in the store, and held each as its document where the compiled core runs
    assert len(loaded_states) == len(IDS)
    assert set(loaded_states) == ({StoredLog} if native.CORE is not None else {InteractionLog})


def test_a_stage_that_keeps_one_log_in_memory_reads_the_others_from_the_store_and_ends_alike() -> None:
    """`ILOG_STATE_CACHE_ENTRIES=1`: every batch finds all but one log in the store, held as its document."""

    class CountingStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[type] = []  # the type of each open log the stage loaded from here

        def load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]:
            loaded = super().load(interaction_ids, held=held)
            assert held  # the stage's loads
            self.found += [type(stored.state) for stored in loaded.values() if stored.state is not None]
            return loaded

    small = SETTINGS.model_copy(update={"state_cache_entries": 1, "fold_batch_size": 4})
    messages = [message for batch in _batches() for message in batch]
    batches = [messages[start:start + 4] for start in range(0, len(messages), 4)]
    kept_all = CountingStore()
    kept_all.mark([0])
    whole = _run(kept_all, [list(batch) for batch in batches])
    kept_one = CountingStore()
    kept_one.mark([0])
    small_run = _run(kept_one, [list(batch) for batch in batches], small)

    assert _documents(kept_one) == _documents(kept_all)
    assert _upserts(small_run) == _upserts(whole)
    assert kept_all.found == []  # every log stays in the cache between its events
    held = StoredLog if native.CORE is not None else InteractionLog
    assert len(kept_one.found) >= len(batches) - len(IDS) and set(kept_one.found) == {held}
