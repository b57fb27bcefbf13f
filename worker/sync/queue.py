"""One target's queue of work: the newest snapshot per interaction, waiting or in flight.

The consumer loop puts coalesced snapshots in; the target's thread takes batches out. A snapshot
for an interaction that is already waiting merges into it (newest version, strongest trigger, the
records of both), so a slow target sees each interaction once however many versions it missed.
An interaction in flight is never taken twice: its next version waits until the call is over,
which keeps writes per interaction in order.

So a target slower than the changes arrive (a webhook: one post per change) holds, after a while,
one waiting snapshot per open interaction. A waiting snapshot is its bytes (`Pending.release`),
about 2 KB with its bookkeeping, decoded again when the target takes it; the stage pauses
consuming once a queue holds `sync_max_queued` interactions (`worker.sync.stage`). While every
queue is short (`worker.sync.stage.KEEP_MODELS_BELOW`) the decoded model is kept instead, so the
targets do not decode the same bytes again one after the other.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from schemas.common import Trigger
from schemas.snapshot import LogSnapshot
from worker.core.batch import stronger
from worker.sync.batch import Pending
from worker.sync.offsets import PartitionKey, Position


@dataclass(slots=True, eq=False)
class Work:
    """The newest snapshot of one interaction for one target, and every record it answers for.

    Merging (`absorb`) keeps the strongest trigger of the merged versions in `trigger` rather than
    copying the snapshot each time: the copy with that trigger is made once, when the target reads
    `entry` (after taking the work). A waiting work is changed only under its queue's lock, a taken
    one only by its target's thread."""

    base: Pending
    positions: list[Position]
    queued_at_s: float = field(default_factory=time.monotonic)
    settled: bool = False  # an uncertain earlier write was given time to land already
    trigger: Trigger | None = None  # the strongest trigger merged in, when it is not `base`'s own
    raised: int = 0  # calls with this work in them that raised an unexpected error (`WorkQueue.take`)
    first_raised_s: float | None = None  # monotonic time of the first of them

    @property
    def entry(self) -> Pending:
        """The newest snapshot with the strongest trigger of every version merged into this work."""
        trigger = self.trigger
        if trigger is not None:
            snapshot = self.base.snapshot
            self.base = Pending(snapshot.model_copy(update={"trigger": trigger}), self.base.record)
            self.trigger = None
        return self.base

    @property
    def interaction_id(self) -> str:
        return self.base.interaction_id

    @property
    def partition(self) -> PartitionKey:
        return self.base.record.topic, self.base.record.partition


def absorb(older: Work, newer: Work) -> Work:
    """Merge `newer` into `older`, in place: newest version, strongest trigger of both, the records of
    both (older's first), the older wait time. Returns `older`."""
    strongest = stronger(older.trigger or older.base.trigger, newer.trigger or newer.base.trigger)
    if newer.base.version >= older.base.version:
        older.base = newer.base
    older.trigger = None if strongest == older.base.trigger else strongest
    older.positions.extend(newer.positions)
    older.queued_at_s = min(older.queued_at_s, newer.queued_at_s)
    older.settled = older.settled or newer.settled
    if newer.raised > older.raised:
        older.raised, older.first_raised_s = newer.raised, newer.first_raised_s
    return older


def absorb_entry(older: Work, entry: Pending, positions: Sequence[Position], queued_s: float) -> Work:
    """`absorb(older, Work(entry, positions, queued_s))` without building the newer work."""
    strongest = stronger(older.trigger or older.base.trigger, entry.trigger)
    if entry.version >= older.base.version:
        older.base = entry
    older.trigger = None if strongest == older.base.trigger else strongest
    older.positions.extend(positions)
    if queued_s < older.queued_at_s:
        older.queued_at_s = queued_s
    return older


class WorkQueue:
    """Thread-safe; `changed` wakes the target's thread when work arrives or the queue is closing."""

    def __init__(self, wants: Callable[[LogSnapshot], bool], keep_models: Callable[[], bool] = lambda: False) -> None:
        """`keep_models`: asked when a target is done with an entry; while it answers True the decoded
        snapshot stays for the other targets (the queues are short), else only its bytes do."""
        self._wants = wants
        self._keep_models = keep_models
        self._waiting: dict[str, Work] = {}
        self._in_flight: dict[str, Work] = {}
        self._dropped: set[str] = set()  # in flight, but its partition went away: forget the outcome
        self.changed = threading.Condition()

    def __len__(self) -> int:
        with self.changed:
            return len(self._waiting) + len(self._in_flight)

    def put(self, work: Work) -> bool:
        """Queue (or merge) the work; False when the target does not want it (it is done at once)."""
        return not self.put_many([work])

    def put_many(self, works: Sequence[Work]) -> list[Work]:
        """`put` for a consumed batch under one lock and one wake-up; the works the target does not want."""
        unwanted: list[Work] = []
        with self.changed:
            waiting_now = self._waiting
            for work in works:
                interaction_id = work.interaction_id
                waiting = waiting_now.get(interaction_id)
                if waiting is not None:
                    absorb(waiting, work)
                elif self._wants(work.entry.snapshot):
                    waiting_now[interaction_id] = work
                else:
                    unwanted.append(work)
            if len(unwanted) < len(works):
                self.changed.notify_all()
        return unwanted

    def put_entries(self, entries: Sequence[Pending], positions: Mapping[str, list[Position]],
                    queued_s: float) -> list[list[Position]]:
        """`put_many` for the consumer loop's coalesced batch, without a `Work` per entry and target: an
        entry merges into the interaction's waiting work (`absorb_entry`), or becomes a new work when the
        target wants it; the positions of the entries the target does not want are returned (done at once).
        `positions[interaction_id]` are the records each entry answers for; the lists are not kept."""
        unwanted: list[list[Position]] = []
        queued = False
        with self.changed:
            waiting_now = self._waiting
            wants = self._wants
            for entry in entries:
                interaction_id = entry.interaction_id
                answers_for = positions[interaction_id]
                waiting = waiting_now.get(interaction_id)
                if waiting is not None:
                    absorb_entry(waiting, entry, answers_for, queued_s)
                    queued = True
                elif wants(entry.snapshot):
                    waiting_now[interaction_id] = Work(entry, list(answers_for), queued_s)
                    queued = True
                else:
                    unwanted.append(answers_for)
            if queued:
                self.changed.notify_all()
        return unwanted

    def ready_in_s(self, linger_s: float, linger_items: int, hurry: bool, final_linger_s: float = 0.0) -> float | None:
        """Seconds until a batch may be taken (0: now); None when nothing can be taken. A waiting work may
        wait `linger_s` from when it was queued (the longer of `linger_s` and `final_linger_s` when its
        trigger is finalized) to fill the call, unless `linger_items` are waiting: the call is due when
        the first of them is."""
        with self.changed:
            waiting, in_flight = self._waiting, self._in_flight
            if hurry or (linger_s <= 0 and final_linger_s <= 0):  # one work that can go is enough
                return 0.0 if any(i not in in_flight for i in waiting) else None
            if len(waiting) - len(in_flight) >= linger_items:  # at least that many are not in flight
                return 0.0
            final_s = max(linger_s, final_linger_s)
            due_s: float | None = None
            ready = 0
            for interaction_id, work in waiting.items():
                if interaction_id in in_flight:
                    continue
                ready += 1
                final = (work.trigger or work.base.trigger) == Trigger.FINALIZED
                at_s = work.queued_at_s + (final_s if final else linger_s)
                if due_s is None or at_s < due_s:
                    due_s = at_s
            if due_s is None:
                return None
            return 0.0 if ready >= linger_items else max(0.0, due_s - time.monotonic())

    def takeable_at_least(self, count: int) -> bool:
        """Whether `count` waiting interactions are not in flight; walks the in-flight ones only when
        the sizes alone do not tell."""
        with self.changed:
            waiting, in_flight = self._waiting, self._in_flight
            if len(waiting) < count:
                return False
            if len(waiting) - len(in_flight) >= count:
                return True
            return len(waiting) - sum(1 for i in in_flight if i in waiting) >= count

    def take(self, max_items: int, finals_first: bool = False) -> list[Work]:
        """Up to `max_items` waiting interactions that are not in flight, oldest first, now in flight;
        with `finals_first` (the API budget runs low and admits final snapshots only), the final ones first.

        A work whose calls raised an unexpected error (`Work.raised`) goes in smaller calls each time:
        at most `max_items >> 3 * raised` (1,000 → 125 → 15 → 1), so the record that makes the adapter
        raise ends up alone in a few calls while the others go through. A work that does not fit the
        call being taken waits for a later one."""
        with self.changed:
            taken: list[Work] = []
            cap = max_items
            candidates = list(self._waiting.items())
            if finals_first:
                candidates.sort(key=lambda entry: (entry[1].trigger or entry[1].base.trigger) != Trigger.FINALIZED)
            for interaction_id, work in candidates:
                if len(taken) >= cap:
                    break
                if interaction_id in self._in_flight:
                    continue
                if work.raised:
                    limit = max(1, max_items >> (3 * work.raised))
                    if len(taken) >= limit:
                        continue
                    cap = min(cap, limit)
                del self._waiting[interaction_id]
                self._in_flight[interaction_id] = work
                taken.append(work)
            return taken

    def finish(self, work: Work, done: bool) -> list[Position]:
        """The call for `work` is over: the positions now done, or (not done) back in the queue."""
        if not done:
            self.give_back([work])
            return []
        if not self._keep_models():
            work.base.release()  # other targets' queues may hold the same entry: its bytes are enough there
        with self.changed:
            self._in_flight.pop(work.interaction_id, None)
            self.changed.notify_all()
            if work.interaction_id in self._dropped:
                self._dropped.discard(work.interaction_id)
                return []
            return work.positions

    def give_back(self, works: Sequence[Work]) -> None:
        """Work taken but not done (retry, no budget, settling) goes back in front, merged with
        what arrived for the same interactions meanwhile: it is the oldest work of the target."""
        with self.changed:
            back: dict[str, Work] = {}
            keep = self._keep_models()
            for work in works:
                if not keep:
                    work.base.release()
                self._in_flight.pop(work.interaction_id, None)
                if work.interaction_id in self._dropped:
                    self._dropped.discard(work.interaction_id)
                    continue
                waiting = self._waiting.pop(work.interaction_id, None)
                back[work.interaction_id] = work if waiting is None else absorb(work, waiting)
            if back:  # in front; works whose call raised go last, so they do not hold the others up
                front = {i: w for i, w in back.items() if not w.raised}
                rear = {i: w for i, w in back.items() if w.raised}
                self._waiting = {**front, **self._waiting, **rear}
            self.changed.notify_all()

    def drop(self, partitions: Collection[PartitionKey], in_flight: bool) -> int:
        """Forget waiting work of `partitions` (and, with `in_flight`, the outcome of calls under way)."""
        with self.changed:
            gone = [i for i, w in self._waiting.items() if w.partition in partitions]
            for interaction_id in gone:
                del self._waiting[interaction_id]
            if in_flight:
                self._dropped.update(i for i, w in self._in_flight.items() if w.partition in partitions)
            self.changed.notify_all()
            return len(gone)

    def in_flight_of(self, partitions: Collection[PartitionKey]) -> int:
        with self.changed:
            return sum(1 for w in self._in_flight.values() if w.partition in partitions)

    def empty(self) -> bool:
        with self.changed:
            return not self._waiting and not self._in_flight
