"""Budget admission (pure): finalized first, only finalized when low, as many as fit."""

from __future__ import annotations

from adapters import zendesk_writes
from adapters.base import SyncItem, TargetState
from schemas.snapshot import LogSnapshot
from worker.store.budget import BudgetLimits, Grant, admit, estimate_requests

LIMITS = BudgetLimits(per_minute=100, per_day=10_000)


def item(interaction_id: str, *, final: bool = False, state: TargetState | None = None) -> SyncItem:
    snapshot = LogSnapshot.model_validate({
        "interaction_id": interaction_id, "version": 2, "trigger": "finalized" if final else "state_changed",
        "finalized": final,
    })
    return SyncItem(snapshot, state or TargetState())


def grant(left_minute: int, left_day: int = 10_000) -> Grant:
    return Grant(True, left_minute, left_day, 0.0)


def test_salesforce_costs_its_look_up_queries_and_one_collection_request_per_200_records() -> None:
    items = [item(f"c{n}") for n in range(401)] + [item("known", state=TargetState("00T1", 3))]
    assert 3 + 1 + 3 == estimate_requests("salesforce", items)  # 401 look-ups, 1 update, 401 creates


def test_zendesk_costs_what_the_adapter_estimates_writes_in_jobs_included() -> None:
    items = [item("a", final=True), item("b", final=True, state=TargetState("7", 3))]
    assert zendesk_writes.estimated_requests(items) == estimate_requests("zendesk", items)
    many = [item(f"n{n}", final=True) for n in range(150)]
    assert 2 + 1 == estimate_requests("zendesk", many)  # two create jobs and one poll


def test_with_plenty_left_everything_goes_finalized_first() -> None:
    items = [item("a"), item("b", final=True), item("c")]
    assert ["b", "a", "c"] == [i.snapshot.interaction_id for i in admit("webhook", items, grant(90), LIMITS, 0.1)]


def test_when_the_budget_is_low_only_finalized_snapshots_go() -> None:
    items = [item("a"), item("b", final=True), item("c")]
    assert ["b"] == [i.snapshot.interaction_id for i in admit("webhook", items, grant(9), LIMITS, 0.1)]
    assert ["b"] == [i.snapshot.interaction_id for i in admit("webhook", items, grant(90, 999), LIMITS, 0.1)]


def test_only_as_many_as_the_budget_holds_are_admitted_and_none_when_it_is_spent() -> None:
    items = [item(f"f{n}", final=True) for n in range(8)]
    assert 4 == len(admit("webhook", items, grant(5), LIMITS, 0.1))
    assert [] == admit("webhook", items, grant(0), LIMITS, 0.1)


def test_a_target_without_limits_is_never_low() -> None:
    items = [item("a")]
    assert items == admit("webhook", items, grant(1), None, 0.1)
