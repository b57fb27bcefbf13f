"""The fold stage's answer to a state store that is down or has lost its state, and to a broker outage.

State is a copy; Kafka is the truth. The fold stage keeps its state in Redis for speed and a copy of
every state it writes in a compacted Kafka topic, the state changelog (`<events topic>.state`,
partitioned like the events topic: an interaction's state goes to the partition its events arrive
on, keyed by interaction id), as Kafka Streams keeps a changelog of its state stores.

Why a changelog and not a refold of the events topic from the oldest open log: a refold must
rebuild tombstones of logs finalized long ago (or late events resurrect them), re-emits snapshots
and re-closes windows, and needs the events topic's retention to reach back to the oldest open log;
a compacted changelog gives back exactly the states as they were (logs, tombstones, applied ids,
versions), needs no event replay, emits nothing and closes nothing twice. Its cost: one more
produced message per interaction a batch touches, and one more topic to operate.

Detection. Redis holds a mark per partition (`worker.store.keys.marks_key`): "this store holds
partition p's state". Every fenced write of the stage is guarded by its partitions' marks in the
same script call (no extra round trip), and the finalizer reads the marks of the owned partitions
once per tick, so an idle partition notices too. A partition without a mark is either new to the
group (no committed offset: it is marked, nothing to restore) or lost (committed offsets exist:
its state is restored from the changelog before anything is folded or closed; the write in hand is
folded again against the restored states). `/readyz` says "restoring" meanwhile. A broker that does not
answer while the changelog is read is waited for (with backoff), and the partition read again.

Lost writes the marks cannot see (an asynchronous failover that kept them): `worker.fold.regressions`.

Redis unreachable: every store call of the stage waits with backoff (up to
`store_retry_max_seconds` between attempts, one log line per period, `ilog_store_unavailable` = 1,
`/readyz` false) and retries; the batch in hand is kept and its offsets are stored only after it
lands. Kafka not acknowledging a flush in time: the flush is retried (the producer keeps
resending), never fatal.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

import structlog
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from worker.core.batch import TtlPolicy
from worker.core.state import InteractionLog, StoredLog, Tombstone
from worker.core.writes import State, StateWrite
from worker.errors import DeliveryTimeoutError, IlogError, StateLostError, StoreError, StoreUnavailableError
from worker.kafka.clients import DeliveryTracker
from worker.runtime import metrics
from worker.runtime.status import StageStatus
from worker.store.port import LogStore
from worker.store.wire import decode_state, encode_state

log = structlog.get_logger("ilog.fold")

T = TypeVar("T")

_FIRST_DELAY_S = 0.1
_LOG_EVERY_S = 30.0
_LOST_IN_A_ROW = 3  # a restore that does not stick: give up rather than loop
_RESTORE_CHUNK = 1_000
_KAFKA_TIMEOUT_S = 10.0
HEADER_KIND = "k"
"""Written by earlier versions beside the TTL (and still read): a document says its kind itself (`decode_state`)."""
HEADER_TTL_MS = "ttl_ms"


class StoppingError(IlogError):
    """The stage was asked to stop while it waited; the batch in hand is left for the next owner."""


class Waiter:
    """Backoff waits that beat the heartbeat, log once per period and give up when the stage stops."""

    def __init__(self, status: StageStatus, stop: threading.Event, max_delay_s: float) -> None:
        self.status = status
        self.stop = stop
        self.max_delay_s = max_delay_s
        self._logged_at: dict[str, float] = {}

    def wait(self, what: str, attempt: int, detail: str) -> None:
        now = time.monotonic()
        if now - self._logged_at.get(what, -_LOG_EVERY_S) >= _LOG_EVERY_S:
            self._logged_at[what] = now
            log.warning("waiting", waiting_for=what, detail=detail, attempt=attempt)
        delay_s = min(_FIRST_DELAY_S * 2 ** min(attempt, 20), self.max_delay_s)
        self.status.waiting()
        if self.stop.wait(delay_s):
            raise StoppingError(f"stopped while waiting for {what}")
        self.status.waiting()

    def done(self, what: str) -> None:
        if self._logged_at.pop(what, None) is not None:
            log.info("available again", waited_for=what)


class StateChangelog:
    """Produces the state documents the stage wrote or read into the compacted changelog topic."""

    def __init__(self, producer: Producer, topic: str, deliveries: DeliveryTracker, ttl: TtlPolicy) -> None:
        self.producer = producer
        self.topic = topic
        self.deliveries = deliveries
        self.ttl = ttl

    def record(self, states: Iterable[tuple[int, str, State, int | None, bytes | None]], now_ms: int) -> None:
        """(partition, interaction id, state, TTL in ms or None = the policy's, the state's bytes or None)
        each; flushed by the caller. Bytes the planner encoded for the store are produced as they are
        (encoding a state again cost as much as the store's whole round trip, docs/benchmarks.md)."""
        produce, topic, callback = self.producer.produce, self.topic, self.deliveries.callback
        for partition, interaction_id, state, ttl_ms, encoded in states:
            document, _kind = encode_state(state, encoded)
            ttl = ttl_ms if ttl_ms is not None else self._ttl_ms(state, now_ms)
            produce(topic, key=interaction_id, value=document, partition=partition,
                    headers=[(HEADER_TTL_MS, b"%d" % ttl)], on_delivery=callback)

    def record_writes(self, writes: Sequence[StateWrite], skipped: set[str],
                      partition_of: Callable[[str], int]) -> None:
        """`record` of the states a write round trip stored (all but `skipped`, those fenced out), with their TTLs
        and the bytes the store got: once per write of every batch, so without `record`'s tuple per state."""
        produce, topic, callback = self.producer.produce, self.topic, self.deliveries.callback
        for item in writes:
            interaction_id = item.interaction_id
            if interaction_id in skipped:
                continue
            state, document = item.state, item.document
            produce(topic, key=interaction_id, value=document if document is not None else state.to_bytes(),
                    partition=partition_of(interaction_id), headers=[(HEADER_TTL_MS, b"%d" % item.ttl_ms)],
                    on_delivery=callback)

    def _ttl_ms(self, state: State, now_ms: int) -> int:
        if isinstance(state, InteractionLog | StoredLog):
            return self.ttl.ttl_ms(state, now_ms)
        return self.ttl.retention_ms


class StateRestorer:
    """Reads a partition of the changelog to its end and writes back every state that has not expired."""

    def __init__(self, store: LogStore, consumer: Consumer, topic: str) -> None:
        self.store = store
        self.consumer = consumer
        self.topic = topic

    def restore(self, partition: int, beat: Callable[[], None]) -> int:
        """Write the partition's latest states (only where the store holds nothing), then mark it."""
        latest = self._read(partition, beat)
        now_ms = int(time.time() * 1000)
        writes = [w for w in (_restored_write(partition, key, message, now_ms) for key, message in latest.items())
                  if w is not None]
        for start in range(0, len(writes), _RESTORE_CHUNK):
            self.store.write(writes[start:start + _RESTORE_CHUNK])
            beat()
        self.store.mark([partition])
        metrics.STATE_RESTORES.inc()
        metrics.STATE_RESTORED.inc(len(writes))
        return len(writes)

    def restore_ids(self, partition: int, stored: dict[str, int], beat: Callable[[], None]) -> list[str]:
        """Write back the changelog's states of these ids (id → version the store holds now) where the
        changelog's is newer, fenced on that version; the partition is read once. The ids restored."""
        latest = self._read(partition, beat)
        now_ms = int(time.time() * 1000)
        writes = []
        for interaction_id, version in stored.items():
            message = latest.get(interaction_id)
            found = None if message is None else _restored_write(partition, interaction_id, message, now_ms)
            if found is not None and found.state.version > version:
                writes.append(found._replace(expected_version=version))
        fenced = set(self.store.write(writes).fenced_out) if writes else set()
        return [w.interaction_id for w in writes if w.interaction_id not in fenced]

    def _read(self, partition: int, beat: Callable[[], None]) -> dict[str, Message]:
        tp = TopicPartition(self.topic, partition)
        low, high = self.consumer.get_watermark_offsets(tp, timeout=_KAFKA_TIMEOUT_S)
        latest: dict[str, Message] = {}
        if high <= low:
            return latest
        self.consumer.assign([TopicPartition(self.topic, partition, OFFSET_BEGINNING)])
        try:
            position = low
            while position < high:
                for message in self.consumer.consume(1000, 1.0):
                    error = message.error()
                    if error is not None and error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    if error is None:
                        position = max(position, (message.offset() or 0) + 1)
                        latest[_key(message)] = message
                beat()
        finally:
            self.consumer.unassign()
        return latest


def _key(message: Message) -> str:
    key = message.key()
    return key.decode() if isinstance(key, bytes) else str(key)


def _restored_write(partition: int, interaction_id: str, message: Message, now_ms: int) -> StateWrite | None:
    """The fenced write (expected version 0: never over a state the store holds) of one changelog entry."""
    value = message.value()
    headers = dict(message.headers() or [])
    if value is None:
        return None
    _kind_ts, written_ms = message.timestamp()
    ttl_ms = written_ms + int(headers.get(HEADER_TTL_MS, b"0") or 0) - now_ms
    if ttl_ms <= 0:
        return None  # Redis would have expired it by now
    state = decode_state(value, headers.get(HEADER_KIND))
    if state is None:
        return None
    return rewrite(partition, interaction_id, state, 0, ttl_ms)


def rewrite(partition: int, interaction_id: str, state: State, expected_version: int, ttl_ms: int) -> StateWrite:
    """The fenced write that puts a known state back (an open log gets its deadline entry back); the
    hash is marked restored: its sync state went with the lost one, so the sync stage looks first."""
    deadline_ms = None if isinstance(state, Tombstone) or state.finalized else state.edit_deadline_ms
    deadline = None if deadline_ms is None else (partition, deadline_ms)
    return StateWrite(interaction_id, expected_version, state, ttl_ms, deadline=deadline, restored=True)


class StoreGuard:
    """Runs the stage's store work through outages and state loss.

    `call(work)` retries `work` while Redis is unreachable, and when a guarded write or the marks
    check says the state is lost, repairs (restores the owned partitions) and runs `work` again."""

    def __init__(
        self, store: LogStore, restorer: StateRestorer | None, consumer: Consumer, events_topic: str,
        waiter: Waiter,
    ) -> None:
        self.store = store
        self.restorer = restorer
        self.consumer = consumer
        self.events_topic = events_topic
        self.waiter = waiter
        self.on_restored: Callable[[list[int]], None] = lambda _partitions: None
        # Redis unreachable or its state lost: the stage reads nothing meanwhile, so events pile up in Kafka and
        # no partition is known to be at its end any more (the stage suspends its partition clocks)
        self.on_outage: Callable[[], None] = lambda: None
        # before a restore reads the changelog: whatever the stage produced to it must be acknowledged
        self.before_restore: Callable[[], None] = lambda: None

    def call(self, work: Callable[[], T], owned: Callable[[], list[int]]) -> T:
        attempt, lost_in_a_row = 0, 0
        repair: list[int] | None = None
        while True:
            try:
                if repair is not None:
                    self.repair(owned())
                    repair = None
                result = work()
            except StoreUnavailableError as exc:
                self.on_outage()
                self.waiter.status.store_down(str(exc))
                self.waiter.wait("redis", attempt, str(exc))
                attempt += 1
                continue
            except StateLostError as exc:
                lost_in_a_row += 1
                if lost_in_a_row > _LOST_IN_A_ROW:
                    raise StoreError(f"state of partitions {exc.partitions} lost again right after a restore") from exc
                log.error("state store lost its state; restoring from the changelog", partitions=exc.partitions)
                self.on_outage()
                repair = exc.partitions
                continue
            self.waiter.status.store_up()
            self.waiter.done("redis")
            return result

    def check(self, partitions: list[int]) -> None:
        """Raise StateLostError when one of these partitions is not marked (cheap: one HMGET)."""
        if partitions:
            unmarked = sorted(set(partitions) - self.store.marked(partitions))
            if unmarked:
                raise StateLostError(unmarked)

    def repair(self, partitions: list[int]) -> None:
        """Mark the unmarked partitions the group never committed; restore the ones it did."""
        unmarked = sorted(set(partitions) - self.store.marked(partitions))
        if not unmarked:
            return
        committed = self._committed(unmarked)
        fresh = [p for p in unmarked if p not in committed]
        if fresh:
            self.store.mark(fresh)
            log.info("partitions new to the state store", partitions=fresh)
        lost = [p for p in unmarked if p in committed]
        if lost:
            self._restore(lost)

    def _restore(self, partitions: list[int]) -> None:
        self.before_restore()
        status = self.waiter.status
        status.restoring = partitions
        try:
            for partition in partitions:
                started = time.monotonic()
                if self.restorer is None:
                    raise StoreError(f"state of partition {partition} lost and no changelog to restore it from")
                count = self._restore_one(self.restorer, partition)
                log.warning("state restored from the changelog", partition=partition, states=count,
                            seconds=round(time.monotonic() - started, 3))
        finally:
            status.restoring = []
        self.on_restored(partitions)

    def _restore_one(self, restorer: StateRestorer, partition: int) -> int:
        """Restore one partition; while the broker does not answer (the changelog cannot be read), wait and
        read it again from its start (what was written before is fenced: never written over)."""
        attempt = 0
        while True:
            try:
                count = restorer.restore(partition, self.waiter.status.waiting)
            except KafkaException as exc:
                self.waiter.wait("kafka state changelog", attempt, str(exc))
                attempt += 1
                continue
            self.waiter.done("kafka state changelog")
            return count

    def _committed(self, partitions: list[int]) -> set[int]:
        """The partitions with a committed offset in the stage's group (waits while Kafka does not answer)."""
        attempt = 0
        while True:
            try:
                found = self.consumer.committed(
                    [TopicPartition(self.events_topic, p) for p in partitions], timeout=_KAFKA_TIMEOUT_S
                )
                return {tp.partition for tp in found if tp.offset >= 0}
            except KafkaException as exc:
                self.waiter.wait("kafka committed offsets", attempt, str(exc))
                attempt += 1


def flush_until_acknowledged(deliveries: DeliveryTracker, producer: Producer, timeout_s: float, waiter: Waiter) -> None:
    """Flush; while Kafka does not acknowledge in time, beat and flush again (the producer keeps resending).

    A delivery that failed for good (after `message.timeout.ms`) still raises DeliveryError."""
    attempt = 0
    while True:
        try:
            deliveries.flush(producer, timeout_s)
        except DeliveryTimeoutError as exc:
            metrics.FLUSH_RETRIES.inc()
            waiter.wait("kafka acknowledgements", attempt, str(exc))
            attempt += 1
            continue
        waiter.done("kafka acknowledgements")
        return
