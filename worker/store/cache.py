"""A write-through cache of the states a fold consumer owns, so a batch loads from Redis only what it lacks.

An entry is the state this consumer last wrote for an interaction (its version and log or
tombstone), filed under the partition the interaction's events arrive on. Fencing keeps it
correct: a write based on a stale entry fails, the stage evicts the id and re-reads it. Entries
are dropped when their partition is revoked or lost (another consumer may write them next) and
when the Redis key they mirror would have expired (so an expired key reads as absent, as it would
from Redis). Bounded: the least recently used entry goes first.

Open logs only: a tombstone is not kept (writing one drops the entry). A finalized interaction gets
no more edits, only the odd duplicate, which reads its tombstone from Redis; keeping the tombstones
made the cache, and the worker's memory, grow with every interaction seen until their keys expired,
rather than with the logs open at a time.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence

from worker.core.state import Tombstone
from worker.core.writes import State, StateWrite, Stored

DEFAULT_CAPACITY = 200_000

Loader = Callable[[Iterable[str]], dict[str, Stored]]


class StateCache:
    """interaction id → (partition, version, state, expiry); LRU-bounded."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[str, tuple[int, Stored, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, interaction_id: str, now_ms: int) -> Stored | None:
        entry = self._entries.get(interaction_id)
        if entry is None:
            return None
        if entry[2] <= now_ms:  # the Redis key has expired by now
            del self._entries[interaction_id]
            return None
        self._entries.move_to_end(interaction_id)
        return entry[1]

    def held(self, interaction_ids: Iterable[str], now_ms: int) -> dict[str, tuple[int, Stored, int]]:
        """The entries held for these ids: id → (partition, state as last written, TTL left in ms)."""
        found: dict[str, tuple[int, Stored, int]] = {}
        for interaction_id in interaction_ids:
            entry = self._entries.get(interaction_id)
            if entry is not None and entry[2] > now_ms:
                found[interaction_id] = (entry[0], entry[1], entry[2] - now_ms)
        return found

    def put(self, interaction_id: str, partition: int, state: State, expires_ms: int) -> None:
        if isinstance(state, Tombstone):
            self._entries.pop(interaction_id, None)
            return
        self._entries[interaction_id] = (partition, Stored(state.version, state), expires_ms)
        self._entries.move_to_end(interaction_id)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def evict(self, interaction_ids: Iterable[str]) -> None:
        for interaction_id in interaction_ids:
            self._entries.pop(interaction_id, None)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        dropped = set(partitions)
        if not dropped:
            return
        for interaction_id in [i for i, entry in self._entries.items() if entry[0] in dropped]:
            del self._entries[interaction_id]

    def load_through(self, load: Loader, interaction_ids: Iterable[str], now_ms: int) -> dict[str, Stored]:
        """Cached states for the ids it holds, `load` (one store round trip) for the rest."""
        found: dict[str, Stored] = {}
        missing: list[str] = []
        for interaction_id in interaction_ids:
            if interaction_id in found:
                continue
            stored = self.get(interaction_id, now_ms)
            if stored is None:
                missing.append(interaction_id)
            else:
                found[interaction_id] = stored
        if missing:
            found.update(load(missing))
        return found

    def written(
        self, writes: Sequence[StateWrite], fenced: Iterable[str], partition_of: Callable[[str], int], now_ms: int,
    ) -> None:
        """Record a write round trip: written states are cached, fenced-out ids evicted."""
        fenced_ids = set(fenced)
        self.evict(fenced_ids)
        entries = self._entries  # `put` inlined: once per write of every batch
        for item in writes:
            interaction_id, state = item.interaction_id, item.state
            if interaction_id in fenced_ids:
                continue
            if isinstance(state, Tombstone):
                entries.pop(interaction_id, None)
                continue
            entries[interaction_id] = (partition_of(interaction_id), Stored(state.version, state),
                                       now_ms + max(item.ttl_ms, 1))
            entries.move_to_end(interaction_id)
        while len(entries) > self.capacity:
            entries.popitem(last=False)
