"""The edit-window finalizer: per-partition clocks and the closing of due windows.

Window-close rule (DESIGN.md): a window closes when its partition's clock passes deadline + grace.
The clock is the newest event time consumed on that partition (live: never past the wall clock, so an
event timed ahead within the allowed skew closes no window early), advanced to wall-clock while the
consumer is caught up on it (it has read to the end of the partition, and knows so freshly: see
`PartitionClocks`). So a lagging consumer never closes a window while an in-window edit still waits
in Kafka, an idle partition still closes windows on time, a broker outage does not close windows
by the wall clock while nothing can be read, and a replay closes windows by event time.

A replay has no wall clock of the time it replays: the Kafka timestamps of the messages it reads stand in
for it. Its clock is the newest event time, never past the newest message timestamp read on the
partition, as the live clock never ran past the wall clock when those messages came; the fold stage
judges `future_time` against each message's timestamp (`worker.core.batch.plan_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.common import Trigger
from worker.core import native
from worker.core.batch import TtlPolicy
from worker.core.fold import finalize, finalize_document, tombstone_of
from worker.core.snapshot_json import EncodedSnapshot, encoded_snapshot, snapshot_json
from worker.core.state import InteractionLog, StoredLog, Tombstone, from_us
from worker.core.writes import StateWrite, Stored
from worker.store.port import LogStore

_MAX_LEAD_MS = 1_000


def evidence_lead_ms(grace_s: float) -> int:
    """How far a caught-up clock may run past the broker's last answer: half the grace,
    at most 1 s. Below the grace, so no window closes ahead of an edit made after that answer; about the
    usual age of the evidence (an idle fetch answered every 0.5 s, statistics every 0.25 s)."""
    return min(_MAX_LEAD_MS, int(grace_s * 1000) // 2)


class PartitionClocks:
    """Event-time clocks of the partitions this consumer owns.

    A partition follows the wall clock only while the consumer knows, freshly, that it has read
    everything there is: an end of partition (EOF) or a watermark check at most `fresh_ms` ago, no
    broker trouble since, and, after broker trouble, `settle_ms` of fetching that works again
    (producers send what they held back during the outage; their edits must be read before the
    windows they belong to close). Otherwise the clock is the newest event time consumed.

    Following, the clock runs at most `lead_ms` past the time of that evidence: the wall-clock time the
    broker last answered with the partition's end (`reached_end(partition, answered_ms)`). What was
    produced after that answer may not have been read. With `lead_ms` below the grace, an edit made after
    the broker's last answer (at an event time up to its deadline) is never behind a window that closes:
    the clock passes deadline + grace ≥ answer + grace only once the broker has answered again. So a broker
    that stops answering without an error (hung, cut off) stops the clocks where its last answer left them,
    rather than at the first statistics that find it silent seconds later. A healthy broker answers an idle
    consumer's fetch within `fetch.wait.max.ms` (500 ms) and the statistics come every 250 ms, so the lead
    covers the usual age of the evidence and the clock is the wall clock's. With `fresh_ms` None (replays,
    tests of the rule) the evidence has no time and the clock is the wall clock's.
    """

    def __init__(self, *, fresh_ms: int | None = None, settle_ms: int = 0, lead_ms: int = 0) -> None:
        self._event_ms: dict[int, int] = {}
        self._caught_up: dict[int, bool] = {}
        self._verified_ms: dict[int, int] = {}  # wall ms of the last evidence that the partition is at its end
        self._eof_read: dict[int, int] = {}  # offset of the last end of partition the consumer was handed
        self._message_ms: dict[int, int] = {}  # replays: the newest Kafka message timestamp read
        self._fresh_ms = fresh_ms  # None: an EOF counts until the next event (replays, tests of the rule)
        self._settle_ms = settle_ms
        self._lead_ms = lead_ms
        self._hold_until_ms = 0
        self._suspended = False

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._event_ms.setdefault(partition, 0)
            self._caught_up.setdefault(partition, False)

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._event_ms.pop(partition, None)
            self._caught_up.pop(partition, None)
            self._verified_ms.pop(partition, None)
            self._eof_read.pop(partition, None)
            self._message_ms.pop(partition, None)

    def owned(self) -> list[int]:
        return sorted(self._event_ms)

    def observe(self, partition: int, event_ms: int) -> None:
        """An event was consumed: the partition is not known to be caught up any more."""
        if partition in self._event_ms:
            self._event_ms[partition] = max(self._event_ms[partition], event_ms)
            self._caught_up[partition] = False

    def observe_message(self, partition: int, message_ms: int) -> None:
        """A replay read a message stamped `message_ms` by Kafka: its clock may run up to there."""
        if partition in self._event_ms:
            self._message_ms[partition] = max(self._message_ms.get(partition, message_ms), message_ms)

    def observe_messages(self, stamps: Iterable[tuple[int, int | None]]) -> None:
        """`observe_message` of each (partition, Kafka timestamp) a replay read (None: the message has none), with
        one call per partition, for the newest stamp of each."""
        newest: dict[int, int] = {}
        for partition, message_ms in stamps:
            if message_ms is not None and message_ms > newest.get(partition, message_ms - 1):
                newest[partition] = message_ms
        for partition, message_ms in newest.items():
            self.observe_message(partition, message_ms)

    def reached_end(self, partition: int, now_ms: int = 0) -> None:
        """The consumer has read `partition` to its end as of `now_ms` (the wall time of the broker's answer
        that says so); evidence never moves back."""
        if partition in self._caught_up:
            self._caught_up[partition] = True
            self._verified_ms[partition] = max(now_ms, self._verified_ms.get(partition, now_ms))

    def eof_read(self, partition: int, offset: int) -> None:
        """The consumer was handed the end of `partition` at `offset` (after every message before it)."""
        if partition in self._event_ms:
            self._eof_read[partition] = offset

    def eofs_read(self) -> dict[int, int]:
        """Per owned partition, the offset of the last end of partition handed to the consumer since its assignment."""
        return dict(self._eof_read)

    def suspend(self) -> None:
        """The broker is unreachable, a fetch failed, or Redis was (the stage read nothing meanwhile): nothing is
        known to be caught up any more."""
        self._suspended = True
        for partition in self._caught_up:
            self._caught_up[partition] = False

    def fetched(self, now_ms: int) -> None:
        """Fetching works (again): after a suspension, wall-clock following waits `settle_ms` more."""
        if self._suspended:
            self._suspended = False
            self._hold_until_ms = now_ms + self._settle_ms

    def is_caught_up(self, partition: int) -> bool:
        return self._caught_up.get(partition, False)

    def to_verify(self, now_ms: int, older_than_ms: int) -> list[int]:
        """Partitions whose evidence of being at the end is missing or older than `older_than_ms`."""
        return [p for p in self._event_ms if now_ms - self._verified_ms.get(p, 0) > older_than_ms]

    def clock_ms(self, partition: int, wall_ms: int, *, follow_wall_clock: bool = True) -> int:
        """Live (`follow_wall_clock`), never ahead of the wall clock: an event timed ahead of it (a fast
        producer clock, within the allowed skew) must not close the partition's other windows before their
        deadline. A replay's clock is the event time, never ahead of the newest message timestamp read
        (the wall clock of the time replayed); with no timestamped message read, the event time alone."""
        event_ms = self._event_ms.get(partition, 0)
        if not follow_wall_clock:
            message_ms = self._message_ms.get(partition)
            return event_ms if message_ms is None else min(event_ms, message_ms)
        if self._follows_wall_clock(partition, wall_ms):
            if self._fresh_ms is None:
                return wall_ms
            return min(wall_ms, max(event_ms, self._verified_ms.get(partition, 0) + self._lead_ms))
        return min(event_ms, wall_ms)

    def _follows_wall_clock(self, partition: int, wall_ms: int) -> bool:
        if not self._caught_up.get(partition, False) or self._suspended or wall_ms < self._hold_until_ms:
            return False
        return self._fresh_ms is None or wall_ms - self._verified_ms.get(partition, 0) <= self._fresh_ms


@dataclass
class ClosePlan:
    snapshots: list[tuple[int, EncodedSnapshot]] = field(default_factory=list)
    writes: list[StateWrite] = field(default_factory=list)
    # (interaction id, deadline in ms) of every window closed, for the lateness metric
    closed: list[tuple[str, int]] = field(default_factory=list)


def plan_closes(
    store: LogStore,
    partition: int,
    clock_ms: int,
    *,
    due: list[tuple[str, int]],
    load: Callable[[Iterable[str]], dict[str, Stored]],
    grace_ms: int,
    ttl: TtlPolicy,
    now_ms: int,
) -> ClosePlan:
    """Finalize every window of `partition` whose deadline + grace the clock has passed.

    Stale entries (no log, already a tombstone) are dropped; an entry whose log now has a later
    deadline is rescheduled. The caller emits the snapshots, waits for Kafka's acknowledgement and
    only then persists the writes (tombstones), so a crash in between finalizes again, at the same
    version. `due` is the partition's due entries (`store.due_many`), `load` reads their logs (the
    fold stage reads through its cache); `store` drops the stale entries.
    """
    plan = ClosePlan()
    if not due:
        return plan
    loaded = load([interaction_id for interaction_id, _ in due])
    stale: list[str] = []
    for interaction_id, _score in due:
        stored = loaded[interaction_id]
        log = stored.state
        deadline_ms = log.edit_deadline_ms if isinstance(log, InteractionLog | StoredLog) else None
        if not isinstance(log, InteractionLog | StoredLog) or log.finalized or deadline_ms is None:
            stale.append(interaction_id)
            continue
        if deadline_ms + grace_ms > clock_ms:
            plan.writes.append(StateWrite(interaction_id, stored.version, log, ttl.ttl_ms(log, now_ms),
                                          deadline=(partition, deadline_ms)))
            continue
        snapshot, tombstone = closed(log)
        plan.snapshots.append((partition, snapshot))
        # the tombstone's bytes once, for the store's script call and the changelog (the compiled packing of a
        # batch of writes takes only writes whose documents are there)
        plan.writes.append(
            StateWrite(interaction_id, stored.version, tombstone, ttl.ttl_ms(log, now_ms),
                       unschedule_partition=partition, document=tombstone.to_bytes())
        )
        plan.closed.append((interaction_id, deadline_ms))
    store.unschedule(partition, stale)
    return plan


def closed(log: InteractionLog | StoredLog) -> tuple[EncodedSnapshot, Tombstone]:
    """The `finalized` snapshot and the tombstone of `finalize(log)`: for a log held as its document, off the
    document (the compiled `finalize_document` and `snapshot_from_state`) where the compiled core does it."""
    if isinstance(log, StoredLog):
        close_document = finalize_document()
        at_us = log.edit_deadline_us  # the tombstone's time (a log without one, never due, is closed off its objects)
        done = close_document(log.document) if close_document is not None and at_us is not None else None
        if done is None or at_us is None:
            log = log.log()
        else:
            document, applied_ids = done
            version = log.version + 1
            core = native.CORE
            payload = core.snapshot_from_state(document, Trigger.FINALIZED) if core is not None else None
            if payload is None:
                payload = snapshot_json(InteractionLog.from_bytes(document), Trigger.FINALIZED)
            return (EncodedSnapshot(log.interaction_id, version, Trigger.FINALIZED, True, payload),
                    Tombstone(log.interaction_id, version, from_us(at_us), applied_ids))
    final = finalize(log)
    return encoded_snapshot(final, Trigger.FINALIZED), tombstone_of(final)
