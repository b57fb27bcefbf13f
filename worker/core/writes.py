"""What a batch plan writes: a state as read (`Stored`) and a fenced write of a new one (`StateWrite`)."""

from __future__ import annotations

from dataclasses import dataclass

from worker.core.state import InteractionLog, Tombstone

State = InteractionLog | Tombstone


@dataclass(frozen=True)
class Stored:
    """A state as read: its version (0 = nothing stored) and the log or tombstone."""

    version: int
    state: State | None


@dataclass(frozen=True)
class StateWrite:
    interaction_id: str
    expected_version: int
    state: State
    ttl_ms: int
    deadline: tuple[int, int] | None = None  # (partition, deadline_ms): schedule the window close
    unschedule_partition: int | None = None  # remove the id from this partition's deadline set
    document: bytes | None = None  # `state.to_bytes()` when the planner encoded it already
    # a state put back after the store lost it (changelog, cache): its hash is marked restored, since
    # whatever else the hash held (the sync state) is gone (`worker.store.keys`, field `r`)
    restored: bool = False
