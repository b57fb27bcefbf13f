"""The fold stage: events topic → pure fold → Redis → upserts topic (and the DLQ), at least once.

Commit order, per batch (written down here because correctness depends on it):
  1. fold the batch and write the changed logs to Redis (one fenced, pipelined round trip);
  2. once Redis acknowledged the write: produce one snapshot per touched interaction and one DLQ
     message per rejection;
  3. flush the producer and check every delivery report;
  4. only then store the batch's offsets (librdkafka commits stored offsets), batch after batch.
A crash anywhere re-consumes the batch: the fold treats its events as duplicates and the same
snapshots are produced again (they carry their version, so consumers stay idempotent).
Finalization runs between batches: emit `finalized` snapshots, flush, then write tombstones. A tick
retried because Redis refused the tombstones (full, unreachable) does not emit the snapshots Kafka
acknowledged already; only a crash in between finalizes again (the same snapshot, at the same version).

Overlapped commit (`ILOG_FOLD_OVERLAP`, on by default; `worker.fold.inflight`). A full batch n's step 1
is sent and left in flight while the main thread reads, decodes and plans batch n+1: at most one batch
in flight. On one Redis node the script calls are sent and their answer read when n lands
(`RedisStore.send_write`: Redis runs them meanwhile, no thread); a cluster's write runs on one writer
thread. Plan n+1 reads the states write n will store (the overlay, in front of the state cache); it
stands only when write n stored exactly those. A write fenced out, refused for lost state or failed is
finished first as without overlap (re-read and re-folded, restored, waited out) and n+1 is planned again
on what the store holds; a write failing for good stops the stage before anything of n or n+1 is
produced or stored. Batch n lands in the next batch's step: its answer read, then its changelog
entries, snapshots and dead letters produced. Its offsets are stored after the next flush that covers
them: the finalizer's (when a tick closes windows) or, at the latest, the one made when n+1 lands,
before n+1's answer is read. A short batch (the consumer is caught up), or a batch in flight when a
consume brings nothing, is finished at once; a rebalance (assign, revoke, lost), the burst mode's end
and shutdown finish the batch in flight first. The finalizer's tick runs between landing batch n and
sending write n+1 (a Redis call made while a batch's script runs would wait behind it); the partition
clocks have n+1's event times by then, so a due window whose log batch n+1 touches (or the batch in
flight writes or emits, when the tick runs from elsewhere) is left for a later tick: closing later is
always allowed, earlier never.

Every state written (and every state a batch touched) is also produced to the state changelog
topic before the flush, so the changelog holds every state whose events' offsets are committed.
Redis down, Redis that lost its state, a flush Kafka does not acknowledge in time: see
`worker.fold.recovery` (the stage waits, restores from the changelog, retries; it does not exit).
Partition clocks follow the wall clock only on fresh evidence that a partition is read to its end
(`worker.fold.finalizer.PartitionClocks`): an EOF, or librdkafka's statistics (every second) showing
the partition read to its high watermark by a consumer whose leader broker answered recently.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from schemas.common import Trigger
from schemas.decode import Rejection
from worker.core.batch import BatchPlan, Record, TtlPolicy, plan_batch, record_trace, settle_snapshots
from worker.core.snapshot_json import EncodedSnapshot
from worker.core.writes import StateWrite, Stored
from worker.errors import DeliveryError, IlogError, KafkaClientError, StateLostError, StoreError, StoreUnavailableError
from worker.fold.finalizer import ClosePlan, PartitionClocks, evidence_lead_ms, plan_closes
from worker.fold.inflight import AwaitingDelivery, InFlight, Overlay, Planned, StoreWriter, written_now
from worker.fold.recovery import (
    StateChangelog,
    StateRestorer,
    StoppingError,
    StoreGuard,
    Waiter,
    flush_until_acknowledged,
)
from worker.fold.regressions import RegressionRepair
from worker.kafka.clients import (
    DeliveryTracker,
    commit_quietly,
    decode_messages,
    partitions_at_end,
    statistics_age_ms,
    store_offsets,
)
from worker.kafka.dead_letters import rejection_message
from worker.runtime import metrics
from worker.runtime.logs import trace_fields
from worker.runtime.settings import Settings
from worker.runtime.status import StageStatus
from worker.store.cache import StateCache
from worker.store.port import LogStore, WriteResult

log = structlog.get_logger("ilog.fold")

_FENCE_ATTEMPTS = 3
_FINALIZE_EVERY_S = 0.2
_CLOSES_PER_TICK = 500  # per partition
_FRESH_MS = 5_000  # evidence older than this does not let the clock follow the wall clock
# a window closed later than deadline + grace + this counts as late (`ilog_windows_closed_late_total`): a
# caught-up clock trails the wall clock when the broker's last answer is older than the lead, a tick every 0.2 s
_LATE_AFTER_S = 3.0
_OPEN_WINDOWS_EVERY_S = 5.0  # `ilog_open_windows` is counted again at least this often (one ZCARD per partition)
_TRIGGER_HEADERS: dict[Trigger, tuple[str, str | bytes | None]] = {t: ("trigger", t.value.encode()) for t in Trigger}


def wall_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class FoldOptions:
    """How a fold stage runs: live (default), or as a replay that stops at the end of its input."""

    group: str | None = None
    burst: bool = False  # stop when every partition is at its end and no window is due
    # False (replays): close windows by event time, the messages' Kafka timestamps standing in for the
    # wall clock of the time replayed (the clock's cap and the `future_time` reference)
    follow_wall_clock: bool = True
    stop_offsets: dict[int, int] | None = None  # replay: stop each partition at this offset
    # replay: assign these partitions at these offsets instead of joining the group by subscribing
    start_offsets: dict[int, int] | None = None
    dlq_topic: str | None = None  # where rejections go (default: `<events topic>.dlq`)
    # replay: once a partition reached its stop offset, its clock jumps to this wall-clock time (the
    # replay's start), closing every window whose deadline + grace lies before it; later ones stay open
    end_clock_ms: int | None = None
    # replay: produce the snapshots of only the interactions this answers True for (the others are folded
    # and finalized in the store, not emitted: `worker.ops.replay` folds the range's ends whole this way)
    emit_only: Callable[[str], bool] | None = None
    # replay: fold the events (and dead-letter the rejections) of only the interactions this answers True
    # for; the rest is read past (the lead-out after --to folds only the range's interactions)
    fold_only: Callable[[str | None], bool] | None = None


class FoldStage:
    def __init__(
        self, settings: Settings, store: LogStore, consumer: Consumer, producer: Producer,
        options: FoldOptions | None = None, *, status: StageStatus | None = None,
        changelog_reader: Consumer | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.options = options or FoldOptions()
        # live: a group member that keeps the changelog and guards its writes; a replay does neither
        self.live = self.options.start_offsets is None
        self.clocks = (
            PartitionClocks(fresh_ms=_FRESH_MS, settle_ms=int(settings.broker_settle_seconds * 1000),
                            lead_ms=evidence_lead_ms(settings.finalize_grace_seconds))
            if self.live and self.options.follow_wall_clock else PartitionClocks()
        )
        self.ttl = TtlPolicy(
            retention_ms=int(settings.retention_seconds * 1000),
            open_log_ttl_ms=int(settings.open_log_ttl_seconds * 1000),
        )
        self.group = self.options.group or settings.fold_group
        self.consumer = consumer
        self.producer = producer
        self.deliveries = DeliveryTracker(dead_letter_refused=True)  # one oversized message stops nothing
        self.assigned_once = threading.Event()
        self.dlq_topic = self.options.dlq_topic or settings.events_dlq_topic
        self.positions: dict[int, int] = {}  # next offset to read, per partition (progress reports)
        self._last_finalize = 0.0
        self._last_open_windows = 0.0
        # the states this consumer wrote last, so a batch loads from Redis only what it has not seen
        self.cache = StateCache(settings.state_cache_entries)
        self.status = status or StageStatus("fold")
        self.waiter = Waiter(self.status, threading.Event(), settings.store_retry_max_seconds)
        self.changelog = (StateChangelog(producer, settings.state_changelog_topic, self.deliveries, self.ttl)
                          if self.live else None)
        restorer = (StateRestorer(store, changelog_reader, settings.state_changelog_topic)
                    if self.live and changelog_reader is not None else None)
        self.guard = StoreGuard(store, restorer, consumer, settings.events_topic, self.waiter)
        self.guard.on_restored = self._restored
        # after a Redis outage or a restore, a window closes by the wall clock only once the consumer has read
        # to the end again: an in-window edit produced meanwhile waits in Kafka (docs/design.md)
        self.guard.on_outage = self.clocks.suspend
        self._restores = 0
        self.regressions = RegressionRepair(store, restorer, self.status.beat)
        self._trouble_seen = 0.0
        # the overlapped commit (module docstring): at most one batch in flight, its states in the overlay
        self.overlap = settings.fold_overlap
        self.writer = StoreWriter(store)
        self.overlay = Overlay()
        self.in_flight: InFlight | None = None
        self._planned_ahead: frozenset[str] = frozenset()  # the next batch's logs, planned, not yet sent
        self.awaiting = AwaitingDelivery()
        # final snapshots Kafka acknowledged whose tombstones are not stored yet: id → (partition, version).
        # A tick retried while Redis refuses the tombstones (full, unreachable) does not produce them again.
        self._finals_acknowledged: dict[str, tuple[int, int]] = {}
        # a restore reads the changelog to its end: the entries of batches landed before must be in it
        self.guard.before_restore = self._confirm

    # -- group membership -------------------------------------------------------------------
    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Before anything is read: the store must hold these partitions' state (or restore it)."""
        self.drain()  # a restore writes and drops cache entries: nothing of ours in flight meanwhile
        owned = [tp.partition for tp in partitions]
        self.guard.call(lambda: self.guard.repair(owned), self.clocks.owned)
        self.clocks.assign(owned)
        # statistics served before this assignment describe an earlier one (app_offset of a previous
        # ownership, a high watermark since moved by another member): no evidence about these partitions
        self.status.take_stats()
        self.assigned_once.set()
        log.info("partitions assigned", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The batch in flight lands, its snapshots are acknowledged and its offsets stored (callbacks run
        inside consume, so no batch is half planned); then commit and hand over."""
        self.drain()
        commit_quietly(self.consumer)
        self.clocks.revoke(tp.partition for tp in partitions)
        self.cache.drop_partitions(tp.partition for tp in partitions)
        self._forget_finals(tp.partition for tp in partitions)
        metrics.forget_partitions(self.group, [tp.partition for tp in partitions])
        log.info("partitions revoked", partitions=[tp.partition for tp in partitions], group=self.group)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """The batch in flight still lands (its write may have been stored; it must not stay half done
        for partitions still owned), but no offset of a lost partition is stored."""
        self.drain(skip_partitions=frozenset(tp.partition for tp in partitions))
        self.clocks.revoke(tp.partition for tp in partitions)
        self.cache.drop_partitions(tp.partition for tp in partitions)
        self._forget_finals(tp.partition for tp in partitions)
        metrics.forget_partitions(self.group, [tp.partition for tp in partitions])
        log.warning("partitions lost; nothing committed", partitions=[tp.partition for tp in partitions])

    # -- the loop -----------------------------------------------------------------------------
    def run(self, stop: threading.Event, after_step: Callable[[], None] | None = None) -> None:
        self.waiter.stop = stop
        if self.options.start_offsets is not None:
            self._assign_explicitly(self.options.start_offsets)
        else:
            self.consumer.subscribe(
                [self.settings.events_topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
        try:
            while not stop.is_set():
                self.step()
                metrics.LOOP_HEARTBEAT.labels("fold").set_to_current_time()
                if after_step is not None:
                    after_step()
                if self.options.burst and self._drained():
                    break
        except StoppingError:
            log.info("stopped while waiting; the batch in hand is read again by the next owner")
        finally:
            self.shutdown()

    def _assign_explicitly(self, start_offsets: dict[int, int]) -> None:
        """Replay: own exactly these partitions from these offsets; no group membership, no rebalances."""
        topic = self.settings.events_topic
        self.consumer.assign([TopicPartition(topic, p, offset) for p, offset in sorted(start_offsets.items())])
        self.clocks.assign(start_offsets)
        self.positions.update(start_offsets)
        stops = self.options.stop_offsets or {}
        empty = [p for p, offset in start_offsets.items() if p in stops and offset >= stops[p]]
        for partition in empty:  # nothing to read there: done from the start
            self.clocks.reached_end(partition)
        if empty:
            self.consumer.pause([TopicPartition(topic, p) for p in empty])
        self.assigned_once.set()
        log.info("partitions assigned", partitions=sorted(start_offsets), group=self.group, explicit=True)

    def step(self) -> None:
        """One iteration: consume a batch, fold and persist it, close due windows."""
        self.status.beat()
        # with a batch in flight, take only what is fetched already: nothing more means the batch in
        # flight is finished now rather than after a consume timeout
        timeout_s = 0.0 if self.in_flight is not None else self.settings.batch_timeout_seconds
        messages = self.consumer.consume(self.settings.fold_batch_size, timeout_s)
        # evidence of being caught up dates from the fetch, not from after the batch (which may have
        # waited minutes for Redis or for Kafka's acknowledgements)
        fetched_ms = wall_ms()
        records, at_end = self._read(messages, fetched_ms)
        if self.live and self.options.follow_wall_clock:
            self._note_stats(fetched_ms)
        finished: list[int] = []
        if records:
            records, finished = self._within_stop_offsets(records)
        if records:
            self.process(records)
        elif self.in_flight is not None or self.awaiting.batches:
            self.drain()
        for partition in [*at_end, *finished]:  # after `process`, which marks the partitions it read as behind
            self.clocks.reached_end(partition, fetched_ms)
        # with a batch in flight the tick runs inside `process`, before the next write is sent: a Redis
        # call made while a batch's script runs would wait behind it
        if self.in_flight is None and self._finalize_is_due():
            self._finalize_tick()

    def _finalize_is_due(self) -> bool:
        """Every `_FINALIZE_EVERY_S`, a replay's burst too: a tick's round trips (the store check, the due
        windows, the open-window count, the flush) are paid per tick, and closing later is always allowed."""
        return time.monotonic() - self._last_finalize >= _FINALIZE_EVERY_S

    def _finalize_tick(self) -> None:
        self.finalize_due()
        self._last_finalize = time.monotonic()

    def _restored(self, partitions: list[int]) -> None:
        self._restores += 1
        self.cache.drop_partitions(partitions)

    def _read(self, messages: list[Message], fetched_ms: int) -> tuple[list[Record], list[int]]:
        """Decoded records and partitions at their end; what the consume says about the broker goes to the clocks."""
        if self.status.broker_trouble_at > self._trouble_seen:  # error_cb ran inside consume
            self._trouble_seen = self.status.broker_trouble_at
            self.clocks.suspend()
        records, others = decode_messages(messages)
        at_end: list[int] = []
        for message in others:
            error = message.error()
            if error is None:
                continue
            if error.code() == KafkaError._PARTITION_EOF:
                partition = message.partition() or 0
                at_end.append(partition)
                self.clocks.eof_read(partition, message.offset() or 0)
            else:
                self.clocks.suspend()
                log.error("consume error", error=error.str(), partition=message.partition())
        if records or at_end:
            self.status.kafka_fetched()
            self.clocks.fetched(fetched_ms)
        return records, at_end

    def _note_stats(self, now: int) -> None:
        """librdkafka's statistics (every 250 ms): partitions read to their end while their leader answers
        are caught up (fresh evidence for an idle partition, which gets no new EOF); a leader that does
        not answer suspends wall-clock following (a broker that hangs sends no connection error)."""
        stats = self.status.take_stats()
        if stats is None:
            return
        ends, silent = partitions_at_end(stats, self.settings.events_topic, self.clocks.owned(),
                                         self.clocks.eofs_read())
        if silent:
            self.clocks.suspend()
            return
        self.clocks.fetched(now)
        taken_ms = now - statistics_age_ms(stats)
        for partition, idle_us in ends.items():  # at its end as of its leader's last answer, not as of now
            self.clocks.reached_end(partition, taken_ms - idle_us // 1000)

    def process(self, records: Sequence[Record]) -> None:
        """Plan the batch (ahead, while the batch before it is in flight), land the batch in flight, send this
        one's write. A batch shorter than `fold_batch_size` (the consumer is caught up) is finished at once."""
        started = time.perf_counter()
        metrics.EVENTS_CONSUMED.inc(len(records))
        ahead = self._plan_ahead(records)
        if not self._land() or ahead is None:  # the write in flight did not store what `ahead` was planned on
            ahead = self.guard.call(lambda: self._plan(records), self.clocks.owned)
        finish_now = not self.overlap or len(records) < self.settings.fold_batch_size
        for partition, event_time in ahead.plan.max_event_time.items():
            self.clocks.observe(partition, int(event_time.timestamp() * 1000))
        if not finish_now and self._finalize_is_due():
            ahead = self._finalize_before_sending(ahead)
        self._send(ahead, started, overlapped=not finish_now)
        if finish_now:
            self.drain()

    def _finalize_before_sending(self, ahead: Planned) -> Planned:
        """The finalizer's tick between the landed batch and the next one's write (nothing in flight). The
        clocks have the next batch's events, so its logs are left for a later tick; the plan stands unless
        a restore replaced states it read."""
        restores = self._restores
        self._planned_ahead = frozenset(ahead.partition_of)
        try:
            self._finalize_tick()
        finally:
            self._planned_ahead = frozenset()
        if self._restores == restores:
            return ahead
        return self.guard.call(lambda: self._plan(ahead.records), self.clocks.owned)

    def _plan_ahead(self, records: Sequence[Record]) -> Planned | None:
        """The plan made while a write is in flight (on its overlay); None when a store read failed (the
        batch is planned again once the write in flight has landed, where outages are waited out)."""
        if self.in_flight is None:
            return None
        try:
            return self._plan(records)
        except StoreError as exc:
            log.info("planning ahead failed; planning again after the batch in flight", error=str(exc))
            return None

    def _plan(self, records: Sequence[Record]) -> Planned:
        # an interaction's partition is the one its events arrive on
        partition_of = {r.item.subject: r.partition for r in records if not isinstance(r.item, Rejection)}
        now_ms = wall_ms()
        loaded = self._load(partition_of, now_ms)
        plan = plan_batch(
            records, loaded, edit_window_s=self.settings.edit_window_seconds,
            applied_ids_kept=self.settings.applied_ids_kept, ttl=self.ttl, now_ms=now_ms,
            max_skew_ms=int(self.settings.max_clock_skew_seconds * 1000),
            max_snapshot_bytes=self.settings.max_snapshot_bytes, message_clock=not self.options.follow_wall_clock,
            # a full batch is overlapped (it lands at the next step): its snapshots are written on the compiled
            # core's thread meanwhile; a short one (the consumer caught up) lands at once, so they are written here
            defer_snapshots=self.overlap and len(records) >= self.settings.fold_batch_size,
        )
        return Planned(records, partition_of, loaded, plan, now_ms)

    def _send(self, planned: Planned, started_s: float, *, overlapped: bool) -> None:
        """Send the batch's write (`overlapped`: its states held in the overlay, the answer read when it
        lands; else written here)."""
        writes = planned.plan.writes
        # every partition the batch folds events of (owned, so its marks must be there): its writes' partitions and
        # perhaps one whose events were all duplicates, read in C rather than looked up per write
        guard = self._guarded(planned.partition_of.values())
        if overlapped and writes:
            self.overlay.hold(writes)
            # one Redis node: sent now, the answer read when the batch lands; else on the writer thread
            write = self.store.send_write(writes, guard) or self.writer.submit(writes, guard)
        else:
            write = written_now(self.store, writes, guard)
        self.in_flight = InFlight.sent(planned, write, started_s)

    def _land(self) -> bool:
        """Finish the batch in flight up to its snapshots: its write acknowledged (fenced-out interactions
        folded again, an outage waited out, lost state restored and the batch redone), then its changelog
        entries, snapshots and dead letters produced. True when the store holds exactly the planned states
        (a plan made on the overlay stands)."""
        flight = self.in_flight
        if flight is None:
            return True
        self._confirm()  # the batch before: its deliveries have had a whole plan to arrive
        self.in_flight = None
        self.overlay.clear()
        records = flight.planned.records
        try:
            plan, clean = self._fold_and_persist(records, first=flight)
        except (StoreUnavailableError, StateLostError):
            clean = False
            plan, _ = self.guard.call(lambda: self._fold_and_persist(records), self.clocks.owned)
        self._emit(plan.snapshots)
        self._dead_letter(plan)
        self.awaiting.add(records)
        for trigger, count in plan.accepted.items():
            metrics.EVENTS_FOLDED.labels(trigger.value).inc(count)
        metrics.EVENTS_DUPLICATE.inc(plan.duplicates)
        metrics.BATCH_SECONDS.observe(time.perf_counter() - flight.started_s)
        return clean

    def drain(self, skip_partitions: frozenset[int] = frozenset()) -> None:
        """Land the batch in flight, wait for every delivery report, store the offsets (not of `skip_partitions`)."""
        self._land()
        self._confirm(skip_partitions)

    def _confirm(self, skip_partitions: frozenset[int] = frozenset()) -> None:
        """Flush, then store the offsets of every batch whose snapshots were produced before the flush."""
        if not self.awaiting.batches:
            return
        self._flush()
        self._store_offsets(self.awaiting.take(skip_partitions))

    def _fold_and_persist(
        self, records: Sequence[Record], first: InFlight | None = None,
    ) -> tuple[BatchPlan, bool]:
        """Fold and write; interactions fenced out (a newer version was stored) are re-read and re-folded.
        `first`: the first attempt, planned and sent already. (the plan, whether the first attempt stored
        everything it planned)"""
        combined = BatchPlan()
        pending = list(records)
        for attempt in range(_FENCE_ATTEMPTS):
            if attempt == 0 and first is not None:
                planned, write = first.planned, first.write
            else:
                planned = self._plan(pending)
                write = self._write_here(planned)
            partition_of, plan = planned.partition_of, planned.plan
            fenced = set(self._write_through(plan.writes, partition_of.__getitem__, planned.now_ms, write))
            _merge_plan(combined, settle_snapshots(plan), fenced, first=attempt == 0)  # payloads from the thread
            self._record_unchanged(planned.loaded, {w.interaction_id for w in plan.writes}, partition_of,
                                   planned.now_ms)
            if not fenced:
                return combined, attempt == 0
            metrics.FENCED_WRITES.inc(len(fenced))
            log.warning("fenced out; re-reading", interactions=sorted(fenced)[:10], count=len(fenced))
            pending = [r for r in pending if not _is_rejection(r) and r.item.subject in fenced]
        raise StoreError(f"interactions kept moving under this consumer: {sorted(fenced)[:10]}")

    def _write_here(self, planned: Planned) -> Callable[[], WriteResult]:
        writes = planned.plan.writes
        return lambda: self.store.write(
            writes, self._guarded(planned.partition_of[w.interaction_id] for w in writes))

    def _store_offsets(self, stored: dict[tuple[str, int], int]) -> None:
        if not stored:
            return
        try:
            store_offsets(self.consumer, stored)
        except KafkaClientError as exc:  # the partitions moved on while the batch waited (for Redis, say)
            log.warning("offsets not stored; the partitions' new owner reads the batch again", error=str(exc))
            return
        self.positions.update({partition: offset for (_topic, partition), offset in stored.items()})

    def _flush(self) -> None:
        flush_until_acknowledged(self.deliveries, self.producer, self.settings.drain_timeout_seconds, self.waiter)

    def _guarded(self, partitions: Iterable[int]) -> list[int]:
        """The partitions a write must find marked (a live stage's own); none for a replay."""
        return sorted(set(partitions)) if self.live else []

    def _load(self, interaction_ids: Iterable[str], now_ms: int) -> dict[str, Stored]:
        """States through the overlay (the write in flight), then the state cache, then Redis."""
        ahead = self.overlay.writes
        if not ahead:
            return self.cache.load_through(self._load_stored, interaction_ids, now_ms)
        ids = list(interaction_ids)
        found = self.overlay.found(ids)
        found.update(self.cache.load_through(self._load_stored, [i for i in ids if i not in ahead], now_ms))
        return found

    def _load_stored(self, interaction_ids: Iterable[str]) -> dict[str, Stored]:
        """From the store, open logs held as their documents where the compiled fold folds those (`held_log`)."""
        return self.store.load(interaction_ids, held=True)

    def _write_through(
        self, writes: Sequence[StateWrite], partition_of: Callable[[str], int], now_ms: int,
        write: Callable[[], WriteResult] | None = None,
    ) -> list[str]:
        """Write to the store (or take the answer of the write `write` sent) and mirror the result in the
        cache; the ids fenced out. States found to have gone backwards are repaired
        (`worker.fold.regressions`) before the caller folds them again."""
        if not writes:
            return []
        try:
            if write is None:
                result = self.store.write(writes, self._guarded(partition_of(item.interaction_id) for item in writes))
            else:
                result = write()
        except BaseException:
            # some writes of the round trip may have landed: forget them all, Redis is the truth
            self.cache.evict(item.interaction_id for item in writes)
            raise
        fenced = result.fenced_out
        held = self.cache.held(result.regressed, now_ms)  # what this consumer last wrote, before eviction
        self.cache.written(writes, fenced, partition_of, now_ms)
        if result.regressed:
            self.regressions.repair(result.regressed, held, partition_of)
        if self.changelog is not None:
            self.changelog.record_writes(writes, set(fenced), partition_of)
        return fenced

    def _record_unchanged(
        self, loaded: dict[str, Stored], written: set[str], partition_of: dict[str, int], now_ms: int,
    ) -> None:
        """States a batch touched without changing them go to the changelog again: a crash may have lost
        their last changelog copy while Redis kept the write (the re-read events are duplicates now)."""
        if self.changelog is not None:
            self.changelog.record(
                ((partition_of[i], i, stored.state, None, None) for i, stored in loaded.items()
                 if stored.state is not None and i not in written and i in partition_of), now_ms,
            )

    def _emit(self, snapshots: Sequence[tuple[int, EncodedSnapshot]]) -> None:
        emitted: dict[Trigger, int] = {}  # per trigger: one metric update per batch, not per snapshot
        # once per snapshot: the producer called here (not through `DeliveryTracker.produce`), header tuples reused
        produce, callback, topic = self.producer.produce, self.deliveries.callback, self.settings.upserts_topic
        if self.options.emit_only is not None:
            snapshots = [s for s in snapshots if self.options.emit_only(s[1].interaction_id)]
        for _partition, snap in snapshots:
            trigger = snap.trigger
            headers: list[tuple[str, str | bytes | None]] = [_TRIGGER_HEADERS[trigger],
                                                              ("version", b"%d" % snap.version)]
            if snap.traceparent is not None:
                headers.append(("traceparent", snap.traceparent.encode()))
            try:
                produce(topic, key=snap.interaction_id, value=snap.payload, headers=headers, on_delivery=callback)
            except KafkaException as exc:
                self.deliveries.refused_at_produce(exc, topic, snap.interaction_id, snap.payload, headers)
            emitted[trigger] = emitted.get(trigger, 0) + 1
        # delivery reports are served once per batch (the caller flushes next), not once per message
        self.producer.poll(0)
        for trigger, count in emitted.items():
            metrics.SNAPSHOTS_EMITTED.labels(trigger.value).inc(count)

    def _dead_letter(self, plan: BatchPlan) -> None:
        for record, rejection in plan.rejections:
            value, headers = rejection_message(record, rejection, self.settings.dlq_max_value_bytes)
            self.deliveries.produce(self.producer, self.dlq_topic, rejection.subject, value, headers)
            metrics.EVENTS_REJECTED.labels(rejection.reason.value).inc()
            log.warning(
                "event rejected", reason=rejection.reason.value, detail=rejection.message,
                event_id=rejection.event_id, interaction_id=rejection.subject,
                partition=record.partition, offset=record.offset, **trace_fields(record_trace(record)),
            )

    def finalize_due(self) -> None:
        """Close every due window of every owned partition: emit, flush, then write the tombstones.

        All partitions together: one round trip finds what is due, one flush and one write round
        trip close it (per partition these were paid every step, even with nothing to close).
        A live stage first checks that the store still holds its partitions (an idle partition
        notices a lost store here), and restores them if not."""
        self.guard.call(self._finalize_due_once, self.clocks.owned)

    def _finalize_due_once(self) -> None:
        if self.live:
            self.guard.check(self.clocks.owned())
        now = wall_ms()
        grace_ms = int(self.settings.finalize_grace_seconds * 1000)
        clocks = {p: self._clock_ms(p, now) for p in self.clocks.owned()}
        if not clocks:
            return
        due = self.store.due_many({p: clock - grace_ms for p, clock in clocks.items()}, _CLOSES_PER_TICK)
        # a log the next batch (planned) or the batch in flight touches closes at a later tick, once that
        # batch has landed: never before its events (or its snapshot); the write in flight stays in flight
        later = self._planned_ahead | (self.in_flight.emitting if self.in_flight is not None else frozenset())
        if later:
            due = {p: [(i, d) for i, d in entries if i not in later] for p, entries in due.items()}
        plans = {
            partition: plan_closes(
                self.store, partition, clocks[partition], grace_ms=grace_ms, ttl=self.ttl, now_ms=now,
                load=lambda ids: self._load(ids, now), due=entries,
            )
            for partition, entries in due.items() if entries
        }
        writes = [item for plan in plans.values() for item in plan.writes]
        if not writes:
            self._report_open_windows(list(clocks), force=False)
            return
        finals = [snap for plan in plans.values() for snap in plan.snapshots
                  if self._finals_acknowledged.get(snap[1].interaction_id) != (snap[0], snap[1].version)]
        self._emit(finals)
        self._flush()
        self._finals_acknowledged.update({snap.interaction_id: (p, snap.version) for p, snap in finals})
        self._store_offsets(self.awaiting.take())  # the batches produced before: acknowledged by the same flush
        on_partition = {item.interaction_id: p for p, plan in plans.items() for item in plan.writes}
        fenced = self._write_through(writes, on_partition.__getitem__, now)
        for item in writes:  # stored, or moved on under another writer: either way not ours to close again
            self._finals_acknowledged.pop(item.interaction_id, None)
        if fenced:
            metrics.FENCED_WRITES.inc(len(fenced))
        self._closed(plans, now, {p: clocks[p] for p in plans})
        self._report_open_windows(list(clocks), force=True)

    def _forget_finals(self, partitions: Iterable[int]) -> None:
        gone = set(partitions)
        for interaction_id in [i for i, (p, _v) in self._finals_acknowledged.items() if p in gone]:
            del self._finals_acknowledged[interaction_id]

    def _closed(self, plans: dict[int, ClosePlan], now_ms: int, clocks: dict[int, int]) -> None:
        """Metrics and one log line per partition and tick (not per window) for the windows closed."""
        late_ms = int((self.settings.finalize_grace_seconds + _LATE_AFTER_S) * 1000)
        for partition, plan in plans.items():
            for _interaction_id, deadline_ms in plan.closed:
                metrics.WINDOWS_CLOSED.inc()
                if now_ms - deadline_ms > late_ms and self.options.follow_wall_clock:
                    metrics.WINDOWS_CLOSED_LATE.inc()
            if plan.closed:
                log.info("window closed", partition=partition, count=len(plan.closed), clock_ms=clocks[partition],
                         interaction_ids=[interaction_id for interaction_id, _ in plan.closed[:10]])

    def _report_open_windows(self, partitions: list[int], *, force: bool) -> None:
        """`ilog_open_windows` of every owned partition: a disconnect opens a window in the batch write, not
        here, so the count is read again every few seconds as well as after windows closed."""
        if not force and time.monotonic() - self._last_open_windows < _OPEN_WINDOWS_EVERY_S:
            return
        for partition, count in self.store.open_windows_many(partitions).items():
            metrics.OPEN_WINDOWS.labels(str(partition)).set(count)
        self._last_open_windows = time.monotonic()

    def _within_stop_offsets(self, records: list[Record]) -> tuple[list[Record], list[int]]:
        """(records before the stop offsets, partitions that reached theirs: paused, read no further).

        The caller marks the finished partitions caught up after folding the batch, because folding
        marks every partition it read as behind. A replay's clocks take the message timestamps of every
        record before the stop offsets, those `fold_only` reads past too.
        """
        stops = self.options.stop_offsets
        if stops is None:
            self._note_message_times(records)
            return records, []
        kept = [r for r in records if r.offset < stops.get(r.partition, 0)]
        self._note_message_times(kept)
        if self.options.fold_only is not None:
            kept = [r for r in kept if self.options.fold_only(r.item.subject)]
        finished = sorted({r.partition for r in records if r.offset + 1 >= stops.get(r.partition, 0)})
        if finished:
            topic = self.settings.events_topic
            self.consumer.pause([TopicPartition(topic, p) for p in finished])
        return kept, finished

    def _note_message_times(self, records: Sequence[Record]) -> None:
        """A replay's clocks may run up to the newest message timestamp read (of the messages it reads past
        too: the live wall clock went on while they came); a live stage's follow the wall clock."""
        if self.options.follow_wall_clock:
            return
        self.clocks.observe_messages([(record.partition, record.timestamp_ms) for record in records])

    def _drained(self) -> bool:
        """Every owned partition is at its end (or stop offset) and no window is due."""
        owned = self.clocks.owned()
        if not owned or not all(self.clocks.is_caught_up(p) for p in owned):
            return False
        self.drain()
        now = wall_ms()
        grace_ms = int(self.settings.finalize_grace_seconds * 1000)
        due = self.store.due_many({p: self._clock_ms(p, now) - grace_ms for p in owned}, 1)
        return not any(due.values())

    def _clock_ms(self, partition: int, now_ms: int) -> int:
        """The partition's clock: event time, or wall-clock once caught up (live); a replay's partition
        that reached its stop offset moves to the replay's start (`end_clock_ms`), never further."""
        clock = self.clocks.clock_ms(partition, now_ms, follow_wall_clock=self.options.follow_wall_clock)
        end_ms = self.options.end_clock_ms
        if end_ms is not None and self.clocks.is_caught_up(partition):
            return max(clock, end_ms)
        return clock

    def shutdown(self) -> None:
        """Finish: land the batch in flight, flush what was produced, commit stored offsets, leave the group."""
        try:
            self.drain()
        except IlogError as exc:  # stopped while waiting, or the store failed: the batch is read again
            log.warning("closing with the batch in flight not landed; its offsets are not stored", error=str(exc))
        finally:
            self.writer.close()
        try:
            self.deliveries.flush(self.producer, self.settings.drain_timeout_seconds)
            commit_quietly(self.consumer)
        except DeliveryError as exc:  # not acknowledged: the stored offsets are older, the batch is read again
            log.warning("closing with deliveries not acknowledged", error=str(exc))
            commit_quietly(self.consumer)
        finally:
            self.consumer.close()
            log.info("fold stage stopped", group=self.group)


def _is_rejection(record: Record) -> bool:
    return isinstance(record.item, Rejection)


def _merge_plan(combined: BatchPlan, plan: BatchPlan, fenced: set[str], *, first: bool) -> None:
    combined.snapshots.extend(s for s in plan.snapshots if s[1].interaction_id not in fenced)
    for record, rejection in plan.rejections:
        decode_failure = isinstance(record.item, Rejection)
        if (decode_failure and first) or (not decode_failure and rejection.subject not in fenced):
            combined.rejections.append((record, rejection))
    for trigger, count in plan.accepted.items():
        combined.accepted[trigger] = combined.accepted.get(trigger, 0) + count
    combined.duplicates += plan.duplicates
    for partition, event_time in plan.max_event_time.items():
        newest = combined.max_event_time.get(partition)
        if newest is None or event_time > newest:
            combined.max_event_time[partition] = event_time
