"""What the fold stage keeps between batches when it overlaps I/O with work (`FoldStage` has the order).

A batch's fenced write is left in flight while the main thread reads, decodes and plans the next
batch: on one Redis node sent now and answered later (`RedisStore.send_write`), otherwise on one
writer thread (`StoreWriter`). The next plan must see the states the write in flight will store
before Redis acknowledges them: `Overlay` holds them, in front of the state cache, until the write
lands. Batches whose snapshots are produced but not yet acknowledged wait in `AwaitingDelivery`
(their offsets only).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from worker.core.batch import BatchPlan, Record
from worker.core.writes import StateWrite, Stored
from worker.kafka.clients import highest_offsets
from worker.store.port import LogStore, WriteResult


@dataclass
class Planned:
    """One planning attempt of a batch: what it loaded and what it would write, emit and dead-letter."""

    records: Sequence[Record]
    partition_of: dict[str, int]  # interaction id → the partition its events arrive on
    loaded: dict[str, Stored]
    plan: BatchPlan
    now_ms: int


@dataclass
class InFlight:
    """A batch whose first write attempt was sent (`write` answers it, or raises what the store raised)."""

    planned: Planned
    write: Callable[[], WriteResult]
    started_s: float  # perf_counter at the start of the batch (batch duration metric)
    # the interactions whose state the batch writes or whose snapshot it emits (not those it only rejects)
    emitting: frozenset[str] = frozenset()

    @classmethod
    def sent(cls, planned: Planned, write: Callable[[], WriteResult], started_s: float) -> InFlight:
        plan = planned.plan
        emitting = frozenset(w.interaction_id for w in plan.writes) | {s.interaction_id for _, s in plan.snapshots}
        return cls(planned, write, started_s, emitting)


class StoreWriter:
    """Runs store writes on one thread of its own, one at a time."""

    def __init__(self, store: LogStore) -> None:
        self._store = store
        self._executor: ThreadPoolExecutor | None = None

    def submit(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> Callable[[], WriteResult]:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ilog-fold-writer")
        future: Future[WriteResult] = self._executor.submit(self._store.write, writes, guard)
        return future.result

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None


def written_now(store: LogStore, writes: Sequence[StateWrite], guard: Sequence[int]) -> Callable[[], WriteResult]:
    """The write made on the calling thread; its answer (or its error) handed out when asked."""
    if not writes:
        return WriteResult
    try:
        result = store.write(writes, guard)
    except Exception as exc:  # raised where the caller lands the batch, as a thread's would be
        error = exc

        def failed() -> WriteResult:
            raise error

        return failed
    return lambda: result


class Overlay:
    """The states the write in flight will store, by interaction id; read before the state cache. The writes
    are held as they are: the next batch reads back few of them, so a `Stored` is made only for those."""

    def __init__(self) -> None:
        self.writes: dict[str, StateWrite] = {}

    def hold(self, writes: Iterable[StateWrite]) -> None:
        self.writes = {w.interaction_id: w for w in writes}

    def found(self, interaction_ids: Iterable[str]) -> dict[str, Stored]:
        """The held states of these ids, as the store will hold them."""
        held = self.writes
        return {i: Stored(w.state.version, w.state) for i in interaction_ids if (w := held.get(i)) is not None}

    def clear(self) -> None:
        self.writes = {}


@dataclass
class AwaitingDelivery:
    """Batches whose snapshots and dead letters are produced, oldest first: their offsets wait for the flush.
    Only the offsets are kept (the batch's records and plan are garbage by then)."""

    batches: list[dict[tuple[str, int], int]] = field(default_factory=list)

    def add(self, records: Sequence[Record]) -> None:
        self.batches.append(highest_offsets(records))

    def take(self, skip_partitions: frozenset[int] = frozenset()) -> dict[tuple[str, int], int]:
        """The offsets to store for every waiting batch (the caller has flushed); the list is emptied."""
        positions: dict[tuple[str, int], int] = {}
        for offsets in self.batches:
            for key, offset in offsets.items():
                if key[1] not in skip_partitions:
                    positions[key] = max(positions.get(key, 0), offset)
        self.batches = []
        return positions
