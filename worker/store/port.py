"""The state store port: interaction logs by id, fenced writes, per-partition deadline sets.

`RedisStore` (`worker.store.redis_store`) is the real one; `MemoryStore` (`worker.store.memory`) is its
in-memory twin. Both run through one behaviour suite. Keys are documented in `worker.store.keys`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from worker.core.writes import StateWrite, Stored


@dataclass(frozen=True)
class WriteResult:
    fenced_out: list[str] = field(default_factory=list)  # ids whose stored version had moved on


class LogStore(Protocol):
    def load(self, interaction_ids: Iterable[str]) -> dict[str, Stored]: ...
    def write(self, writes: Sequence[StateWrite]) -> WriteResult: ...
    def due(self, partition: int, until_ms: int, limit: int) -> list[tuple[str, int]]: ...
    def open_windows(self, partition: int) -> int: ...
    def due_many(self, until_ms: dict[int, int], limit: int) -> dict[int, list[tuple[str, int]]]: ...
    def open_windows_many(self, partitions: Sequence[int]) -> dict[int, int]: ...
    def unschedule(self, partition: int, interaction_ids: Sequence[str]) -> None: ...
    def sync_state(self, interaction_id: str, target: str) -> bytes | None: ...
    def close(self) -> None: ...
