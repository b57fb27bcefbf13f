"""The sync epoch and the batch read of the sync stage against real Redis (`RedisSyncStateStore.read_batch`)."""

from __future__ import annotations

import redis

from adapters.base import TargetState
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.redis_store import RedisStore
from worker.store.sync_state import BatchRead, RedisSyncStateStore, StateUpdate


def test_the_epoch_is_created_once_read_with_the_states_and_started_again_when_lost(
    settings: Settings, redis_client: redis.Redis,
) -> None:
    prefix = settings.key_prefix
    RedisStore(redis_client, prefix).write(
        [StateWrite(i, 0, InteractionLog(i, version=2), 60_000) for i in ("held", "synced")])
    states = RedisSyncStateStore(redis_client, prefix, 60)
    states.save([StateUpdate("synced", "crm", TargetState("T-1", 2)),
                 StateUpdate("no-log", "crm", TargetState("T-2", 1))])
    assert 1_000 == states.start_epoch(1_000)
    assert 1_000 == states.start_epoch(2_000)  # SET NX: the first start stays
    ids = ["held", "synced", "no-log", "never"]
    assert BatchRead(
        states={"held": TargetState(), "synced": TargetState("T-1", 2), "no-log": TargetState("T-2", 1),
                "never": TargetState()},
        held_without_state=frozenset({"held"}),  # "never" has no hash at all: its absence proves nothing
        epoch_ms=1_000,
    ) == states.read_batch(ids, "crm", 3_000)
    redis_client.delete(keys.sync_epoch_key(prefix))  # as a Redis restarted empty or flushed would
    assert 4_000 == states.read_batch(ids, "crm", 4_000).epoch_ms  # noticed by the next batch read
    assert b"4000" == redis_client.get(keys.sync_epoch_key(prefix))
