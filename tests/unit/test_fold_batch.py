"""The fold stage's batch planning and the finalizer, against the in-memory store twin."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import hypothesis.strategies

from schemas.common import Trigger
from schemas.decode import decode_event
from schemas.events import Rejection, RejectReason
from worker.core import native
from worker.core.batch import Record, TtlPolicy, plan_batch, stronger
from worker.core.state import InteractionLog, StoredLog, Tombstone, as_log
from worker.core.writes import StateWrite, Stored
from worker.fold.finalizer import ClosePlan, PartitionClocks, plan_closes
from worker.store.memory import MemoryStore

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)
CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "a-1",
             "customer": {"address": "+4930123", "name": "Ada Example"}}


def _event(kind: str, subject: str, n: int, seconds: float, data: dict[str, Any] | None = None) -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind, "subject": subject,
        "time": (T0 + timedelta(seconds=seconds)).isoformat(), "sequence": n, "data": data or {},
    }).encode()


def _records(*values: bytes, partition: int = 0) -> list[Record]:
    return [Record("events", partition, offset, value, [], decode_event(value)) for offset, value in enumerate(values)]


def _apply(store: MemoryStore, records: list[Record], now_ms: int = 0) -> Any:
    loaded = store.load({r.item.subject for r in records if not isinstance(r.item, Rejection)})
    plan = plan_batch(records, loaded, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=now_ms)
    assert [] == store.write(plan.writes).fenced_out
    return plan


def test_one_snapshot_per_interaction_per_batch_with_the_strongest_trigger() -> None:
    store = MemoryStore()
    plan = _apply(store, _records(
        _event("interaction.connected", "c1", 1, 0, CONNECTED),
        _event("interaction.held", "c1", 2, 10),
        _event("log.updated", "c1", 3, 20, {"notes": "n"}),
        _event("log.updated", "c2", 1, 5, {"notes": "other"}),
    ))
    assert {("c1", 3, Trigger.CREATED), ("c2", 1, Trigger.CREATED)} == {
        (s.interaction_id, s.version, s.trigger) for _, s in plan.snapshots
    }
    plan = _apply(store, _records(
        _event("interaction.resumed", "c1", 4, 30), _event("log.updated", "c1", 5, 31, {"notes": "m"})
    ))
    assert [(5, Trigger.STATE_CHANGED)] == [(s.version, s.trigger) for _, s in plan.snapshots]


def test_each_write_carries_the_bytes_of_its_interactions_final_state_in_the_batch() -> None:
    # the planner encodes a log right after its last event in the batch: interleaved interactions, one changed
    # again after another's last event, one whose last record is a duplicate, another's a rejection
    store = MemoryStore()
    connected = _event("interaction.connected", "c1", 1, 0, CONNECTED)
    plan = _apply(store, _records(
        connected,
        _event("interaction.connected", "c2", 1, 0, CONNECTED),
        _event("log.updated", "c1", 2, 5, {"notes": "first"}),
        _event("log.updated", "c2", 2, 6, {"notes": "only"}),
        _event("log.updated", "c1", 3, 7, {"notes": "second"}),
        _event("interaction.disconnected", "c3", 1, 1),
        _event("log.updated", "c3", 2, 2, {"notes": "x"}),
        _event("log.updated", "c3", 3, 1_000, {"notes": "late"}),  # past c3's deadline: rejected
        connected,  # c1's last record: a duplicate
    ))
    assert 1 == len(plan.rejections)
    assert {"c1": 3, "c2": 2, "c3": 2} == {write.interaction_id: write.state.version for write in plan.writes}
    for write in plan.writes:
        assert isinstance(write.state, InteractionLog | StoredLog)
        assert write.document == write.state.to_bytes()
    notes = {write.interaction_id: InteractionLog.from_bytes(write.document or b"").notes for write in plan.writes}
    assert {"c1": "second", "c2": "only", "c3": "x"} == {key: value[1] for key, value in notes.items() if value}


def test_a_reconsumed_batch_changes_nothing_and_emits_the_same_snapshot_again() -> None:
    store = MemoryStore()
    batch = _records(_event("interaction.connected", "c1", 1, 0, CONNECTED), _event("interaction.held", "c1", 2, 5))
    first = _apply(store, batch)
    again = _apply(store, batch)
    assert [] == again.writes
    assert 2 == again.duplicates
    assert [s.version for _, s in first.snapshots] == [s.version for _, s in again.snapshots]


def test_invalid_and_late_events_are_rejected_and_their_neighbours_applied() -> None:
    store = MemoryStore()
    plan = _apply(store, _records(
        _event("interaction.connected", "c1", 1, 0, CONNECTED),
        _event("interaction.disconnected", "c1", 2, 60),
        _event("log.updated", "c1", 3, 60 + 121, {"notes": "late"}),
        b'{"specversion": "1.0", "id": "x", "type": "interaction.held"',
        _event("log.updated", "c2", 1, 5, {"notes": "fine"}),
    ))
    assert [RejectReason.LATE_EDIT, RejectReason.INVALID] == [r.reason for _, r in plan.rejections]
    assert {"c1", "c2"} == set(store.states)


def test_disconnect_schedules_the_deadline_on_the_events_partition() -> None:
    store = MemoryStore()
    _apply(store, _records(
        _event("interaction.connected", "c1", 1, 0, CONNECTED), _event("interaction.disconnected", "c1", 2, 60),
        partition=3,
    ))
    deadline_ms = int((T0 + timedelta(seconds=180)).timestamp() * 1000)
    assert {3: {"c1": deadline_ms}} == store.deadlines


def test_ttl_is_deadline_plus_retention_and_never_below_retention() -> None:
    log = InteractionLog("c1", edit_deadline_us=10_000_000)
    assert 60_000 + 10_000 - 5_000 == TTL.ttl_ms(log, now_ms=5_000)
    assert 60_000 == TTL.ttl_ms(log, now_ms=10_000_000)
    assert 600_000 == TTL.ttl_ms(InteractionLog("c2"), now_ms=0)


def test_partition_clock_follows_event_time_until_caught_up_then_wall_clock() -> None:
    clocks = PartitionClocks()
    clocks.assign([0])
    clocks.observe(0, 1_000)
    assert 1_000 == clocks.clock_ms(0, wall_ms=9_000)
    clocks.reached_end(0)
    assert 9_000 == clocks.clock_ms(0, wall_ms=9_000)
    assert 1_000 == clocks.clock_ms(0, wall_ms=9_000, follow_wall_clock=False)
    clocks.observe(0, 2_000)
    assert 2_000 == clocks.clock_ms(0, wall_ms=9_000)
    clocks.revoke([0])
    assert [] == clocks.owned()


def test_a_live_partition_clock_never_runs_ahead_of_the_wall_clock_a_replay_follows_event_time() -> None:
    clocks = PartitionClocks()
    clocks.assign([0])
    clocks.observe(0, 200_000)  # an event timed ahead of the worker's clock, within the allowed skew
    assert (9_000, 200_000) == (clocks.clock_ms(0, wall_ms=9_000),
                                clocks.clock_ms(0, wall_ms=9_000, follow_wall_clock=False))
    clocks.reached_end(0)
    assert (9_000, 200_000) == (clocks.clock_ms(0, wall_ms=9_000),
                                clocks.clock_ms(0, wall_ms=9_000, follow_wall_clock=False))


def test_a_replay_partition_clock_never_runs_past_the_newest_message_timestamp_read() -> None:
    """The Kafka timestamps stand in for the wall clock of the time replayed: an event timed 200 s ahead of
    its message closes no window early, as it closed none live; without timestamps, event time alone."""
    clocks = PartitionClocks()
    clocks.assign([0, 1])
    for partition in (0, 1):
        clocks.observe(partition, 205_000)
    clocks.observe_message(0, 5_000)
    replayed_ms = 9_000_000  # the replay's own wall clock, days later
    assert (5_000, 205_000) == (clocks.clock_ms(0, replayed_ms, follow_wall_clock=False),
                                clocks.clock_ms(1, replayed_ms, follow_wall_clock=False))
    clocks.observe_message(0, 7_000)
    clocks.observe_message(0, 6_000)  # another producer's clock, a second behind: the clock stays
    assert 7_000 == clocks.clock_ms(0, replayed_ms, follow_wall_clock=False)
    clocks.observe_message(0, 300_000)
    assert 205_000 == clocks.clock_ms(0, replayed_ms, follow_wall_clock=False)
    assert 9_000 == clocks.clock_ms(0, wall_ms=9_000)  # live: the wall clock caps it, timestamps play no part
    clocks.revoke([0])
    clocks.assign([0])
    clocks.observe(0, 205_000)
    assert 205_000 == clocks.clock_ms(0, replayed_ms, follow_wall_clock=False)


def test_a_replay_clock_runs_up_to_the_newest_message_timestamp_of_a_batch_in_any_order() -> None:
    clocks = PartitionClocks()
    clocks.assign([0, 1])
    clocks.observe(0, 500_000)
    clocks.observe(1, 500_000)
    clocks.observe_messages([(0, 9_000), (1, None), (0, 7_000), (1, 4_000), (2, 8_000), (0, None)])
    assert (9_000, 4_000) == (clocks.clock_ms(0, 0, follow_wall_clock=False),
                              clocks.clock_ms(1, 0, follow_wall_clock=False))
    clocks.observe_messages([(0, 8_000)])  # an older stamp later: the clock does not move back
    assert 9_000 == clocks.clock_ms(0, 0, follow_wall_clock=False)


def _closes(store: MemoryStore, clock_ms: int, grace_ms: int) -> ClosePlan:
    """Partition 0's closes as the fold stage plans them: due entries read first, logs loaded after."""
    due = store.due(0, clock_ms - grace_ms, 500)
    return plan_closes(store, 0, clock_ms, due=due, load=store.load, grace_ms=grace_ms, ttl=TTL, now_ms=0)


def test_windows_close_only_after_deadline_plus_grace_and_leave_a_tombstone() -> None:
    store = MemoryStore()
    _apply(store, _records(
        _event("interaction.connected", "c1", 1, 0, CONNECTED), _event("interaction.disconnected", "c1", 2, 60),
    ))
    deadline_ms = int((T0 + timedelta(seconds=180)).timestamp() * 1000)
    assert [] == _closes(store, deadline_ms + 999, grace_ms=1000).writes
    plan = _closes(store, deadline_ms + 1000, grace_ms=1000)
    assert [("c1", 3, Trigger.FINALIZED, True)] == [
        (s.interaction_id, s.version, s.trigger, s.finalized) for _, s in plan.snapshots
    ]
    store.write(plan.writes)
    version, state = store.states["c1"]
    assert isinstance(state, Tombstone)
    assert 3 == version
    assert {} == store.deadlines[0]


def test_a_log_held_as_its_document_closes_as_its_objects_do_and_its_tombstone_write_carries_its_bytes() -> None:
    """The stage's cache holds a changed log as a `StoredLog` when the compiled core folds documents: the finalizer
    closes it off the document, to the same snapshot and tombstone write as the log's objects give."""
    store = MemoryStore()
    plan = _apply(store, _records(
        _event("interaction.connected", "c1", 1, 0, CONNECTED), _event("log.updated", "c1", 2, 30, {"notes": "é \""}),
        _event("interaction.disconnected", "c1", 3, 60),
    ))
    (write,) = plan.writes
    held = write.state
    assert isinstance(held, StoredLog if native.CORE is not None else InteractionLog)
    log = as_log(held)
    deadline_ms = int((T0 + timedelta(seconds=180)).timestamp() * 1000)

    def closes(state: StoredLog | InteractionLog) -> ClosePlan:
        return plan_closes(store, 0, deadline_ms + 1000, due=[("c1", deadline_ms)],
                           load=lambda ids: {i: Stored(state.version, state) for i in ids}, grace_ms=1000, ttl=TTL,
                           now_ms=0)

    by_document, by_objects = closes(held), closes(log)
    assert by_document.snapshots == by_objects.snapshots
    assert [s.version for _, s in by_document.snapshots] == [4]
    assert by_document.writes == by_objects.writes
    (tombstone,) = by_document.writes
    assert isinstance(tombstone.state, Tombstone) and tombstone.document == tombstone.state.to_bytes()
    assert tombstone.state.applied_ids == ("c1-1", "c1-2", "c1-3")


def test_stale_deadline_entries_are_dropped() -> None:
    store = MemoryStore()
    store.write([StateWrite("gone", 0, Tombstone("gone", 4, T0), 1000, deadline=(0, 5))])
    assert [] == _closes(store, 10_000, grace_ms=0).snapshots
    assert {} == store.deadlines[0]


def test_fenced_write_refuses_a_stale_version() -> None:
    store = MemoryStore()
    log = InteractionLog("c1", version=2)
    store.write([StateWrite("c1", 0, log, 1000)])
    assert ["c1"] == store.write([StateWrite("c1", 0, InteractionLog("c1", version=1), 1000)]).fenced_out
    assert 2 == store.states["c1"][0]


def test_strongest_trigger_ranks_finalized_over_everything() -> None:
    assert Trigger.STATE_CHANGED == stronger(Trigger.UPDATED, Trigger.STATE_CHANGED)
    assert Trigger.STATE_CHANGED == stronger(Trigger.STATE_CHANGED, Trigger.UPDATED)
    assert Trigger.FINALIZED == stronger(Trigger.CREATED, Trigger.FINALIZED)
    assert Trigger.OPENED == stronger(None, Trigger.OPENED)


_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)
           - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)


@hypothesis.settings(max_examples=2000, deadline=None)
@hypothesis.given(hypothesis.strategies.integers(_MIN_US, _MAX_US)
                  | hypothesis.strategies.integers(1_700_000_000_000_000, 1_900_000_000_000_000))
def test_the_deadline_in_milliseconds_is_what_the_datetime_gives(deadline_us: int) -> None:
    """`edit_deadline_ms` (the deadline sets' score, the TTL's base) skips the datetime but not its arithmetic."""
    log = InteractionLog("conv-1", version=2, edit_deadline_us=deadline_us)
    assert log.edit_deadline is not None
    assert log.edit_deadline_ms == int(log.edit_deadline.timestamp() * 1000)


def test_an_open_log_has_no_deadline_in_milliseconds() -> None:
    assert InteractionLog("conv-1", version=1).edit_deadline_ms is None
