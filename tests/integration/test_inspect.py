"""`ilog inspect`: the log as Redis holds it, with what the sync stage remembers per target."""

from __future__ import annotations

import json

import pytest
import redis

from adapters.base import TargetState
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.ops.inspect import inspect_interaction
from worker.runtime.settings import Settings
from worker.store.redis_store import RedisStore
from worker.store.sync_state import RedisSyncStateStore, StateUpdate


def test_inspect_shows_the_snapshot_and_each_targets_sync_state(
    settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str],
) -> None:
    RedisStore(redis_client, settings.key_prefix).write(
        [StateWrite("conv-i", 0, InteractionLog("conv-i", version=3), 60_000)])
    RedisSyncStateStore(redis_client, settings.key_prefix, 60).save(
        [StateUpdate("conv-i", "salesforce", TargetState("00T1", 3))])
    assert 0 == inspect_interaction("conv-i", settings)
    shown = json.loads(capsys.readouterr().out)
    assert ("conv-i", 3) == (shown["interaction_id"], shown["version"])
    assert {"salesforce": {"remote_id": "00T1", "synced_version": 3, "uncertain": False}} == shown["synced"]
