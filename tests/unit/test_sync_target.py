"""The per-target retry loop with a scripted target and the in-memory state store (no services)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import redis

from adapters.base import Failed, Retry, Skipped, Synced, SyncItem, SyncOutcome, TargetState
from schemas.snapshot import LogSnapshot
from worker.budget import ApiBudget
from worker.sync_batch import Pending, SyncRecord
from worker.sync_state import MemorySyncStateStore
from worker.sync_target import BatchDeadline, TargetRunner


class ScriptedTarget:
    """Answers each call from a script of per-interaction outcomes; records what it was sent."""

    name = "crm"

    def __init__(self, script: dict[str, list[SyncOutcome]]) -> None:
        self.script = script
        self.calls: list[list[tuple[str, TargetState]]] = []

    def wants(self, snapshot: LogSnapshot) -> bool:
        return True

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        self.calls.append([(item.snapshot.interaction_id, item.target_state) for item in batch])
        return [self.script[item.snapshot.interaction_id].pop(0) for item in batch]

    def close(self) -> None:
        return None


def _due(*ids: str, version: int = 3) -> list[tuple[Pending, SyncItem]]:
    due = []
    for offset, interaction_id in enumerate(ids):
        snapshot = LogSnapshot.model_validate({"interaction_id": interaction_id, "version": version,
                                               "trigger": "state_changed"})
        due.append((Pending(snapshot, SyncRecord("up", 0, offset, None, b"", snapshot)), SyncItem(snapshot)))
    return due


def _runner(target: ScriptedTarget, store: MemorySyncStateStore, dead: list[tuple[str, str, Failed]]) -> TargetRunner:
    budget = ApiBudget(redis.Redis(), "unit", {})  # no limits for this target: Redis is never called
    return TargetRunner(target, store, budget, lambda entry, name, failed: dead.append(
        (entry.snapshot.interaction_id, name, failed)), backoff_base_s=0.01, backoff_cap_s=0.01)


def _deadline(stop: threading.Event | None = None) -> BatchDeadline:
    return BatchDeadline((stop or threading.Event()).is_set, drain_s=1.0, batch_limit_s=10.0)


def test_only_the_items_that_asked_for_a_retry_are_sent_again() -> None:
    target = ScriptedTarget({
        "a": [Synced("T-a", 3)],
        "b": [Retry(0.0, "HTTP 503", uncertain=True), Synced("T-b", 3)],
        "c": [Skipped("not wanted")],
        "d": [Failed("STRING_TOO_LONG", "Subject")],
    })
    store = MemorySyncStateStore()
    dead: list[tuple[str, str, Failed]] = []
    assert _runner(target, store, dead).run(_due("a", "b", "c", "d"), _deadline())
    assert [["a", "b", "c", "d"], ["b"]] == [[i for i, _ in call] for call in target.calls]
    assert TargetState(uncertain=True) == target.calls[1][0][1]  # the retry looks the record up first
    assert {
        ("a", "crm"): TargetState("T-a", 3), ("b", "crm"): TargetState("T-b", 3),
        ("c", "crm"): TargetState(), ("d", "crm"): TargetState(),
    } == store.states
    assert [("d", "crm", Failed("STRING_TOO_LONG", "Subject"))] == dead


def test_a_stop_during_endless_retries_gives_up_after_the_drain_and_reports_not_done() -> None:
    target = ScriptedTarget({"a": [Retry(0.05, "HTTP 429")] * 1000})
    stop = threading.Event()
    stop.set()
    runner = _runner(target, MemorySyncStateStore(), [])
    assert runner.run(_due("a"), BatchDeadline(stop.is_set, drain_s=0.3, batch_limit_s=10.0)) is False
    assert 1 <= len(target.calls) < 1000


def test_budget_exhausted_pauses_the_target_for_the_retry_after() -> None:
    target = ScriptedTarget({"a": [Retry(0.2, "REQUEST_LIMIT_EXCEEDED", budget_exhausted=True), Synced("T", 3)]})
    runner = _runner(target, MemorySyncStateStore(), [])
    assert runner.run(_due("a"), _deadline())
    assert runner.paused_until > 0
    assert 2 == len(target.calls)


def test_a_crash_mark_is_stored_before_the_call_and_cleared_by_the_outcome() -> None:
    store = MemorySyncStateStore()
    seen_during_call: list[TargetState] = []

    class Peeking(ScriptedTarget):
        def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
            seen_during_call.append(store.states[("a", "crm")])
            return super().sync(batch)

    target = Peeking({"a": [Synced("T-a", 3)]})
    assert _runner(target, store, []).run(_due("a"), _deadline())
    assert [TargetState(uncertain=True)] == seen_during_call
    assert [[("a", TargetState())]] == target.calls  # the adapter itself got the unmarked state
    assert TargetState("T-a", 3) == store.states[("a", "crm")]
