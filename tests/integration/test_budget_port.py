"""The API budget's behaviour suite, run against every implementation of `Budget`: the in-memory twin
(unit tier) and `ApiBudget` against the real redis-server (integration tier)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import redis

from adapters.base import BudgetLimits
from worker.store.budget import ApiBudget, Budget, Grant, MemoryBudget

LIMITS = {"crm": BudgetLimits(per_minute=5, per_day=8)}
MakeBudget = Callable[[dict[str, BudgetLimits]], Budget]


def _redis_budgets(request: pytest.FixtureRequest) -> MakeBudget:
    client: redis.Redis = request.getfixturevalue("redis_client")
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    return lambda limits: ApiBudget(client, prefix, limits)


@pytest.fixture(params=[pytest.param("memory", marks=pytest.mark.unit),
                        pytest.param("redis", marks=pytest.mark.integration)])
def make_budget(request: pytest.FixtureRequest) -> MakeBudget:
    """Budgets built by one factory share their counters (replicas on one Redis; one process in memory)."""
    if request.param == "redis":
        return _redis_budgets(request)
    shared: list[MemoryBudget] = []

    def memory(limits: dict[str, BudgetLimits]) -> Budget:
        if not shared:
            shared.append(MemoryBudget(limits))
        return shared[0]

    return memory


def test_tokens_are_granted_until_the_minute_is_spent_then_refused_until_it_resets(make_budget: MakeBudget) -> None:
    budget = make_budget(LIMITS)
    assert Grant(True, 2, 5, 0.0) == budget.take("crm", 3)
    assert Grant(True, 0, 3, 0.0) == budget.take("crm", 2)
    refused = budget.take("crm", 1)
    assert (False, 0, 3) == (refused.granted, refused.left_minute, refused.left_day)
    assert 0 < refused.wait_s <= 60


def test_a_refused_take_spends_nothing_and_a_peek_spends_nothing(make_budget: MakeBudget) -> None:
    budget = make_budget(LIMITS)
    assert not budget.take("crm", 6).granted  # more than the minute holds
    assert Grant(True, 5, 8, 0.0) == budget.peek("crm")
    assert Grant(True, 5, 8, 0.0) == budget.peek("crm")


def test_the_day_limit_refuses_even_with_minute_left(make_budget: MakeBudget) -> None:
    budget = make_budget({"crm": BudgetLimits(per_minute=100, per_day=4)})
    assert budget.take("crm", 4).granted
    refused = budget.take("crm", 1)
    assert (False, 96, 0) == (refused.granted, refused.left_minute, refused.left_day)
    assert 0 < refused.wait_s <= 86_400


def test_a_target_without_limits_is_never_refused(make_budget: MakeBudget) -> None:
    budget = make_budget(LIMITS)
    assert budget.take("webhook", 10_000).granted


def test_budgets_of_one_backend_share_their_counters(make_budget: MakeBudget) -> None:
    first, second = make_budget(LIMITS), make_budget(LIMITS)
    assert first.take("crm", 4).granted
    assert not second.take("crm", 2).granted
    assert 1 == second.peek("crm").left_minute


def test_the_memory_window_resets_when_its_minute_has_passed() -> None:
    now_ms = [0]
    budget = MemoryBudget(LIMITS, clock_ms=lambda: now_ms[0])
    assert budget.take("crm", 5).granted
    now_ms[0] = 30_000
    assert 30.0 == budget.take("crm", 1).wait_s
    now_ms[0] = 60_000
    assert Grant(True, 4, 2, 0.0) == budget.take("crm", 1)
