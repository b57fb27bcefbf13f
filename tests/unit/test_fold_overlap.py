"""The overlapped commit on fakes: a full batch's write is in flight while the next batch is planned on its
states; a write that fails or is fenced out in flight never lets the next plan be written on top of a state
the store did not take, and no offset is stored past a batch whose write and deliveries did not complete."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.decode import decode_event
from schemas.events import Rejection
from tests.fakes import Calls, FakeConsumer, FakeProducer, Produced, json_message
from tests.support import event
from worker.core.batch import BatchPlan, Record
from worker.core.batch import plan_batch as real_plan_batch
from worker.core.fold import fold
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.errors import StoreError, StoreUnavailableError
from worker.fold import stage as stage_module
from worker.fold.stage import FoldStage
from worker.runtime.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.port import WriteResult

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None, fold_batch_size=2, store_retry_max_seconds=0.05)
EVENTS = SETTINGS.events_topic
CONNECTED = {"media": "voice", "direction": "inbound"}
WAIT_S = 5.0

FIRST = [json_message(EVENTS, 0, 0, event("interaction.connected", "c1", 1, T0, CONNECTED)),
         json_message(EVENTS, 0, 1, event("interaction.connected", "c2", 1, T0, CONNECTED))]
SECOND = [json_message(EVENTS, 0, 2, event("interaction.held", "c1", 2, T0)),
          json_message(EVENTS, 0, 3, event("interaction.held", "c2", 2, T0))]


class InFlightStore(MemoryStore):
    """Its first write waits until the next batch has been planned, then does what `first_write` says."""

    def __init__(self, calls: Calls, next_planned: threading.Event) -> None:
        super().__init__()
        self.calls = calls
        self.next_planned = next_planned
        self.first_write: str = "store"  # "store", "fail", "unavailable", "fenced"
        self.waited_for_plan: bool | None = None

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        self.calls.append(("write", sorted((w.interaction_id, w.expected_version) for w in writes)))
        if self.waited_for_plan is None:
            self.waited_for_plan = self.next_planned.wait(WAIT_S)
            what, self.first_write = self.first_write, "store"
            if what == "fail":
                raise StoreError("the script failed")
            if what == "unavailable":
                raise StoreUnavailableError("connection reset")
            if what == "fenced":  # another writer stored c1 meanwhile
                self.states["c1"] = (1, _foreign_c1())
        return super().write(writes, guard)


def _foreign_c1() -> InteractionLog:
    value = json.dumps(event("log.updated", "c1", 7, T0, {"notes": "from elsewhere"})).encode()
    decoded = decode_event(value, [])
    assert not isinstance(decoded, Rejection)
    log = fold(None, decoded, edit_window_s=SETTINGS.edit_window_seconds,
               applied_ids_kept=SETTINGS.applied_ids_kept).log
    assert isinstance(log, InteractionLog)
    return log


@pytest.fixture
def overlap(monkeypatch: pytest.MonkeyPatch) -> tuple[FoldStage, InFlightStore, FakeProducer, Calls]:
    calls: Calls = []
    next_planned = threading.Event()

    def plan_batch(records: Sequence[Record], *args: Any, **kwargs: Any) -> BatchPlan:
        calls.append(("plan", [r.offset for r in records]))
        plan = real_plan_batch(records, *args, **kwargs)
        if any(r.offset >= 2 for r in records):
            next_planned.set()
        return plan

    monkeypatch.setattr("worker.fold.stage.plan_batch", plan_batch)
    store = InFlightStore(calls, next_planned)
    store.mark([0])
    producer = FakeProducer(calls)
    consumer = FakeConsumer(calls, [list(FIRST), list(SECOND)])
    stage = FoldStage(SETTINGS, store, consumer, producer)  # type: ignore[arg-type]
    stage.clocks.assign([0])
    return stage, store, producer, calls


def _stored_offsets(calls: Calls) -> list[Any]:
    return [args for name, args in calls if name == "store_offsets"]


def _value(message: Produced) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(message.value or b"")
    return value


def _upserts(producer: FakeProducer) -> list[tuple[str, int, str]]:
    return [(s["interaction_id"], s["version"], s["state"]) for s in map(_value, producer.on(SETTINGS.upserts_topic))]


def test_the_next_batch_is_planned_on_the_states_in_flight_and_each_batch_commits_in_order(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls],
) -> None:
    stage, store, producer, calls = overlap
    stage.step()  # a full batch: its write goes out and stays in flight
    assert stage.in_flight is not None and [] == _stored_offsets(calls)
    stage.step()  # planned on the overlay while the first write waits for that plan; then the first lands
    stage.step()  # nothing more to read: the batch in flight is finished
    assert store.waited_for_plan
    assert [("write", [("c1", 0), ("c2", 0)]), ("write", [("c1", 1), ("c2", 1)])] == [
        c for c in calls if c[0] == "write"]
    assert [("c1", 1, "connected"), ("c2", 1, "connected"), ("c1", 2, "held"), ("c2", 2, "held")] == _upserts(producer)
    assert [[(EVENTS, 0, 2)], [(EVENTS, 0, 4)]] == _stored_offsets(calls)
    effects = [(name, args) for name, args in calls if name in {"write", "produce", "flush", "store_offsets"}]
    first_offsets = effects.index(("store_offsets", [(EVENTS, 0, 2)]))
    first_snapshot = next(i for i, (name, topic) in enumerate(effects) if name == "produce"
                          and topic == SETTINGS.upserts_topic)
    assert 0 == effects.index(("write", [("c1", 0), ("c2", 0)])) < first_snapshot
    assert first_snapshot < max(i for i, (name, _) in enumerate(effects[:first_offsets]) if name == "flush")
    second_write = effects.index(("write", [("c1", 1), ("c2", 1)]))
    assert second_write < effects.index(("store_offsets", [(EVENTS, 0, 4)]))


def test_a_write_failing_while_the_next_batch_is_planned_leaves_nothing_committed_past_it(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls],
) -> None:
    stage, store, producer, calls = overlap
    store.first_write = "fail"
    stage.step()
    with pytest.raises(StoreError):
        stage.step()  # the second batch is planned, the first lands: its write failed for good
    stage.shutdown()
    assert store.waited_for_plan
    assert [("write", [("c1", 0), ("c2", 0)])] == [c for c in calls if c[0] == "write"]  # the plan on top: never sent
    assert ({}, [], []) == (store.states, _upserts(producer), _stored_offsets(calls))


def test_a_write_fenced_out_in_flight_makes_the_next_batch_plan_again_on_what_the_store_holds(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls],
) -> None:
    stage, store, producer, calls = overlap
    store.first_write = "fenced"
    stage.step()
    stage.step()
    stage.step()
    assert [
        ("write", [("c1", 0), ("c2", 0)]),  # c1 fenced out: another writer stored version 1
        ("write", [("c1", 1)]),  # c1's event folded again over that state
        ("write", [("c1", 2), ("c2", 1)]),  # the second batch planned again: c1 on version 2, not on the overlay's 1
    ] == [c for c in calls if c[0] == "write"]
    assert [("plan", [0, 1]), ("plan", [2, 3]), ("plan", [0]), ("plan", [2, 3])] == [
        c for c in calls if c[0] == "plan"]
    latest = {m["interaction_id"]: m for m in map(_value, producer.on(SETTINGS.upserts_topic))}
    assert ((3, "held", "from elsewhere"), (2, "held")) == (
        (latest["c1"]["version"], latest["c1"]["state"], latest["c1"]["notes"]),
        (latest["c2"]["version"], latest["c2"]["state"]))
    assert (3, 2) == (store.states["c1"][0], store.states["c2"][0])
    assert [[(EVENTS, 0, 2)], [(EVENTS, 0, 4)]] == _stored_offsets(calls)


def test_a_store_outage_in_flight_is_waited_out_and_the_batch_redone_before_the_next_is_written(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls],
) -> None:
    stage, store, producer, calls = overlap
    store.first_write = "unavailable"
    stage.step()
    stage.step()
    stage.step()
    assert [
        ("write", [("c1", 0), ("c2", 0)]),  # refused: Redis unreachable
        ("write", [("c1", 0), ("c2", 0)]),  # the batch again, once Redis answers
        ("write", [("c1", 1), ("c2", 1)]),
    ] == [c for c in calls if c[0] == "write"]
    assert (2, 2) == (store.states["c1"][0], store.states["c2"][0])
    assert [[(EVENTS, 0, 2)], [(EVENTS, 0, 4)]] == _stored_offsets(calls)
    assert [("c1", 1, "connected"), ("c2", 1, "connected"), ("c1", 2, "held"), ("c2", 2, "held")] == _upserts(producer)


def test_a_revoke_lands_the_batch_in_flight_and_stores_its_offsets_before_the_partitions_go(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls],
) -> None:
    stage, store, _producer, calls = overlap
    store.next_planned.set()  # nothing is planned ahead here: the write need not wait
    stage.step()
    assert stage.in_flight is not None
    stage._on_revoke(stage.consumer, [])
    assert stage.in_flight is None
    assert [[(EVENTS, 0, 2)]] == _stored_offsets(calls)
    assert ("commit", None) == calls[-1]
    assert 1 == store.states["c1"][0]


@pytest.mark.usefixtures("compiled_core")  # the compiled core's snapshot thread is under test
def test_a_full_batchs_snapshots_are_written_on_the_thread_and_produced_when_it_lands(
    overlap: tuple[FoldStage, InFlightStore, FakeProducer, Calls], monkeypatch: pytest.MonkeyPatch,
) -> None:
    stage, _store, producer, _calls = overlap
    monkeypatch.setattr("worker.core.batch.DEFER_AT_LEAST", 1)  # two snapshots a batch are enough here
    deferred: list[tuple[list[int], bool]] = []
    recorded: Callable[..., BatchPlan] = stage_module.__dict__["plan_batch"]  # the fixture's: calls the real one

    def plan_batch(records: Sequence[Record], *args: Any, **kwargs: Any) -> BatchPlan:
        plan = recorded(records, *args, **kwargs)
        deferred.append(([r.offset for r in records], plan.deferred is not None))
        return plan

    monkeypatch.setattr(stage_module, "plan_batch", plan_batch)
    stage.step()
    stage.step()
    stage.step()
    assert [([0, 1], True), ([2, 3], True)] == deferred  # full batches: their snapshots on the thread
    assert [("c1", 1, "connected"), ("c2", 1, "connected"), ("c1", 2, "held"), ("c2", 2, "held")] == _upserts(producer)
    short = [json_message(EVENTS, 0, 4, event("interaction.resumed", "c1", 3, T0))]
    stage.consumer.batches.append(short)  # type: ignore[attr-defined]
    stage.step()  # a short batch (caught up) lands at once: written here
    assert ([4], False) == deferred[-1]
    assert ("c1", 3, "connected") == _upserts(producer)[-1]
