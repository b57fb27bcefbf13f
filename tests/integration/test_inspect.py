"""`ilog inspect`: the log as Redis holds it, with what the sync stage remembers per target."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import redis

from adapters.base import TargetState
from tests.support import WorkerProcess, event, offline_fold, produce, wait_for, without
from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import StateWrite
from worker.ops.inspect import inspect_interaction
from worker.runtime import bootstrap
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


def test_a_finalized_interaction_shows_its_final_snapshot_from_the_upserts_topic(
    settings: Settings, capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    configured = settings.model_copy(update={"edit_window_seconds": 1.0, "finalize_grace_seconds": 1.0})
    start = datetime.now(UTC) - timedelta(seconds=30)
    history = [
        event("interaction.connected", "conv-f", 1, start, {
            "media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
            "customer": {"address": "+4930123456", "name": "Ada Example"}}),
        event("log.updated", "conv-f", 2, start + timedelta(seconds=5), {"notes": "Refund asked."}),
        event("interaction.disconnected", "conv-f", 3, start + timedelta(seconds=10)),
    ]
    worker = WorkerProcess("fold", configured, tmp_path / "worker.log")
    try:
        produce(configured, configured.events_topic, history)
        assert wait_for(lambda: _tombstone(configured, "conv-f"), timeout_s=60), worker.log_text()
    finally:
        assert 0 == worker.stop()
    capsys.readouterr()
    assert 0 == inspect_interaction("conv-f", configured)
    shown = json.loads(capsys.readouterr().out)
    expected = offline_fold(history, tmp_path, configured)["conv-f"]
    assert (4, "finalized", True) == (shown["version"], shown["trigger"], shown["finalized"])
    assert without(expected, "version", "trigger", "finalized") == without(shown, "version", "trigger", "finalized")


def test_a_finalized_interaction_whose_final_snapshot_is_gone_shows_the_tombstone(
    settings: Settings, redis_client: redis.Redis, capsys: pytest.CaptureFixture[str],
) -> None:
    finalized_at = datetime(2026, 11, 27, 10, 7, tzinfo=UTC)
    RedisStore(redis_client, settings.key_prefix).write(
        [StateWrite("conv-t", 0, Tombstone("conv-t", 9, finalized_at, ("e-1",)), 60_000)])
    assert 0 == inspect_interaction("conv-t", settings)
    captured = capsys.readouterr()
    assert {"interaction_id": "conv-t", "version": 9, "finalized": True,
            "finalized_at": "2026-11-27T10:07:00Z"} == json.loads(captured.out)
    assert captured.err.startswith("conv-t: finalized; Redis keeps only a tombstone and its final snapshot (v9) "
                                   "is not on ")


def _tombstone(settings: Settings, interaction_id: str) -> bool:
    store = bootstrap.log_store(settings)
    try:
        return isinstance(store.load([interaction_id])[interaction_id].state, Tombstone)
    finally:
        store.close()
