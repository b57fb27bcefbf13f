"""A target's thread with a scripted target and the in-memory state store (no services)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from adapters.base import BudgetLimits, Failed, Retry, Skipped, Synced, SyncItem, SyncOutcome, TargetState
from schemas.snapshot import LogSnapshot
from tests.fakes import ScriptedTarget
from tests.support import wait_for
from worker.store.budget import MemoryBudget
from worker.store.sync_state import MemorySyncStateStore, StateUpdate
from worker.sync.batch import Pending, SyncRecord
from worker.sync.epoch import AbsenceRule
from worker.sync.offsets import Position
from worker.sync.queue import Work
from worker.sync.target_runner import RAISES_BEFORE_DEAD_LETTER, TargetRunner


def _work(interaction_id: str, offset: int, version: int = 3) -> Work:
    snapshot = LogSnapshot.model_validate({"interaction_id": interaction_id, "version": version,
                                           "trigger": "state_changed"})
    return Work(Pending(snapshot, SyncRecord("up", 0, offset, None, b"", snapshot)), [("up", 0, offset)])


class Harness:
    def __init__(self, target: ScriptedTarget, store: MemorySyncStateStore | None = None,
                 **options: float | int | AbsenceRule) -> None:
        self.store = store or MemorySyncStateStore()
        self.dead: list[tuple[str, str, Failed]] = []
        self.done: list[Position] = []
        budget = MemoryBudget({})  # no limits for this target
        self.runner = TargetRunner(
            target, self.store, budget, lambda entry, name, failed: self.dead.append(
                (entry.snapshot.interaction_id, name, failed)),
            on_done=self.done.extend, backoff_base_s=0.01, backoff_cap_s=0.01, **options,  # type: ignore[arg-type]
        )

    def run(self, *works: Work, drain_s: float = 5.0) -> bool:
        """Queue the work, let the thread work it off; True when it finished before the drain ran out."""
        for work in works:
            assert self.runner.queue.put(work)
        self.runner.start()
        self.runner.close_by(time.monotonic() + drain_s)
        assert self.runner.join(drain_s + 5)
        assert self.runner.failure is None
        return self.runner.queue.empty()


def test_only_the_items_that_asked_for_a_retry_are_sent_again_and_all_are_reported_done() -> None:
    target = ScriptedTarget({
        "a": [Synced("T-a", 3)],
        "b": [Retry(0.0, "HTTP 503", uncertain=True), Synced("T-b", 3)],
        "c": [Skipped("not wanted")],
        "d": [Failed("STRING_TOO_LONG", "Subject")],
    })
    harness = Harness(target)
    assert harness.run(_work("a", 0), _work("b", 1), _work("c", 2), _work("d", 3))
    assert [["a", "b", "c", "d"], ["b"]] == [[i for i, _ in call] for call in target.calls]
    assert TargetState(uncertain=True) == target.calls[1][0][1]  # the retry looks the record up first
    assert {
        ("a", "crm"): TargetState("T-a", 3), ("b", "crm"): TargetState("T-b", 3),
        ("c", "crm"): TargetState(), ("d", "crm"): TargetState(),
    } == harness.store.states
    assert [("d", "crm", Failed("STRING_TOO_LONG", "Subject"))] == harness.dead
    assert [("up", 0, 0), ("up", 0, 2), ("up", 0, 3), ("up", 0, 1)] == harness.done


def test_a_stop_during_endless_retries_gives_up_after_the_drain_and_reports_nothing_done() -> None:
    target = ScriptedTarget({"a": [Retry(0.05, "HTTP 429")] * 1000})
    harness = Harness(target)
    assert harness.run(_work("a", 0), drain_s=0.3) is False
    assert 1 <= len(target.calls) < 1000
    assert [] == harness.done


def test_budget_exhausted_pauses_the_target_for_the_retry_after() -> None:
    target = ScriptedTarget({"a": [Retry(0.2, "REQUEST_LIMIT_EXCEEDED", budget_exhausted=True), Synced("T", 3)]})
    harness = Harness(target)
    started_s = time.monotonic()
    assert harness.run(_work("a", 0))
    assert harness.runner.paused_until >= started_s + 0.2
    assert 2 == len(target.calls)


def test_a_crash_mark_is_stored_before_the_call_and_cleared_by_the_outcome() -> None:
    store = MemorySyncStateStore()
    seen_during_call: list[TargetState] = []

    class Peeking(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            seen_during_call.append(store.states[("a", "crm")])
            return super().sync(batch)

    target = Peeking({"a": [Synced("T-a", 3)]})
    assert Harness(target, store).run(_work("a", 0))
    assert [TargetState(uncertain=True)] == seen_during_call
    assert [[("a", TargetState())]] == target.calls  # the adapter itself got the unmarked state
    assert TargetState("T-a", 3) == store.states[("a", "crm")]


def test_a_version_already_stored_is_done_without_a_call() -> None:
    store = MemorySyncStateStore()
    store.save([StateUpdate("a", "crm", TargetState("T-a", 3))])
    target = ScriptedTarget({})
    harness = Harness(target, store)
    assert harness.run(_work("a", 7, version=3))
    assert [] == target.calls
    assert [("up", 0, 7)] == harness.done


def test_newer_versions_wait_while_their_interaction_is_in_flight_merge_and_get_the_stored_state() -> None:
    release = threading.Event()

    class Gated(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            release.wait(5)
            return super().sync(batch)

    target = Gated({"a": [Synced("T-a", 3), Synced("T-a", 5)]})
    harness = Harness(target)
    harness.runner.queue.put(_work("a", 0, version=3))
    harness.runner.start()
    assert wait_for(lambda: harness.runner.queue.in_flight_of({("up", 0)}) == 1, 5.0, 0.01)
    harness.runner.queue.put(_work("a", 1, version=4))
    harness.runner.queue.put(_work("a", 2, version=5))
    release.set()
    assert harness.run()
    assert [[("a", TargetState())], [("a", TargetState("T-a", 3))]] == target.calls
    assert [("up", 0, 0), ("up", 0, 1), ("up", 0, 2)] == harness.done


def test_lingering_holds_work_until_the_linger_passes_or_enough_is_waiting() -> None:
    target = ScriptedTarget({name: [Synced(name, 3)] for name in "abcd"})
    harness = Harness(target, linger_s=60.0, linger_items=3)
    harness.runner.start()
    harness.runner.queue.put(_work("a", 0))
    harness.runner.queue.put(_work("b", 1))
    time.sleep(0.3)
    assert [] == target.calls
    harness.runner.queue.put(_work("c", 2))
    assert wait_for(lambda: len(target.calls) == 1, 5.0, 0.01)
    harness.runner.queue.put(_work("d", 3))  # alone, but a shutdown does not linger
    harness.runner.close_by(time.monotonic() + 5)
    assert harness.runner.join(10)
    assert [["a", "b", "c"], ["d"]] == [[i for i, _ in call] for call in target.calls]


def _connected_work(interaction_id: str, offset: int, connected_ms: int) -> Work:
    snapshot = LogSnapshot.model_validate({"interaction_id": interaction_id, "version": 3, "trigger": "state_changed",
                                           "connected_at": connected_ms / 1000})
    return Work(Pending(snapshot, SyncRecord("up", 0, offset, None, b"", snapshot)), [("up", 0, offset)])


def test_a_missing_state_is_known_absent_only_for_interactions_the_store_provably_held() -> None:
    now_ms = int(time.time() * 1000)
    store = MemorySyncStateStore(epoch_ms=now_ms - 3_600_000, held={"new", "before-epoch", "marked"})
    store.save([StateUpdate("marked", "crm", TargetState(uncertain=True))])
    absent: dict[str, bool] = {}

    class Noting(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            absent.update({item.snapshot.interaction_id: item.state_known_absent for item in batch})
            return super().sync(batch)

    target = Noting({i: [Synced(f"T-{i}", 3)] for i in ("new", "before-epoch", "hash-gone", "marked")})
    harness = Harness(target, store, absence=AbsenceRule(margin_ms=60_000, state_ttl_ms=86_400_000))
    assert harness.run(_connected_work("new", 0, now_ms - 10_000),
                       _connected_work("before-epoch", 1, now_ms - 7_200_000),
                       _connected_work("hash-gone", 2, now_ms - 10_000),
                       _connected_work("marked", 3, now_ms - 10_000))
    assert {"new": True, "before-epoch": False, "hash-gone": False, "marked": False} == absent


def test_without_an_absence_rule_no_missing_state_is_trusted() -> None:
    now_ms = int(time.time() * 1000)
    store = MemorySyncStateStore(epoch_ms=now_ms - 3_600_000, held={"new"})
    target = ScriptedTarget({"new": [Synced("T-new", 3)]})
    seen: list[bool] = []

    class Noting(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            seen.extend(item.state_known_absent for item in batch)
            return target.sync(batch)

    assert Harness(Noting({}), store).run(_connected_work("new", 0, now_ms - 10_000))
    assert [False] == seen


class RaisingTarget(ScriptedTarget):
    """Raises (an adapter bug) on every call that holds one of `poison`, or on every call at all."""

    def __init__(self, script: dict[str, list[SyncOutcome]], poison: set[str] | None = None) -> None:
        super().__init__(script)
        self.poison = poison

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        ids = {item.snapshot.interaction_id for item in batch}
        if self.poison is None or ids & self.poison:
            self.calls.append([(item.snapshot.interaction_id, item.target_state) for item in batch])
            raise KeyError("a field the adapter did not expect")
        return super().sync(batch)


def test_a_record_that_makes_the_adapter_raise_is_isolated_and_dead_lettered_while_the_rest_syncs() -> None:
    target = RaisingTarget({i: [Synced(f"T-{i}", 3)] for i in ("a", "b", "c")}, poison={"p"})
    harness = Harness(target)
    assert harness.run(_work("a", 0), _work("p", 1), _work("b", 2), _work("c", 3))
    calls_with_p = [call for call in target.calls if "p" in dict(call)]
    # 1,000 items a call, then at most 125, 15, 1: four calls, the last alone, then the dead letter
    assert [4, 4, 4, 1] == [len(call) for call in calls_with_p]
    assert RAISES_BEFORE_DEAD_LETTER < len(calls_with_p)
    assert TargetState(uncertain=True) == dict(target.calls[1])["a"]  # what the raising call sent is unknown
    assert all(len(call) == 1 for call in target.calls[3:])
    assert [("p", "crm")] == [(i, name) for i, name, _ in harness.dead]
    assert harness.dead[0][2].code == "ADAPTER_ERROR"
    assert "KeyError" in harness.dead[0][2].message
    assert {("a", "crm"): TargetState("T-a", 3), ("b", "crm"): TargetState("T-b", 3),
            ("c", "crm"): TargetState("T-c", 3)} == {k: v for k, v in harness.store.states.items() if k[0] != "p"}
    assert sorted(harness.done) == [("up", 0, offset) for offset in range(4)]


def test_an_adapter_that_raises_on_every_call_dead_letters_nothing() -> None:
    target = RaisingTarget({}, poison=None)
    harness = Harness(target)
    assert harness.run(_work("a", 0), _work("b", 1), drain_s=2.0) is False
    for record in ("a", "b"):  # each tried more often than a record that raises alone is
        assert sum(1 for call in target.calls if record in dict(call)) > RAISES_BEFORE_DEAD_LETTER
    assert [] == harness.dead
    assert [] == harness.done
    assert {("a", "crm"): TargetState(uncertain=True), ("b", "crm"): TargetState(uncertain=True)} == \
        harness.store.states


class GatedTarget(ScriptedTarget):
    """Each call waits for `release`; `in_flight` holds the interaction ids of the calls under way."""

    def __init__(self, script: dict[str, list[SyncOutcome]]) -> None:
        super().__init__(script)
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.in_flight: list[set[str]] = []
        self.most_at_once = 0

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        ids = {item.snapshot.interaction_id for item in batch}
        with self.lock:
            self.in_flight.append(ids)
            self.most_at_once = max(self.most_at_once, len(self.in_flight))
            outcomes = super().sync(batch)
        self.release.wait(5)
        with self.lock:
            self.in_flight.remove(ids)
        return outcomes


def _calls_under_way(target: GatedTarget) -> list[set[str]]:
    with target.lock:
        return [set(ids) for ids in target.in_flight]


def test_calls_beside_one_under_way_hold_interactions_of_their_own_and_a_new_version_waits() -> None:
    target = GatedTarget({"a": [Synced("T-a", 3), Synced("T-a", 4)], "b": [Synced("T-b", 3)]})
    harness = Harness(target, concurrent_calls=2)
    harness.runner.start()
    harness.runner.queue.put(_work("a", 0))
    assert wait_for(lambda: _calls_under_way(target) == [{"a"}], 5.0, 0.01)
    harness.runner.queue.put(_work("a", 1, version=4))  # a is in flight: this version waits for its call
    harness.runner.queue.put(_work("b", 2))
    assert wait_for(lambda: _calls_under_way(target) == [{"a"}, {"b"}], 5.0, 0.01)
    time.sleep(0.2)
    assert [{"a"}, {"b"}] == _calls_under_way(target)
    target.release.set()
    assert harness.run()
    assert 2 == target.most_at_once
    assert [[("a", TargetState())], [("b", TargetState())], [("a", TargetState("T-a", 3))]] == target.calls
    assert {("a", "crm"): TargetState("T-a", 4), ("b", "crm"): TargetState("T-b", 3)} == harness.store.states
    assert sorted(harness.done) == [("up", 0, offset) for offset in range(3)]


def test_a_call_beside_one_under_way_waits_until_enough_records_wait() -> None:
    target = GatedTarget({name: [Synced(name, 3)] for name in "abcd"})
    harness = Harness(target, concurrent_calls=2, side_call_items=3)
    harness.runner.start()
    harness.runner.queue.put(_work("a", 0))
    assert wait_for(lambda: _calls_under_way(target) == [{"a"}], 5.0, 0.01)
    harness.runner.queue.put(_work("b", 1))
    harness.runner.queue.put(_work("c", 2))
    time.sleep(0.3)
    assert [{"a"}] == _calls_under_way(target)  # two waiting: fewer than a side call needs
    harness.runner.queue.put(_work("d", 3))
    assert wait_for(lambda: _calls_under_way(target) == [{"a"}, {"b", "c", "d"}], 5.0, 0.01)
    target.release.set()
    assert harness.run()
    assert sorted(harness.done) == [("up", 0, offset) for offset in range(4)]


def test_a_target_backing_off_after_a_retry_gets_one_call_at_a_time() -> None:
    target = GatedTarget({"a": [Retry(0.0, "HTTP 503"), Synced("T-a", 3)], "b": [Synced("T-b", 3)],
                          "c": [Synced("T-c", 3)]})
    target.release.set()
    harness = Harness(target, concurrent_calls=3)
    harness.runner.backoff_base_s = harness.runner.backoff_cap_s = 0.3
    harness.runner.start()
    harness.runner.queue.put(_work("a", 0))
    assert wait_for(lambda: harness.runner.paused_until > 0 and len(target.calls) == 1, 5.0, 0.01)
    target.release.clear()  # the calls after the back-off stay under way until released
    harness.runner.queue.put(_work("b", 1))
    assert wait_for(lambda: len(_calls_under_way(target)) == 1, 5.0, 0.01)
    harness.runner.queue.put(_work("c", 2))
    time.sleep(0.3)
    assert 1 == len(_calls_under_way(target))  # the probe after a retry goes alone
    target.release.set()
    assert harness.run()
    assert {("a", "crm"): TargetState("T-a", 3), ("b", "crm"): TargetState("T-b", 3),
            ("c", "crm"): TargetState("T-c", 3)} == harness.store.states


def test_a_write_whose_answer_was_lost_is_looked_up_once_it_had_the_settle_time_not_twice_that() -> None:
    """A target whose writes land in the background (Zendesk jobs) waits `settle_s` after an uncertain
    outcome before looking again: once, not a second time when the retry finds the uncertain mark."""
    called_at: list[float] = []

    class Timed(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            called_at.append(time.monotonic())
            return super().sync(batch)

    target = Timed({"a": [Retry(None, "timeout: ReadTimeout", uncertain=True), Synced("T-a", 3)]})
    harness = Harness(target, settle_s=0.6)
    assert harness.run(_work("a", 0))
    assert [TargetState(), TargetState(uncertain=True)] == [call[0][1] for call in target.calls]
    waited_s = called_at[1] - called_at[0]
    assert 0.6 <= waited_s < 1.1, waited_s


def test_when_the_budget_runs_low_a_final_snapshot_behind_a_full_call_of_others_still_goes_first() -> None:
    """Low budget admits final snapshots only: one queued behind a call's worth of open interactions must
    be taken, not wait until the window resets while the same open ones are taken and given back."""
    final = LogSnapshot.model_validate({"interaction_id": "c", "version": 9, "trigger": "finalized",
                                        "state": "disconnected", "finalized": True})
    final_work = Work(Pending(final, SyncRecord("up", 0, 2, None, b"", final)), [("up", 0, 2)])
    target = ScriptedTarget({"c": [Synced("T-c", 9)]})
    budget = MemoryBudget({"crm": BudgetLimits(per_minute=100, per_day=10_000)})
    assert budget.take("crm", 95).granted  # 5 left of 100: under the 10 % reserve
    done: list[Position] = []
    runner = TargetRunner(target, MemorySyncStateStore(), budget, lambda *_: None, on_done=done.extend,
                          max_call_items=2)
    for work in (_work("a", 0), _work("b", 1), final_work):
        assert runner.queue.put(work)
    runner.start()
    assert wait_for(lambda: [("up", 0, 2)] == done, 3.0), target.calls
    runner.close_by(time.monotonic())
    assert runner.join(5)
    assert [[("c", TargetState())]] == target.calls
