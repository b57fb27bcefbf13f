"""The in-memory twin of the Redis store, for fast service tests and the stage unit tests."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence

from worker.core.fold import held_log
from worker.core.state import InteractionLog, StoredLog
from worker.core.writes import State, StateWrite, Stored
from worker.errors import StateLostError
from worker.store.port import WriteResult


class MemoryStore:
    """In-memory twin of RedisStore with the same fencing; TTLs are recorded, not enforced. Reads and
    writes may come from two threads (the fold stage writes on a thread of its own), as Redis allows."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self.states: dict[str, tuple[int, State]] = {}
        self.ttl_ms: dict[str, int] = {}
        self.deadlines: dict[int, dict[str, int]] = {}
        self.marks: set[int] = set()

    def flush(self) -> None:
        """Lose everything, as FLUSHALL or a restart without persistence would."""
        self.states.clear()
        self.ttl_ms.clear()
        self.deadlines.clear()
        self.marks.clear()

    def lose_write(self, interaction_id: str, older: State | None) -> None:
        """Go back to an older state (None: no state), as a failover to a replica that had not received
        the last writes would; the marks and deadline entries stay."""
        if older is None:
            self.states.pop(interaction_id, None)
        else:
            self.states[interaction_id] = (older.version, older)

    def marked(self, partitions: Sequence[int]) -> set[int]:
        return self.marks & set(partitions)

    def mark(self, partitions: Sequence[int]) -> None:
        self.marks.update(partitions)

    def load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]:
        with self._lock:
            return self._load(interaction_ids, held=held)

    def _load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]:
        """As Redis would give them back: with `held`, an open log as its document where `held_log` holds it."""
        loaded: dict[str, Stored] = {}
        for interaction_id in interaction_ids:
            version, state = self.states.get(interaction_id, (0, None))
            if held and isinstance(state, InteractionLog) and not state.finalized:
                state = held_log(state.to_bytes()) or state
            loaded[interaction_id] = Stored(version, state)
        return loaded

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        with self._lock:
            return self._write(writes, guard)

    def _write(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> WriteResult:
        if any(item.deadline is not None and item.unschedule_partition is not None for item in writes):
            raise ValueError("a write either schedules or unschedules a deadline, not both")
        unmarked = sorted(set(guard) - self.marks)
        if writes and unmarked:
            raise StateLostError(unmarked[:1])
        fenced: list[str] = []
        regressed: dict[str, int] = {}
        for item in writes:
            stored_version = self.states.get(item.interaction_id, (0, None))[0]
            if stored_version != item.expected_version:
                fenced.append(item.interaction_id)
                if stored_version < item.expected_version:
                    regressed[item.interaction_id] = stored_version
                continue  # like the script: a fenced-out write leaves the deadline entry alone too
            state = item.state  # held as Redis holds it: read back, a log is an `InteractionLog`
            self.states[item.interaction_id] = (state.version, state.log() if isinstance(state, StoredLog) else state)
            self.ttl_ms[item.interaction_id] = item.ttl_ms
            if item.deadline is not None:
                partition, deadline_ms = item.deadline
                self.deadlines.setdefault(partition, {})[item.interaction_id] = deadline_ms
            if item.unschedule_partition is not None:
                self.deadlines.get(item.unschedule_partition, {}).pop(item.interaction_id, None)
        return WriteResult(fenced_out=fenced, regressed=regressed)

    def send_write(
        self, writes: Sequence[StateWrite], guard: Sequence[int] = (),
    ) -> Callable[[], WriteResult] | None:
        return None  # nothing to overlap in memory: a caller that overlaps writes on a thread of its own

    def due(self, partition: int, until_ms: int, limit: int) -> list[tuple[str, int]]:
        with self._lock:
            entries = sorted(self.deadlines.get(partition, {}).items(), key=lambda kv: (kv[1], kv[0]))
        return [(member, score) for member, score in entries if score <= until_ms][:limit]

    def open_windows(self, partition: int) -> int:
        return len(self.deadlines.get(partition, {}))

    def due_many(self, until_ms: dict[int, int], limit: int) -> dict[int, list[tuple[str, int]]]:
        return {partition: self.due(partition, until, limit) for partition, until in until_ms.items()}

    def open_windows_many(self, partitions: Sequence[int]) -> dict[int, int]:
        return {partition: self.open_windows(partition) for partition in partitions}

    def unschedule(self, partition: int, interaction_ids: Sequence[str]) -> None:
        with self._lock:
            for interaction_id in interaction_ids:
                self.deadlines.get(partition, {}).pop(interaction_id, None)

    def close(self) -> None:
        return None
