"""The sync epoch and the batch read of the sync stage against real Redis (`RedisSyncStateStore.read_batch`)."""

from __future__ import annotations

import pytest
import redis

from adapters.base import TargetState
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite, Stored
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.cluster import is_cluster
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
    assert 4_000 == states.read_batch(ids, "crm", 5_000).epoch_ms


def test_an_epoch_begun_under_another_run_of_the_server_is_replaced(
    settings: Settings, redis_client: redis.Redis,
) -> None:
    """A restart from a snapshot or a failover keeps the key but may lose the last writes: the
    server's run id differs, so a new epoch begins (one Redis node; a cluster checks presence only)."""
    if is_cluster(redis_client):
        pytest.skip("a cluster's epoch is checked for presence only (docs/design.md, residual risk)")
    states = RedisSyncStateStore(redis_client, settings.key_prefix, 60)
    epoch_key = keys.sync_epoch_key(settings.key_prefix)
    run_id = str(redis_client.info("server")["run_id"])
    redis_client.set(epoch_key, "1000:0123456789abcdef0123456789abcdef01234567")  # another run's epoch
    assert 7_000 == states.read_batch(["a"], "crm", 7_000).epoch_ms
    assert f"7000:{run_id}".encode() == redis_client.get(epoch_key)
    assert 7_000 == states.start_epoch(9_000)
    redis_client.set(epoch_key, "1000")  # written without a run id: not trusted either
    assert 9_500 == states.start_epoch(9_500)


def test_a_missing_sync_state_in_a_hash_put_back_after_a_loss_is_never_trusted(
    settings: Settings, redis_client: redis.Redis,
) -> None:
    """A shard that restarted empty lost the sync states with the logs while the epoch (on another
    shard) stayed: the logs the fold stage puts back are marked, so their absences stay unknown,
    also after the fold stage writes over them again."""
    prefix = settings.key_prefix
    store = RedisStore(redis_client, prefix)
    store.write([StateWrite("fresh", 0, InteractionLog("fresh", version=2), 60_000),
                 StateWrite("restored", 0, InteractionLog("restored", version=2), 60_000, restored=True)])
    states = RedisSyncStateStore(redis_client, prefix, 60)
    assert 1_000 == states.start_epoch(1_000)
    assert frozenset({"fresh"}) == states.read_batch(["fresh", "restored"], "crm", 3_000).held_without_state
    store.write([StateWrite("restored", 2, InteractionLog("restored", version=3), 60_000)])  # folded on
    assert {"restored": Stored(3, InteractionLog("restored", version=3))} == store.load(["restored"])
    assert frozenset({"fresh"}) == states.read_batch(["fresh", "restored"], "crm", 4_000).held_without_state
