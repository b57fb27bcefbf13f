"""The sync stage: upserts topic → every enabled target; at least once, idempotent effects.

The consumer loop and the targets run apart, so a slow target holds back only its own work:
  1. consume; undecodable snapshots are produced to `<upserts>.dlq` with the reason;
  2. coalesce the batch to the newest version per interaction (strongest trigger kept) and put it
     into every target's queue, where it merges with work still waiting for that interaction;
     a target that does not want it is done with its records at once;
  3. each target's thread works off its queue (`worker.sync.target_runner`): it reads the stored
     version right before calling (re-consumed snapshots make no call), stores the outcome,
     dead-letters permanent failures, retries transient ones with back-off;
  4. per partition, the offset stored is the lowest one some target is not done with
     (`worker.sync.offsets`), and only after the producer is flushed and every delivery checked
     (so a dead letter is acknowledged before its record's offset moves); librdkafka commits
     stored offsets.
Memory stays bounded: when a target's queue reaches `sync_max_queued`, the consumer pauses its
partitions (still polling, so the group membership lives) and resumes at half of it.
Revocation: work of the revoked partitions still waiting is dropped, calls under way get up to
the drain share of `drain_timeout_seconds` to end, what is done is stored and committed.
Lost partitions: dropped, nothing stored or committed. SIGTERM: stop consuming, let the targets
work off their queues (no lingering) for the drain share, then flush, store, commit, leave.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import structlog
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from adapters.base import Failed, Target
from schemas.events import trace_context
from worker.errors import StoreError
from worker.kafka.clients import DeliveryTracker, Headers, commit_quietly, store_offsets
from worker.kafka.dead_letters import invalid_snapshot_headers, sync_failure_headers
from worker.runtime import metrics
from worker.runtime.settings import Settings
from worker.runtime.status import StageStatus
from worker.store.budget import Budget
from worker.store.sync_state import SyncStateStore
from worker.sync.batch import Pending, SyncRecord, coalesce, decode_snapshot, redact
from worker.sync.epoch import AbsenceRule
from worker.sync.offsets import OffsetLedger, Position
from worker.sync.target_runner import TargetRunner

log = structlog.get_logger("ilog.sync")

KEEP_MODELS_BELOW = 2_000
"""While every target's queue is shorter than this, queued snapshots stay decoded (a model is ~5 KB,
its bytes ~0.85 KB): each target then reads the model the consumer loop decoded instead of decoding
the bytes again. Longer queues keep bytes only, so a slow target can hold every open interaction."""
_DRAIN_SHARE = 0.6  # of drain_timeout_seconds spent finishing targets; the rest flushes and commits
_REVOKE_POLL_S = 0.05


def sync_record(message: Message) -> SyncRecord:
    value = message.value()
    snapshot, error = decode_snapshot(value)
    timestamp_type, timestamp_ms = message.timestamp()
    return SyncRecord(
        topic=message.topic() or "", partition=message.partition() or 0, offset=message.offset() or 0,
        timestamp_ms=timestamp_ms if timestamp_type != 0 and timestamp_ms > 0 else None,
        value=value, snapshot=snapshot, error=error, traceparent=message_trace(message),
    )


def message_trace(message: Message) -> str | None:
    """The upsert's `traceparent` header (the fold stage sets it from the event), when well-formed."""
    headers = message.headers()
    for key, raw in headers if isinstance(headers, list) else ():
        if key == "traceparent" and isinstance(raw, bytes):
            return trace_context(raw.decode("ascii", errors="replace"))
    return None


def positions_by_interaction(records: Sequence[SyncRecord]) -> dict[str, list[Position]]:
    """The records each interaction's coalesced snapshot answers for."""
    found: dict[str, list[Position]] = {}
    for record in records:
        if record.snapshot is not None:
            found.setdefault(record.snapshot.interaction_id, []).append(
                (record.topic, record.partition, record.offset))
    return found


def absence_rule(settings: Settings) -> AbsenceRule:
    """The sync state lives at least the retention (or the open-log TTL) after the first event."""
    state_ttl_s = min(settings.retention_seconds, settings.open_log_ttl_seconds)
    return AbsenceRule(margin_ms=int(settings.sync_epoch_margin_seconds * 1000), state_ttl_ms=int(state_ttl_s * 1000))


class SyncStage:
    def __init__(
        self, settings: Settings, targets: Sequence[Target], states: SyncStateStore, budget: Budget,
        consumer: Consumer, producer: Producer,
    ) -> None:
        self.settings = settings
        self.group = settings.sync_group
        self.targets = list(targets)
        self.states = states
        self.consumer = consumer
        self.producer = producer
        self.deliveries = DeliveryTracker()
        self.ledger = OffsetLedger()
        self.assigned_once = threading.Event()
        self.status = StageStatus("sync")  # heartbeat for /healthz; the composition root shares it with error_cb
        self.paused = False
        self.closing = False
        self.queued_most = 0  # the longest target queue, as of the last step
        self.runners = [
            TargetRunner(
                target, states, budget, self._dead_letter, on_done=self.ledger.done,
                settle_s=target.traits.settle_s, linger_s=target.traits.linger_s,
                linger_items=target.traits.linger_items, final_linger_s=target.traits.final_linger_s,
                max_call_items=settings.batch_size,
                pause_base_s=settings.target_pause_base_seconds,
                pause_ceiling_s=settings.target_pause_ceiling_seconds,
                max_pause_s=settings.max_pause_seconds(target.name), absence=absence_rule(settings),
                keep_models=self.keeps_models, concurrent_calls=target.traits.concurrent_calls,
                side_call_items=target.traits.side_call_items,
            )
            for target in self.targets
        ]

    def _start_epoch(self) -> None:
        """The sync epoch is created now unless the store has one; every batch read creates it too."""
        try:
            epoch_ms = self.states.start_epoch(int(time.time() * 1000))
        except StoreError as exc:  # the runners' first reads wait for Redis and create it then
            log.warning("sync epoch not read at start", error=str(exc))
            return
        log.info("sync epoch", epoch_ms=epoch_ms)

    def paused_targets(self) -> list[str]:
        """One line per paused target, for /readyz's body."""
        return [status for runner in self.runners if (status := runner.pause_status()) is not None]

    # -- group membership ---------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.assigned_once.set()
        log.info("partitions assigned", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Callbacks run inside consume: drop waiting work, let calls under way end, store what is done."""
        keys = {(tp.topic, tp.partition) for tp in partitions}
        for runner in self.runners:
            runner.queue.drop(keys, in_flight=False)
        # on close the targets had their drain already: what is still under way is not waited for
        wait_s = 0.0 if self.closing else self.settings.drain_timeout_seconds * _DRAIN_SHARE
        until_s = time.monotonic() + wait_s
        while any(r.queue.in_flight_of(keys) for r in self.runners) and time.monotonic() < until_s:
            time.sleep(_REVOKE_POLL_S)
        for runner in self.runners:
            runner.queue.drop(keys, in_flight=True)
        self.store_done(self.settings.drain_timeout_seconds)
        commit_quietly(self.consumer)
        self.ledger.forget(keys)
        metrics.forget_partitions(self.group, [tp.partition for tp in partitions])
        log.info("partitions revoked", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        keys = {(tp.topic, tp.partition) for tp in partitions}
        self.ledger.forget(keys)
        for runner in self.runners:
            runner.queue.drop(keys, in_flight=True)
        metrics.forget_partitions(self.group, [tp.partition for tp in partitions])
        log.warning("partitions lost; nothing committed", partitions=[tp.partition for tp in partitions])

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.consumer.subscribe(
            [self.settings.upserts_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        self._start_epoch()
        for runner in self.runners:
            runner.start()
        try:
            while not stop.is_set():
                self.step()
                metrics.LOOP_HEARTBEAT.labels("sync").set_to_current_time()
        finally:
            self.shutdown()

    def step(self) -> None:
        self.status.beat()
        self._check_runners()
        self._hold_back()
        messages = self.consumer.consume(self.settings.batch_size, self.settings.batch_timeout_seconds)
        records: list[SyncRecord] = []
        for message in messages:
            error = message.error()
            if error is None:
                records.append(sync_record(message))
            elif error.code() != KafkaError._PARTITION_EOF:
                log.error("consume error", error=error.str(), partition=message.partition())
        if records:
            self.dispatch(records)
        self.store_done(self.settings.drain_timeout_seconds)
        most = 0
        for runner in self.runners:
            queued = len(runner.queue)
            most = max(most, queued)
            metrics.SYNC_QUEUE_DEPTH.labels(runner.name).set(queued)
        self.queued_most = most

    def dispatch(self, records: Sequence[SyncRecord]) -> None:
        """Dead-letter what did not decode; queue the rest per target (or mark it done for the target)."""
        for record in records:
            decoded = record.snapshot is not None
            self.ledger.add((record.topic, record.partition, record.offset), len(self.runners) if decoded else 0)
            if not decoded:
                self._produce_dlq(record.value, None, invalid_snapshot_headers(record, record.error))
                log.error("undecodable snapshot; dead-lettered", partition=record.partition,
                          offset=record.offset, error=record.error)
        positions = positions_by_interaction(records)
        entries = coalesce(records)
        queued_s = time.monotonic()
        for runner in self.runners:
            for unwanted in runner.queue.put_entries(entries, positions, queued_s):
                self.ledger.done(unwanted)
        if not self.keeps_models():
            for entry in entries:  # every target has seen the model it wants to: from here the bytes wait
                entry.release()

    def keeps_models(self) -> bool:
        """Whether queued snapshots stay decoded (`KEEP_MODELS_BELOW`); read by the targets' threads too."""
        return self.queued_most < KEEP_MODELS_BELOW

    def store_done(self, flush_timeout_s: float) -> None:
        """Store the offsets every target is done up to, once what was produced is acknowledged."""
        moved = self.ledger.storable()
        if not moved:
            return
        self.deliveries.flush(self.producer, flush_timeout_s)
        store_offsets(self.consumer, moved)

    def _hold_back(self) -> None:
        """Pause consuming while a target's queue is too long; resume at half of the limit."""
        fullest = max(self.runners, key=lambda runner: len(runner.queue), default=None)
        longest = 0 if fullest is None else len(fullest.queue)
        limit = self.settings.sync_max_queued
        if not self.paused and longest < limit:
            return
        assignment = self.consumer.assignment()
        if self.paused and longest <= limit // 2:
            self.consumer.resume(assignment)
            self.paused = False
            log.info("consuming resumed", queued=longest)
            return
        self.consumer.pause(assignment)  # again while paused: newly assigned partitions too
        if not self.paused:
            self.paused = True
            log.info("consuming paused: a target's queue is full", target=fullest.name if fullest else None,
                     queued=longest, limit=limit)

    def _check_runners(self) -> None:
        for runner in self.runners:
            if runner.failure is not None:
                raise runner.failure

    def _dead_letter(self, entry: Pending, target: str, failed: Failed) -> None:
        self._produce_dlq(entry.snapshot.to_json_bytes(), entry.snapshot.interaction_id,
                          sync_failure_headers(entry.snapshot, entry.record, target, failed.code,
                                               redact(failed.message, entry.snapshot)))

    def _produce_dlq(self, value: bytes | None, key: str | None, headers: Headers) -> None:
        self.producer.produce(
            self.settings.upserts_dlq_topic, key=key, value=value, headers=list(headers),
            on_delivery=self.deliveries.callback,
        )
        self.producer.poll(0)

    def shutdown(self) -> None:
        """Let the targets work off their queues, then flush, store, commit, leave the group."""
        drain_s = self.settings.drain_timeout_seconds
        until_s = time.monotonic() + drain_s * _DRAIN_SHARE
        self.closing = True
        for runner in self.runners:
            runner.close_by(until_s)
        ended: list[bool] = []
        try:
            ended = [runner.join(until_s - time.monotonic()) for runner in self.runners]
            self.store_done(drain_s * (1 - _DRAIN_SHARE))
            commit_quietly(self.consumer)
        finally:
            self.consumer.close()
            for target, runner_ended in zip(self.targets, ended or [False] * len(self.targets), strict=True):
                # a target whose thread is still in a call is left open: closing it under the call would
                # fail the call (and log every record of it as a retry) for nothing, the process is ending
                if runner_ended:
                    target.close()
            log.info("sync stage stopped", group=self.group, targets_still_calling=ended.count(False))

