"""The stages keep their metric series true (on fakes): a revoked partition's lag goes away, the sync stage
reports each target's queue depth, both loops beat."""

from __future__ import annotations

import threading

from confluent_kafka import TopicPartition
from prometheus_client import REGISTRY

from adapters.base import Synced
from tests.fakes import Calls, FakeConsumer, FakeProducer, ScriptedTarget, json_message
from tests.support import wait_for
from worker.runtime import metrics
from worker.runtime.settings import Settings
from worker.store.budget import MemoryBudget
from worker.store.sync_state import MemorySyncStateStore
from worker.sync.stage import SyncStage

SETTINGS = Settings(_env_file=None, batch_timeout_seconds=0.05, drain_timeout_seconds=5.0,
                    sync_group="g-stage-metrics")


def sample(name: str, **labels: str) -> float | None:
    value: float | None = REGISTRY.get_sample_value(name, labels)
    return value


def test_the_sync_stage_reports_queue_depth_and_beats_and_a_revoke_drops_the_lag_series() -> None:
    calls: Calls = []
    snapshot = {"interaction_id": "a", "version": 1, "trigger": "finalized", "finalized": True}
    consumer = FakeConsumer(calls, [[json_message(SETTINGS.upserts_topic, 0, 0, snapshot)]])
    stage = SyncStage(SETTINGS, [ScriptedTarget({"a": [Synced("T-1", 1)]})], MemorySyncStateStore(),
                      MemoryBudget({}), consumer, FakeProducer(calls))  # type: ignore[arg-type]
    stop = threading.Event()
    thread = threading.Thread(target=stage.run, args=(stop,))
    thread.start()
    try:
        assert wait_for(lambda: ("store_offsets", [(SETTINGS.upserts_topic, 0, 1)]) in calls, 5.0, 0.02)
        assert wait_for(lambda: sample("ilog_sync_queue_depth", target="crm") == 0.0, 5.0, 0.02)
        assert (sample("ilog_loop_heartbeat_timestamp_seconds", stage="sync") or 0) > 0
    finally:
        stop.set()
        thread.join(10)
    assert not thread.is_alive()
    # the revoke callback, as consume would call it (on the stage's thread, which has stopped now)
    metrics.CONSUMER_LAG.labels(SETTINGS.sync_group, "0").set(12)
    metrics.CONSUMER_LAG.labels(SETTINGS.sync_group, "1").set(7)
    stage._on_revoke(consumer, [TopicPartition(SETTINGS.upserts_topic, 0)])  # type: ignore[arg-type]
    assert (None, 7.0) == (sample("ilog_consumer_lag", group=SETTINGS.sync_group, partition="0"),
                           sample("ilog_consumer_lag", group=SETTINGS.sync_group, partition="1"))


def test_a_fold_partition_that_leaves_takes_its_lag_and_open_windows_series() -> None:
    from worker.fold.stage import FoldStage
    from worker.store.memory import MemoryStore

    settings = SETTINGS.model_copy(update={"fold_group": "g-fold-metrics"})
    calls: Calls = []
    consumer = FakeConsumer(calls, [])
    stage = FoldStage(settings, MemoryStore(), consumer, FakeProducer(calls))  # type: ignore[arg-type]
    for partition in ("3", "4"):
        metrics.CONSUMER_LAG.labels("g-fold-metrics", partition).set(5)
        metrics.OPEN_WINDOWS.labels(partition).set(2)
    stage._on_revoke(consumer, [TopicPartition(settings.events_topic, 3)])  # type: ignore[arg-type]
    stage._on_lost(consumer, [TopicPartition(settings.events_topic, 4)])  # type: ignore[arg-type]
    assert [None] * 4 == [sample("ilog_consumer_lag", group="g-fold-metrics", partition=p) for p in ("3", "4")] + [
        sample("ilog_open_windows", partition=p) for p in ("3", "4")]
