"""The Redis key layout on a cluster: the keys one atomic step touches share a hash slot."""

from __future__ import annotations

import pytest
import redis

from worker.store import keys
from worker.store.cluster import by_slot, riding_out, slot_of


@pytest.mark.parametrize("target", ["salesforce", "zendesk", "webhook"])
def test_a_targets_minute_and_day_budget_counters_share_a_slot(target: str) -> None:
    minute, day = (keys.budget_key("ilog", target, window) for window in ("minute", "day"))
    assert slot_of(minute) == slot_of(day)


def test_an_interactions_state_key_lies_in_the_slot_of_its_id_whatever_the_prefix() -> None:
    assert {slot_of("conv-42")} == {slot_of(keys.state_key(prefix, "conv-42")) for prefix in ("ilog", "ilog-replay-x")}


def test_slots_are_computed_as_redis_cluster_does() -> None:
    # CLUSTER KEYSLOT answers, taken from a Redis 7 cluster
    assert (12182, 12182, 10805) == (slot_of("foo"), slot_of("{foo}:bar"), slot_of("conv-1"))


def test_a_batch_is_grouped_by_slot_in_first_seen_order() -> None:
    ids = ["{a}1", "b", "{a}2", "c"]
    groups = by_slot(ids, lambda i: i)
    assert [["{a}1", "{a}2"], ["b"], ["c"]] == [groups[slot_of(i)] for i in ("{a}", "b", "c")]


def test_every_slot_has_a_marks_key_of_its_own() -> None:
    assert list(range(16_384)) == [slot_of(keys.slot_marks_key("ilog", slot)) for slot in range(16_384)]


def test_a_transient_redis_error_is_ridden_out_with_growing_pauses_and_then_given_up() -> None:
    pauses: list[float] = []
    outcomes: list[object] = [redis.ConnectionError("refused"), redis.exceptions.ClusterDownError("down"), "ok"]

    def call() -> object:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    assert ("ok", [0.1, 0.2]) == (riding_out(call, sleep=pauses.append), pauses)
    with pytest.raises(redis.ConnectionError):
        riding_out(lambda: (_ for _ in ()).throw(redis.ConnectionError("gone")), ride_out_s=0.0, sleep=pauses.append)
