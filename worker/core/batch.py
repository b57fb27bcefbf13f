"""One batch of the fold stage, without Kafka: decoded records + loaded states → a write plan.

The plan holds the fenced writes (one per changed interaction), the snapshots to emit (one per
interaction touched by an accepted or re-consumed event) and the rejections for the DLQ. The
rules themselves live in `worker.core.fold`; this module only threads states through it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

from schemas.common import Trigger
from schemas.decode import Rejection
from schemas.events import trace_context
from schemas.fast import AnyEvent
from worker.core import native
from worker.core.bounds import (
    ENCODE_ERRORS,
    SNAPSHOT_SLACK_BYTES,
    encoding_problem,
    future_time,
    snapshot_surely_fits,
)
from worker.core.fold import (
    Accepted,
    CompiledFold,
    Duplicate,
    FoldedDocument,
    Outcome,
    Rejected,
    compiled_fold,
    document_fold,
    fold_guarded,
    late_edit_rejection,
    trigger_for,
)
from worker.core.native import SnapshotJob
from worker.core.snapshot_json import EncodedSnapshot, snapshot_json, snapshot_json_of
from worker.core.state import TRIGGERS, InteractionLog, StoredLog, Tombstone, as_log, from_us, stored_log
from worker.core.writes import StateWrite, Stored

# When several changes of one interaction are coalesced into one snapshot, the strongest trigger
# wins, so a target that reacts only to state changes still sees one inside a batch.
TRIGGER_RANK: dict[Trigger, int] = {
    Trigger.UPDATED: 0,
    Trigger.OPENED: 1,
    Trigger.STATE_CHANGED: 2,
    Trigger.CREATED: 3,
    Trigger.FINALIZED: 4,
}

def stronger(a: Trigger | None, b: Trigger) -> Trigger:
    return b if a is None or TRIGGER_RANK[b] >= TRIGGER_RANK[a] else a


class Record(NamedTuple):
    """One consumed message, decoded. `item` is the event or why it was refused; `timestamp_ms` is the
    message's Kafka timestamp (CreateTime or LogAppendTime), None when it has none.

    A NamedTuple: one per consumed message, a single `tuple.__new__` (a frozen dataclass pays one
    `object.__setattr__` per field)."""

    topic: str
    partition: int
    offset: int
    value: bytes | None
    headers: list[tuple[str, bytes | None]]
    item: AnyEvent | Rejection
    timestamp_ms: int | None = None


class DeferredSnapshots(NamedTuple):
    """Snapshots of a plan being written on the compiled core's thread: their places in `BatchPlan.snapshots`
    (whose payloads are empty until `settle_snapshots`), with the log and trigger each is of."""

    job: SnapshotJob
    entries: list[tuple[int, InteractionLog | StoredLog, Trigger]]


@dataclass
class BatchPlan:
    writes: list[StateWrite] = field(default_factory=list)
    snapshots: list[tuple[int, EncodedSnapshot]] = field(default_factory=list)  # (partition, snapshot)
    rejections: list[tuple[Record, Rejection]] = field(default_factory=list)
    accepted: dict[Trigger, int] = field(default_factory=dict)
    duplicates: int = 0
    max_event_time: dict[int, datetime] = field(default_factory=dict)  # partition → newest event time
    deferred: DeferredSnapshots | None = None
    """With `defer_snapshots`: the snapshots still being written; `settle_snapshots` before reading payloads."""


DEFER_AT_LEAST = 64
"""Fewer snapshots than this in a batch (a live stage's short batches) are written at once: a thread is not
worth it."""


def settle_snapshots(plan: BatchPlan) -> BatchPlan:
    """Put the snapshots written on the compiled core's thread into `plan.snapshots` (waiting for them if need
    be); one the thread left to the log is written from it here. Returns the plan; a no-op once settled."""
    deferred = plan.deferred
    if deferred is None:
        return plan
    plan.deferred = None
    snapshots = plan.snapshots
    for (index, log, trigger), payload in zip(deferred.entries, deferred.job.wait(), strict=True):
        partition, snap = snapshots[index]
        snapshots[index] = (partition, _with_payload(snap, payload or snapshot_json(as_log(log), trigger)))
    return plan


def _with_payload(snap: EncodedSnapshot, payload: bytes) -> EncodedSnapshot:
    """`snap._replace(payload=payload)`, which costs twice as much (once per snapshot on the stage's hot path)."""
    return EncodedSnapshot(snap.interaction_id, snap.version, snap.trigger, snap.finalized, payload, snap.traceparent)


@dataclass(slots=True)
class _Touched:
    partition: int
    stored_version: int
    trigger: Trigger | None = None
    changed: bool = False
    traceparent: str | None = None
    """Of the newest event applied (or seen again) in the batch that carried one: its snapshot carries it on."""
    document: bytes | None = None
    """The state's bytes, written right after the batch's last event of the interaction changed it (see `_plan`)."""


@dataclass(frozen=True)
class TtlPolicy:
    retention_ms: int
    open_log_ttl_ms: int

    def ttl_ms(self, log: InteractionLog | StoredLog, now_ms: int) -> int:
        """Open logs live `open_log_ttl`; disconnected ones until deadline + retention (≥ retention)."""
        return self.ttl_for(log.edit_deadline_ms, now_ms)

    def ttl_for(self, deadline_ms: int | None, now_ms: int) -> int:
        """`ttl_ms` of a log whose `edit_deadline_ms` is `deadline_ms`."""
        if deadline_ms is None:
            return self.open_log_ttl_ms
        return max(deadline_ms + self.retention_ms - now_ms, self.retention_ms)


@dataclass(frozen=True)
class _Limits:
    edit_window_s: float
    applied_ids_kept: int
    now_ms: int
    max_skew_ms: int | None
    max_snapshot_bytes: int | None
    message_clock: bool
    defer_snapshots: bool = False


def plan_batch(
    records: Sequence[Record],
    loaded: dict[str, Stored],
    *,
    edit_window_s: float,
    applied_ids_kept: int,
    ttl: TtlPolicy,
    now_ms: int,
    max_skew_ms: int | None = None,
    max_snapshot_bytes: int | None = None,
    message_clock: bool = False,
    defer_snapshots: bool = False,
) -> BatchPlan:
    """Fold every record in arrival order into the loaded states and say what to persist and emit.

    With `max_skew_ms`, an event whose time is further than that ahead of `now_ms` (the wall clock)
    is rejected `future_time` before the fold and does not count for the partition clock. With
    `message_clock` (a replay), the reference is the record's Kafka timestamp instead, when it has one:
    what the live worker's wall clock read when the message came, not the replay's, days later.

    Every changed state must encode, and it and its snapshot fit `max_snapshot_bytes` (both go to
    Kafka: the snapshot to the upserts topic, the state to the changelog). When one does not, the
    batch is planned again with those interactions checked after each event: the event that
    breaks the encoding is rejected (`too_large`, or `invalid` when it cannot be encoded at all) and
    the rest applies, so nothing is half-written. The common case pays one encoding per change.

    With `defer_snapshots` and the compiled core in use, the snapshots of changed interactions are written
    from their stored documents on the core's thread while the caller goes on (the fold stage lands the batch
    before this one meanwhile), when the document is small enough that its snapshot surely fits
    (`snapshot_surely_fits`): their payloads are empty until `settle_snapshots(plan)`.
    """
    limits = _Limits(edit_window_s, applied_ids_kept, now_ms, max_skew_ms, max_snapshot_bytes, message_clock,
                     defer_snapshots)
    plan, unencodable = _plan(records, loaded, limits, ttl, frozenset())
    if unencodable:
        plan, _ = _plan(records, loaded, limits, ttl, frozenset(unencodable))
    return plan


def _plan(
    records: Sequence[Record], loaded: dict[str, Stored], limits: _Limits, ttl: TtlPolicy, guarded: frozenset[str],
) -> tuple[BatchPlan, list[str]]:
    # The stage's hot loop: attribute look-ups are hoisted and the compiled fold called directly (each
    # Python frame saved is paid once per event; docs/benchmarks.md has the planner's figures).
    plan = BatchPlan()
    states = {interaction_id: stored.state for interaction_id, stored in loaded.items()}
    touched: dict[str, _Touched] = {}
    rejections, accepted, newest = plan.rejections, plan.accepted, plan.max_event_time
    edit_window_s, applied_ids_kept, max_skew_ms = limits.edit_window_s, limits.applied_ids_kept, limits.max_skew_ms
    compiled = compiled_fold()
    # the compiled fold over stored documents: a log held as a `StoredLog` (or none yet) is folded without Python
    # objects; what it leaves (a rejection among them) is folded on the log's objects below
    by_document = document_fold()
    # the compiled encoder (None for a log it leaves to the Python, which `_plan_writes` then encodes)
    state_bytes = native.CORE.state_bytes if native.CORE is not None else _not_yet
    # each interaction's last event in the batch: a change made by it is encoded at once, while the new log's
    # objects are still in the CPU's caches (read after the whole batch, ~1,000 logs later, they are not)
    skew_limit = _skew_limit(records, limits)
    last = {record.item.subject: index for index, record in enumerate(records)
            if not isinstance(record.item, Rejection)}
    for index, record in enumerate(records):
        event = record.item
        if isinstance(event, Rejection):
            rejections.append((record, event))
            continue
        moment, subject = event.time, event.subject
        if moment >= skew_limit and (ahead := _ahead_of_clock(record, event, limits, max_skew_ms)):
            rejections.append((record, ahead))
            continue
        latest = newest.get(record.partition)
        if latest is None or moment > latest:
            newest[record.partition] = moment
        state = states.get(subject)
        folded = None
        if by_document is not None and (state is None or isinstance(state, StoredLog)) and subject not in guarded:
            folded = by_document(None if state is None else state.document, event, edit_window_s, applied_ids_kept)
        outcome: Outcome | None = None
        if folded is None or (folded is not True and folded[0] is None):  # left to the Python, or `late_edit`
            new_log, outcome = _fold_objects(states, state, event, limits, compiled, subject in guarded, folded)
            if isinstance(outcome, Rejected):
                rejections.append((record, outcome.rejection))
                continue
        entry = touched.get(subject) or _touch(touched, loaded, record, subject)
        trace = event.traceparent or (record.headers and header_trace(record.headers))
        entry.traceparent = trace or entry.traceparent
        if folded is True or isinstance(outcome, Duplicate):
            plan.duplicates += 1
            entry.trigger = stronger(entry.trigger, trigger_for(event.type))
            continue
        entry.changed = True
        if isinstance(outcome, Accepted):
            states[subject] = new_log
            entry.document = state_bytes(new_log) if index == last[subject] else None
            trigger = outcome.trigger
        else:
            answer: FoldedDocument = folded  # type: ignore[assignment]  # neither None, True nor late: see above
            document, version, trigger_value, deadline_us = answer
            states[subject] = StoredLog(subject, version, deadline_us, document)
            entry.document = document
            trigger = TRIGGERS[trigger_value]
        entry.trigger = stronger(entry.trigger, trigger)
        accepted[trigger] = accepted.get(trigger, 0) + 1
    return plan, _plan_writes(plan, states, touched, ttl, limits)


def _touch(touched: dict[str, _Touched], loaded: dict[str, Stored], record: Record, subject: str) -> _Touched:
    """The batch's entry of `subject`, the record's interaction, made at its first accepted or repeated event."""
    stored = loaded.get(subject)
    entry = touched[subject] = _Touched(record.partition, 0 if stored is None else stored.version)
    return entry


def _fold_objects(
    states: dict[str, InteractionLog | StoredLog | Tombstone | None],
    state: InteractionLog | StoredLog | Tombstone | None,
    event: AnyEvent, limits: _Limits, compiled: CompiledFold | None, guarded: bool, late: object,
) -> tuple[InteractionLog | StoredLog | Tombstone | None, Outcome]:
    """`event` folded into the log's objects (a log held as its document is read into them first, for the rest of
    the batch): the compiled fold on objects, else `fold_guarded`; with `guarded`, an accepted event whose log or
    snapshot cannot go out is rejected. `late` is the compiled fold's `LateDocument` when it found the event past
    the document's edit deadline: the rejection is worded from it, the log stays as it is."""
    if isinstance(late, tuple):
        _none, time_us, deadline_us, ended_us = late
        return state, Rejected(late_edit_rejection(event, time_us, deadline_us, ended_us))
    if isinstance(state, StoredLog):
        state = states[state.interaction_id] = state.log()
    edit_window_s, applied_ids_kept = limits.edit_window_s, limits.applied_ids_kept
    # a FoldResult is a non-empty tuple: `or` falls back to `fold` only where the compiled one gave None
    # (`fold_guarded`: a rule that raises on this event rejects it; the compiled fold never raises)
    result = (compiled(state, event, edit_window_s, applied_ids_kept) if compiled is not None else None) or \
        fold_guarded(state, event, edit_window_s=edit_window_s, applied_ids_kept=applied_ids_kept)
    outcome = result.outcome
    if guarded and isinstance(outcome, Accepted):
        outcome = _encodable(result.log, event, outcome, limits.max_snapshot_bytes)
    return result.log, outcome


def _not_yet(log: object) -> bytes | None:
    """Without the compiled core a log is encoded in `_plan_writes`, where an error is worded."""
    return None


def header_trace(headers: Sequence[tuple[str, bytes | None]]) -> str | None:
    """A `traceparent` message header (as OpenTelemetry's Kafka instrumentation sets it), when the event
    itself carries none; binary mode's `ce_traceparent` is the event's own attribute."""
    for key, raw in headers:
        if key == "traceparent" and raw is not None:
            return trace_context(raw.decode("ascii", errors="replace"))
    return None


def record_trace(record: Record) -> str | None:
    """The trace context of a consumed record, also of one that did not decode (binary mode's header)."""
    event = record.item
    if not isinstance(event, Rejection) and event.traceparent:
        return event.traceparent
    for key, raw in record.headers or ():
        if key == "ce_traceparent" and raw is not None:
            return trace_context(raw.decode("ascii", errors="replace"))
    return header_trace(record.headers) if record.headers else None


def _skew_limit(records: Sequence[Record], limits: _Limits) -> datetime:
    """The earliest event time `_ahead_of_clock` looks at (a datetime compares in a tenth of what `future_time`'s
    arithmetic costs on every event); never without `max_skew_ms`. Against the wall clock it is exact; with a
    replay's Kafka timestamps (each record judged against its own, or the wall clock without one) it is that of
    the earliest clock in the batch, so no event `future_time` rejects is let through."""
    if limits.max_skew_ms is None:
        return _NEVER
    clock_ms = limits.now_ms
    if limits.message_clock:
        clock_ms = min((clock_ms if record.timestamp_ms is None else record.timestamp_ms for record in records),
                       default=clock_ms)
    # `future_time` rejects when `to_us(time) // 1000 - clock_ms > max_skew_ms`: from this microsecond on
    try:
        return from_us((clock_ms + limits.max_skew_ms + 1) * 1000)
    except (OverflowError, ValueError):  # a clock outside the calendar: look at every event
        return _ALWAYS


_NEVER = datetime.max.replace(tzinfo=UTC)
_ALWAYS = datetime.min.replace(tzinfo=UTC)


def _ahead_of_clock(record: Record, event: AnyEvent, limits: _Limits, max_skew_ms: int | None) -> Rejection | None:
    """`future_time` against the wall clock, or (`message_clock`) against the record's Kafka timestamp."""
    if max_skew_ms is None:
        return None
    if limits.message_clock and record.timestamp_ms is not None:
        return future_time(event, record.timestamp_ms, max_skew_ms, clock="its Kafka message's timestamp")
    return future_time(event, limits.now_ms, max_skew_ms)


def _encodable(log: InteractionLog | Tombstone | None, event: AnyEvent, outcome: Accepted,
               max_snapshot_bytes: int | None) -> Accepted | Rejected:
    assert isinstance(log, InteractionLog)
    refused = encoding_problem(log, event, outcome.trigger, max_snapshot_bytes)
    return outcome if refused is None else Rejected(refused)


def _plan_writes(
    plan: BatchPlan,
    states: dict[str, InteractionLog | StoredLog | Tombstone | None],
    touched: dict[str, _Touched],
    ttl: TtlPolicy,
    limits: _Limits,
) -> list[str]:
    """Writes and snapshots of the touched interactions; returns those whose state or snapshot cannot go out."""
    unencodable: list[str] = []
    writes, snapshots, now_ms = plan.writes, plan.snapshots, limits.now_ms
    max_snapshot_bytes = limits.max_snapshot_bytes
    later: list[tuple[int, InteractionLog | StoredLog, Trigger, bytes]] = []  # snapshots read off documents below
    # with the compiled fold over documents, a changed log is kept as its document for its next event
    as_documents = document_fold() is not None
    for interaction_id, entry in touched.items():
        log = states.get(interaction_id)
        if not isinstance(log, InteractionLog | StoredLog) or entry.trigger is None:
            continue  # a duplicate against a tombstone changes and emits nothing
        trigger = entry.trigger
        try:
            document = (entry.document or log.to_bytes()) if entry.changed else None
        except ENCODE_ERRORS:
            unencodable.append(interaction_id)
            continue
        if document is not None and as_documents and isinstance(log, InteractionLog) and not log.finalized:
            log = stored_log(log, document)
        read_off = document if document is not None else log.document if isinstance(log, StoredLog) else None
        if read_off is not None and snapshot_surely_fits(read_off, max_snapshot_bytes):  # and so does the document
            later.append((len(snapshots), log, trigger, read_off))
            payload = b""
        else:
            encoded = _encoded_snapshot(log, trigger, document, max_snapshot_bytes)
            if encoded is None:
                unencodable.append(interaction_id)
                continue
            payload = encoded
        if entry.changed:
            deadline_ms = log.edit_deadline_ms
            deadline = (entry.partition, deadline_ms) if deadline_ms is not None and not log.finalized else None
            writes.append(StateWrite(interaction_id, entry.stored_version, log, ttl.ttl_for(deadline_ms, now_ms),
                                     deadline, None, document))
        snapshots.append((entry.partition, EncodedSnapshot(log.interaction_id, log.version, trigger, log.finalized,
                                                           payload, entry.traceparent)))
    if later:
        _read_off_documents(plan, later, limits.defer_snapshots)
    return unencodable


def _encoded_snapshot(log: InteractionLog | StoredLog, trigger: Trigger, document: bytes | None,
                      max_snapshot_bytes: int | None) -> bytes | None:
    """The snapshot written now (off `document`, the state's bytes, when the state changed), or None when it or
    the document cannot go out."""
    try:
        payload = snapshot_json(as_log(log), trigger) if document is None else snapshot_json_of(log, document, trigger)
    except ENCODE_ERRORS:
        return None
    if max_snapshot_bytes is not None:
        largest = max(len(payload), len(document) if document is not None else 0)
        if largest + SNAPSHOT_SLACK_BYTES > max_snapshot_bytes:
            return None
    return payload


def _read_off_documents(plan: BatchPlan, later: list[tuple[int, InteractionLog | StoredLog, Trigger, bytes]],
                        defer: bool) -> None:
    """The snapshots of changed logs whose documents surely fit, read off the documents: on the compiled core's
    thread when deferring a batch of at least `DEFER_AT_LEAST`, else here."""
    core = native.CORE
    if defer and core is not None and len(later) >= DEFER_AT_LEAST:
        job = core.snapshots_from_states([(document, trigger.value) for _index, _log, trigger, document in later])
        plan.deferred = DeferredSnapshots(job, [(index, log, trigger) for index, log, trigger, _document in later])
        return
    snapshots = plan.snapshots
    for index, log, trigger, document in later:
        partition, snap = snapshots[index]
        snapshots[index] = (partition, _with_payload(snap, snapshot_json_of(log, document, trigger)))
