"""Which consumed upserts every target is done with, per partition, and so which offset may be stored.

Each consumed record starts with one open share per target. A target gives its share back when it
is done with the record (synced, skipped — including "not wanted" and "already synced" — or
dead-lettered). The offset safe to store for a partition is the lowest offset some target still
holds, or one past the highest consumed when none is held: a slow target holds the offsets back,
never the other targets' work.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

PartitionKey = tuple[str, int]
Position = tuple[str, int, int]  # topic, partition, offset


@dataclass
class _Partition:
    open_shares: dict[int, int] = field(default_factory=dict)  # offset → targets not done; insertion = offset order
    next_offset: int = -1  # one past the highest consumed offset
    stored: int = -1  # last offset handed out by `storable`


class OffsetLedger:
    """Thread-safe: the consumer loop adds and reads, target threads give shares back."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._partitions: dict[PartitionKey, _Partition] = {}

    def add(self, position: Position, shares: int) -> None:
        """A consumed record that `shares` targets have still to finish (0: done already)."""
        topic, partition, offset = position
        with self._lock:
            entry = self._partitions.setdefault((topic, partition), _Partition())
            if shares > 0:
                entry.open_shares[offset] = shares
            entry.next_offset = max(entry.next_offset, offset + 1)

    def done(self, positions: Iterable[Position]) -> None:
        """One target is done with these records; positions of forgotten partitions are ignored."""
        with self._lock:
            for topic, partition, offset in positions:
                entry = self._partitions.get((topic, partition))
                left = None if entry is None else entry.open_shares.get(offset)
                if entry is None or left is None:
                    continue
                if left <= 1:
                    del entry.open_shares[offset]
                else:
                    entry.open_shares[offset] = left - 1

    def storable(self) -> dict[PartitionKey, int]:
        """Per partition whose safe offset moved since the last call: the offset to store."""
        moved: dict[PartitionKey, int] = {}
        with self._lock:
            for key, entry in self._partitions.items():
                safe = next(iter(entry.open_shares), entry.next_offset)
                if safe > entry.stored:
                    entry.stored = safe
                    moved[key] = safe
        return moved

    def forget(self, partitions: Iterable[PartitionKey]) -> None:
        """The partitions went to another owner: nothing of theirs is stored from here on."""
        with self._lock:
            for key in partitions:
                self._partitions.pop(key, None)

