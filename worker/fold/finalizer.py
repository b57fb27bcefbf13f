"""The edit-window finalizer: per-partition clocks and the closing of due windows.

Window-close rule (DESIGN.md): a window closes when its partition's clock passes deadline + grace.
The clock is the newest event time consumed on that partition, advanced to wall-clock while the
consumer is caught up on it (it has read to the end of the partition). So a lagging consumer never
closes a window while an in-window edit still waits in Kafka, an idle partition still closes windows
on time, and a replay closes windows by event time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from schemas.common import Trigger
from worker.core.batch import TtlPolicy
from worker.core.fold import finalize, tombstone_of
from worker.core.snapshot_json import EncodedSnapshot, encoded_snapshot
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite, Stored
from worker.store.port import LogStore


class PartitionClocks:
    """Event-time clocks of the partitions this consumer owns."""

    def __init__(self) -> None:
        self._event_ms: dict[int, int] = {}
        self._caught_up: dict[int, bool] = {}

    def assign(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._event_ms.setdefault(partition, 0)
            self._caught_up.setdefault(partition, False)

    def revoke(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._event_ms.pop(partition, None)
            self._caught_up.pop(partition, None)

    def owned(self) -> list[int]:
        return sorted(self._event_ms)

    def observe(self, partition: int, event_ms: int) -> None:
        """An event was consumed: the partition is not known to be caught up any more."""
        if partition in self._event_ms:
            self._event_ms[partition] = max(self._event_ms[partition], event_ms)
            self._caught_up[partition] = False

    def reached_end(self, partition: int) -> None:
        if partition in self._caught_up:
            self._caught_up[partition] = True

    def is_caught_up(self, partition: int) -> bool:
        return self._caught_up.get(partition, False)

    def clock_ms(self, partition: int, wall_ms: int, *, follow_wall_clock: bool = True) -> int:
        event_ms = self._event_ms.get(partition, 0)
        if follow_wall_clock and self._caught_up.get(partition, False):
            return max(event_ms, wall_ms)
        return event_ms


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
        if not isinstance(log, InteractionLog) or log.finalized or log.edit_deadline is None:
            stale.append(interaction_id)
            continue
        deadline_ms = int(log.edit_deadline.timestamp() * 1000)
        if deadline_ms + grace_ms > clock_ms:
            plan.writes.append(StateWrite(interaction_id, stored.version, log, ttl.ttl_ms(log, now_ms),
                                          deadline=(partition, deadline_ms)))
            continue
        final = finalize(log)
        plan.snapshots.append((partition, encoded_snapshot(final, Trigger.FINALIZED)))
        plan.writes.append(
            StateWrite(interaction_id, stored.version, tombstone_of(final), ttl.ttl_ms(final, now_ms),
                       unschedule_partition=partition)
        )
        plan.closed.append((interaction_id, deadline_ms))
    store.unschedule(partition, stale)
    return plan
