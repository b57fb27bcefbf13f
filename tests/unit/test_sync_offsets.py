"""Which offset the sync stage may store, and how target queues merge work (no services)."""

from __future__ import annotations

from schemas.common import Trigger
from schemas.snapshot import LogSnapshot
from worker.sync.batch import Pending, SyncRecord
from worker.sync.offsets import OffsetLedger
from worker.sync.queue import Work, WorkQueue


def test_the_stored_offset_is_the_lowest_one_some_target_is_not_done_with() -> None:
    ledger = OffsetLedger()
    for offset in (10, 11, 12):
        ledger.add(("up", 0, offset), shares=2)
    ledger.add(("up", 1, 5), shares=2)
    ledger.done([("up", 0, 10), ("up", 0, 11), ("up", 0, 12)])  # the fast target
    assert {("up", 0): 10, ("up", 1): 5} == ledger.storable()
    ledger.done([("up", 0, 11)])  # the slow target, out of order
    assert {} == ledger.storable()
    ledger.done([("up", 0, 10)])
    assert {("up", 0): 12} == ledger.storable()
    ledger.done([("up", 0, 12), ("up", 1, 5), ("up", 1, 5)])
    assert {("up", 0): 13, ("up", 1): 6} == ledger.storable()
    assert {} == ledger.storable()  # nothing left open


def test_records_no_target_has_to_finish_move_the_offset_at_once() -> None:
    ledger = OffsetLedger()
    ledger.add(("up", 0, 3), shares=0)
    assert {("up", 0): 4} == ledger.storable()


def test_a_forgotten_partition_stores_nothing_and_ignores_late_answers() -> None:
    ledger = OffsetLedger()
    ledger.add(("up", 0, 3), shares=1)
    ledger.forget([("up", 0)])
    ledger.done([("up", 0, 3)])
    assert {} == ledger.storable()


def _work(interaction_id: str, version: int, trigger: str, offset: int, finalized: bool = False) -> Work:
    snapshot = LogSnapshot.model_validate({"interaction_id": interaction_id, "version": version,
                                           "trigger": trigger, "finalized": finalized})
    return Work(Pending(snapshot, SyncRecord("up", 0, offset, None, b"", snapshot)), [("up", 0, offset)])


def test_a_waiting_interaction_merges_to_the_newest_version_with_the_strongest_trigger_and_all_records() -> None:
    queue = WorkQueue(lambda snapshot: snapshot.trigger != Trigger.UPDATED)
    assert queue.put(_work("a", 3, "state_changed", 0))
    assert queue.put(_work("a", 4, "updated", 1))  # not wanted alone, but it merges
    assert not queue.put(_work("b", 1, "updated", 2))
    [taken] = queue.take(10)
    assert (4, Trigger.STATE_CHANGED, [("up", 0, 0), ("up", 0, 1)]) == (
        taken.entry.snapshot.version, taken.entry.snapshot.trigger, taken.positions)


def test_a_batch_put_at_once_merges_queues_and_returns_what_the_target_does_not_want() -> None:
    queue = WorkQueue(lambda snapshot: snapshot.trigger != Trigger.UPDATED)
    queue.put(_work("a", 3, "state_changed", 0))
    unwanted = queue.put_many([_work("a", 4, "updated", 1), _work("b", 1, "updated", 2),
                               _work("c", 2, "created", 3)])
    assert [["b"], 2] == [[work.interaction_id for work in unwanted], len(queue)]
    assert 0.0 == queue.ready_in_s(0.0, 100, hurry=False)
    taken = queue.take(10)
    assert [("a", 4, Trigger.STATE_CHANGED, [("up", 0, 0), ("up", 0, 1)]), ("c", 2, Trigger.CREATED, [("up", 0, 3)])] \
        == [(w.interaction_id, w.entry.snapshot.version, w.entry.snapshot.trigger, w.positions) for w in taken]
    assert queue.ready_in_s(0.0, 100, hurry=False) is None  # all in flight: nothing can be taken


def test_merging_copies_the_snapshot_once_when_the_target_reads_it_not_at_every_merge() -> None:
    queue = WorkQueue(lambda snapshot: True)
    newest = _work("a", 5, "updated", 2)
    queue.put_many([_work("a", 3, "state_changed", 0)])
    queue.put_many([_work("a", 4, "updated", 1)])
    queue.put_many([newest])
    [taken] = queue.take(10)
    assert (newest.base.snapshot, Trigger.STATE_CHANGED) == (taken.base.snapshot, taken.trigger)  # not copied yet
    entry = taken.entry
    assert (5, Trigger.STATE_CHANGED, None) == (entry.snapshot.version, entry.snapshot.trigger, taken.trigger)
    assert entry is taken.entry  # copied once
    assert Trigger.UPDATED == newest.base.snapshot.trigger  # the consumed snapshot is left as it was


def test_work_in_flight_is_not_taken_twice_and_a_retry_merges_with_what_came_meanwhile() -> None:
    queue = WorkQueue(lambda snapshot: True)
    queue.put(_work("a", 3, "state_changed", 0))
    [first] = queue.take(10)
    queue.put(_work("a", 5, "finalized", 1, finalized=True))
    assert [] == queue.take(10)
    assert [] == queue.finish(first, done=False)
    [again] = queue.take(10)
    assert (5, Trigger.FINALIZED, [("up", 0, 0), ("up", 0, 1)]) == (
        again.entry.snapshot.version, again.entry.snapshot.trigger, again.positions)
    assert [("up", 0, 0), ("up", 0, 1)] == queue.finish(again, done=True)
    assert queue.empty()


def test_dropping_a_partition_forgets_waiting_work_and_the_outcome_of_calls_under_way() -> None:
    queue = WorkQueue(lambda snapshot: True)
    queue.put(_work("a", 3, "state_changed", 0))
    [in_flight] = queue.take(10)
    queue.put(_work("b", 1, "created", 1))
    assert 1 == queue.drop({("up", 0)}, in_flight=True)
    assert [] == queue.finish(in_flight, done=True)
    assert queue.empty()


def test_finalized_work_lingers_to_fill_a_call_while_any_other_work_goes_at_once() -> None:
    """`final_linger_s`: a finalized log waits (nobody waits on it) until the oldest one has waited that long,
    or `linger_items` are waiting; a waiting change of any other kind makes the call due now."""
    queue = WorkQueue(lambda snapshot: True)
    final = _work("f", 7, "finalized", 0, finalized=True)
    queue.put(final)
    waited = queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0)
    assert waited is not None and 0.9 < waited <= 1.0
    assert 0.0 == queue.ready_in_s(0.0, 3, hurry=True, final_linger_s=1.0)  # closing: no lingering
    final.queued_at_s -= 1.0
    assert 0.0 == queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0)  # waited long enough
    final.queued_at_s += 1.0
    queue.put(_work("g", 3, "finalized", 1, finalized=True))
    queue.put(_work("h", 4, "finalized", 2, finalized=True))
    assert 0.0 == queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0)  # linger_items are waiting
    [_taken] = queue.take(1)
    waited = queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0)
    assert waited is not None and waited > 0.5  # two left, under linger_items
    queue.put(_work("g", 4, "state_changed", 3))  # merges into g: the strongest trigger stays finalized
    assert waited <= (queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0) or 0.0) + 0.1
    queue.put(_work("s", 2, "state_changed", 4))
    assert 0.0 == queue.ready_in_s(0.0, 3, hurry=False, final_linger_s=1.0)


def test_a_target_that_lingers_for_everything_lingers_for_finalized_work_too() -> None:
    """Zendesk: `linger_s` for every work, no `final_linger_s`; a finalized log waits `linger_s` all the same."""
    queue = WorkQueue(lambda snapshot: True)
    queue.put(_work("f", 7, "finalized", 0, finalized=True))
    waited = queue.ready_in_s(3.0, 100, hurry=False)
    assert waited is not None and 2.9 < waited <= 3.0
    waited = queue.ready_in_s(3.0, 100, hurry=False, final_linger_s=1.0)
    assert waited is not None and 2.9 < waited <= 3.0
