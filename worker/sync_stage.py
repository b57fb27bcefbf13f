"""The sync stage: upserts topic → Salesforce, Zendesk, webhook; at least once, idempotent effects.

Commit order, per batch (correctness depends on it):
  1. decode; undecodable snapshots are produced to `<upserts>.dlq` with the reason;
  2. coalesce to the newest version per interaction (strongest trigger of the batch kept);
  3. read every interaction's per-target state in one round trip; versions already synced are
     skipped, so re-consumed or replayed snapshots make no call;
  4. each target runs in its own thread: budget, call, store `next_target_state` (one round trip
     per call), dead-letter permanent failures, retry transient ones (only those items);
  5. when every target is done with every record: flush the producer, check every delivery,
     and only then store the batch's offsets (librdkafka commits stored offsets).
If a target cannot finish (shutdown drain passed, or the batch ran longer than
`_BATCH_LIMIT_S`, which would risk the consumer's poll interval) nothing is stored and the
partitions are rewound to the batch's first offsets: the batch is read again, and what was
already synced is skipped by its stored version.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import redis
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from adapters.base import Failed, Target
from adapters.registry import build_targets
from worker.budget import ApiBudget, BudgetLimits
from worker.kafka_io import (
    DeliveryTracker,
    commit_quietly,
    consumer_config,
    highest_offsets,
    producer_config,
    record_lag,
)
from worker.settings import Settings
from worker.sync_batch import (
    Headers,
    Pending,
    SyncRecord,
    coalesce,
    decode_snapshot,
    due_items,
    failure_headers,
    invalid_headers,
)
from worker.sync_state import RedisSyncStateStore, SyncStateStore
from worker.sync_target import BatchDeadline, TargetRunner

log = structlog.get_logger("ilog.sync")

_BATCH_LIMIT_S = 120.0  # well under librdkafka's default max.poll.interval.ms (300 s)
_DRAIN_SHARE = 0.6  # of drain_timeout_seconds spent finishing targets; the rest flushes and commits


def sync_record(message: Message) -> SyncRecord:
    value = message.value()
    snapshot, error = decode_snapshot(value)
    timestamp_type, timestamp_ms = message.timestamp()
    return SyncRecord(
        topic=message.topic() or "", partition=message.partition() or 0, offset=message.offset() or 0,
        timestamp_ms=timestamp_ms if timestamp_type != 0 and timestamp_ms > 0 else None,
        value=value, snapshot=snapshot, error=error,
    )


def lowest_offsets(records: Sequence[SyncRecord]) -> dict[tuple[str, int], int]:
    firsts: dict[tuple[str, int], int] = {}
    for record in records:
        key = (record.topic, record.partition)
        firsts[key] = min(firsts.get(key, record.offset), record.offset)
    return firsts


class SyncStage:
    def __init__(
        self, settings: Settings, targets: Sequence[Target], states: SyncStateStore, budget: ApiBudget
    ) -> None:
        self.settings = settings
        self.group = settings.sync_group
        self.targets = list(targets)
        self.states = states
        self.consumer = Consumer(consumer_config(settings, self.group, stats_cb=partial(record_lag, self.group)))
        self.producer = Producer(producer_config(settings))
        self.deliveries = DeliveryTracker()
        self.assigned_once = threading.Event()
        self.runners = [
            TargetRunner(t, states, budget, self._dead_letter, settle_s=settle_seconds(settings, t.name))
            for t in self.targets
        ]
        self._pool = ThreadPoolExecutor(max_workers=max(1, len(self.targets)), thread_name_prefix="sync-target")

    # -- group membership (same shape as the fold stage) --------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned_once.set()
        log.info("partitions assigned", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Callbacks run inside consume, so no batch is in hand: flush, commit what is stored."""
        self.deliveries.flush(self.producer, self.settings.drain_timeout_seconds)
        commit_quietly(self.consumer)
        log.info("partitions revoked", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("partitions lost; nothing committed", partitions=[tp.partition for tp in partitions])

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            [self.settings.upserts_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        try:
            while not stop.is_set():
                self.step(stop)
        finally:
            self.shutdown()

    def step(self, stop: threading.Event) -> None:
        messages = self.consumer.consume(self.settings.batch_size, self.settings.batch_timeout_seconds)
        records: list[SyncRecord] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(sync_record(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.error("consume error", error=error.str(), partition=message.partition())
        if records:
            self.process(records, stop)

    def process(self, records: Sequence[SyncRecord], stop: threading.Event) -> bool:
        """Sync one batch; True when its offsets were stored."""
        for record in records:
            if record.snapshot is None:
                self._produce_dlq(record.value, None, invalid_headers(record))
                log.error("undecodable snapshot; dead-lettered", partition=record.partition,
                          offset=record.offset, error=record.error)
        pending = coalesce(records)
        states = self.states.load((p.snapshot.interaction_id for p in pending), [t.name for t in self.targets])
        deadline = BatchDeadline(
            stop.is_set, self.settings.drain_timeout_seconds * _DRAIN_SHARE, _BATCH_LIMIT_S
        )
        futures = [
            self._pool.submit(
                runner.run,
                [(entry, item) for entry, item in due_items(pending, runner.name, states)
                 if runner.target.wants(item.snapshot)],
                deadline,
            )
            for runner in self.runners
        ]
        done = all(future.result() for future in futures)
        self.deliveries.flush(self.producer, self.settings.drain_timeout_seconds)
        if not done:
            self._rewind(records)
            return False
        self.consumer.store_offsets(
            offsets=[TopicPartition(topic, partition, offset)
                     for (topic, partition), offset in highest_offsets(records).items()]
        )
        return True

    def _rewind(self, records: Sequence[SyncRecord]) -> None:
        """Read the batch again (unless stopping): nothing of it is stored."""
        for (topic, partition), offset in lowest_offsets(records).items():
            try:
                self.consumer.seek(TopicPartition(topic, partition, offset))
            except KafkaException as exc:  # revoked meanwhile: the new owner starts from the commit
                log.info("rewind skipped", partition=partition, error=str(exc))

    def _dead_letter(self, entry: Pending, target: str, failed: Failed) -> None:
        self._produce_dlq(entry.snapshot.to_json_bytes(), entry.snapshot.interaction_id,
                          failure_headers(entry, target, failed))

    def _produce_dlq(self, value: bytes | None, key: str | None, headers: Headers) -> None:
        self.producer.produce(
            self.settings.upserts_dlq_topic, key=key, value=value, headers=list(headers),
            on_delivery=self.deliveries.callback,
        )
        self.producer.poll(0)

    def shutdown(self) -> None:
        """Finish: flush what was produced, commit stored offsets, leave the group, close targets."""
        try:
            self.deliveries.flush(self.producer, self.settings.drain_timeout_seconds * (1 - _DRAIN_SHARE))
            commit_quietly(self.consumer)
        finally:
            self.consumer.close()
            self._pool.shutdown(wait=False)
            for target in self.targets:
                target.close()
            log.info("sync stage stopped", group=self.group)


def settle_seconds(settings: Settings, target: str) -> float:
    """Zendesk applies update_many as a background job that can outlive a lost answer or a crash."""
    return settings.zendesk_job_timeout_seconds if target == "zendesk" else 0.0


def budget_limits(settings: Settings) -> dict[str, BudgetLimits]:
    return {
        "salesforce": BudgetLimits(settings.salesforce_budget_per_minute, settings.salesforce_budget_per_day),
        "zendesk": BudgetLimits(settings.zendesk_budget_per_minute, settings.zendesk_budget_per_day),
    }


def build_sync_stage(settings: Settings) -> SyncStage:
    """The real clients, built once: targets from settings, Redis for states and the budget."""
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=10, health_check_interval=30)
    states = RedisSyncStateStore(client, settings.key_prefix, settings.retention_seconds)
    budget = ApiBudget(client, settings.key_prefix, budget_limits(settings))
    return SyncStage(settings, build_targets(settings), states, budget)
