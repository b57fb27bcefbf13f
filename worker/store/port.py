"""The state store port: interaction logs by id, fenced writes, per-partition deadline sets.

`RedisStore` (`worker.store.redis_store`) is the real one; `MemoryStore` (`worker.store.memory`) is its
in-memory twin. Both run through one behaviour suite (tests/integration/test_store.py). What the sync
stage remembers per target is another port, `worker.store.sync_state.SyncStateStore`. Keys are
documented in `worker.store.keys`.

Marks: a store says which partitions' state it holds (`marked`, `mark`); a guarded `write` refuses
the whole call with `StateLostError` when one of its guarded partitions is not marked (the store lost
its state). A fenced write also tells a state that moved on (another writer) from one that went
backwards (`WriteResult.regressed`: lost writes the marks cannot see).
Errors: `StoreUnavailableError` (wait and retry), `StateLostError`, `StoreError` (anything else).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.core.writes import StateWrite, Stored


@dataclass(frozen=True)
class WriteResult:
    fenced_out: list[str] = field(default_factory=list)  # ids whose stored version was not the one expected
    # the fenced-out ids whose stored version is BELOW the expected one (0: no state), with that version:
    # the store went backwards (a failover lost acknowledged writes), no other writer moved on
    regressed: dict[str, int] = field(default_factory=dict)


class LogStore(Protocol):
    # `held`: open logs as `StoredLog`s where the compiled fold over documents can fold them (the fold stage's)
    def load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]: ...
    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult: ...
    # `write` sent now, answered by the returned call; None: the store cannot split a write (call `write`)
    def send_write(
        self, writes: Sequence[StateWrite], guard: Sequence[int] = (),
    ) -> Callable[[], WriteResult] | None: ...
    def marked(self, partitions: Sequence[int]) -> set[int]: ...
    def mark(self, partitions: Sequence[int]) -> None: ...
    def due(self, partition: int, until_ms: int, limit: int) -> list[tuple[str, int]]: ...
    def open_windows(self, partition: int) -> int: ...
    def due_many(self, until_ms: dict[int, int], limit: int) -> dict[int, list[tuple[str, int]]]: ...
    def open_windows_many(self, partitions: Sequence[int]) -> dict[int, int]: ...
    def unschedule(self, partition: int, interaction_ids: Sequence[str]) -> None: ...
    def close(self) -> None: ...
