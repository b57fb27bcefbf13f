"""Repair of states that went backwards: a write the store acknowledged and then lost.

An asynchronous Redis failover (a replica promoted before it received the master's last writes)
loses those writes but not the partition marks, so `worker.fold.recovery`'s detection does not see
it. The fenced write does: every write of the stage names the version it read, and the script
reports, for a write it refused, the version stored now. Stored above the expected version: another
writer moved on (re-read and re-fold). Stored below it (or nothing stored): the store went back in
time, and folding new events over that older state would silently drop the lost write's events.

Repair, before the interaction is folded again:
  1. the state this consumer last wrote, when its cache still holds it (the usual case: the
     cache served the version the write expected): written back, fenced on the version now stored;
  2. otherwise the interaction's latest state in the state changelog, when newer than the stored one
     (the changelog partition is read once for all such ids of a write round trip);
  3. otherwise nothing newer is known (the changelog holds every state whose events' offsets are
     committed): the stored state stands and the uncommitted events are folded over it again.
"""

from __future__ import annotations

from collections.abc import Callable

import structlog

from worker.core.writes import Stored
from worker.fold.recovery import StateRestorer, rewrite
from worker.runtime import metrics
from worker.store.port import LogStore

log = structlog.get_logger("ilog.fold")

Held = dict[str, tuple[int, Stored, int]]  # id → (partition, state as last written, TTL left in ms)


class RegressionRepair:
    def __init__(self, store: LogStore, restorer: StateRestorer | None, beat: Callable[[], None]) -> None:
        self.store = store
        self.restorer = restorer
        self.beat = beat

    def repair(self, regressed: dict[str, int], held: Held, partition_of: Callable[[str], int]) -> None:
        """Put back what is known of these states (id → version stored now); one log line for all."""
        writes = [rewrite(partition, i, cached.state, regressed[i], ttl_ms)
                  for i, (partition, cached, ttl_ms) in held.items()
                  if i in regressed and cached.state is not None and cached.version > regressed[i]]
        fenced = set(self.store.write(writes).fenced_out) if writes else set()
        from_cache = [w.interaction_id for w in writes if w.interaction_id not in fenced]
        rest = {i: v for i, v in regressed.items() if i not in set(from_cache)}
        from_changelog = self._from_changelog(rest, partition_of)
        metrics.STATE_REGRESSIONS.inc(len(regressed))
        log.error(
            "state went backwards (lost writes); repaired before folding again", count=len(regressed),
            interaction_ids=sorted(regressed)[:10], from_cache=len(from_cache), from_changelog=len(from_changelog),
            kept=len(regressed) - len(from_cache) - len(from_changelog),
        )

    def _from_changelog(self, stored: dict[str, int], partition_of: Callable[[str], int]) -> list[str]:
        if not stored or self.restorer is None:
            return []
        by_partition: dict[int, dict[str, int]] = {}
        for interaction_id, version in stored.items():
            by_partition.setdefault(partition_of(interaction_id), {})[interaction_id] = version
        restored: list[str] = []
        for partition, wanted in sorted(by_partition.items()):
            restored += self.restorer.restore_ids(partition, wanted, self.beat)
        return restored

