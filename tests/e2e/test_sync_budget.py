"""The shared API budget and the per-target sync state against the real redis-server."""

from __future__ import annotations

import redis

from adapters.base import BudgetLimits, TargetState
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.budget import ApiBudget, Grant
from worker.store.sync_state import RedisSyncStateStore, StateUpdate


def test_two_replicas_share_one_budget_and_a_refusal_says_when_the_window_resets(
    settings: Settings, redis_client: redis.Redis
) -> None:
    limits = {"salesforce": BudgetLimits(per_minute=10, per_day=1000)}
    first = ApiBudget(redis_client, settings.key_prefix, limits)
    second = ApiBudget(bootstrap.redis_client(settings), settings.key_prefix, limits)
    assert (True, 4, 994) == _seen(first.take("salesforce", 6))
    assert (False, 4, 994) == _seen(second.take("salesforce", 5))
    refused = second.take("salesforce", 5)
    assert 0 < refused.wait_s <= 60
    assert (True, 0, 990) == _seen(second.take("salesforce", 4))
    assert (True, 0, 990) == _seen(first.peek("salesforce"))
    minute_ttl_ms = redis_client.pttl(keys.budget_key(settings.key_prefix, "salesforce", "minute"))
    day_ttl_ms = redis_client.pttl(keys.budget_key(settings.key_prefix, "salesforce", "day"))
    assert 0 < int(minute_ttl_ms) <= 60_000 < int(day_ttl_ms) <= 86_400_000


def _seen(grant: Grant) -> tuple[bool, int, int]:
    return (grant.granted, grant.left_minute, grant.left_day)


def test_sync_state_round_trips_never_goes_backwards_and_gives_a_bare_key_a_ttl(
    settings: Settings, redis_client: redis.Redis
) -> None:
    store = RedisSyncStateStore(redis_client, settings.key_prefix, ttl_s=3600)
    store.save([StateUpdate("a", "salesforce", TargetState("T-1", 5)),
                StateUpdate("a", "zendesk", TargetState(None, 0, uncertain=True))])
    store.save([StateUpdate("a", "salesforce", TargetState("T-1", 4))])  # a late writer
    assert {
        ("a", "salesforce"): TargetState("T-1", 5), ("a", "zendesk"): TargetState(None, 0, True),
        ("b", "salesforce"): TargetState(), ("b", "zendesk"): TargetState(),
    } == store.load(["a", "b"], ["salesforce", "zendesk"])
    key = keys.state_key(settings.key_prefix, "a")
    assert 0 < int(redis_client.ttl(key)) <= 3600
    redis_client.expire(key, 50)
    store.save([StateUpdate("a", "webhook", TargetState("r", 6))])
    assert 0 < int(redis_client.ttl(key)) <= 50
