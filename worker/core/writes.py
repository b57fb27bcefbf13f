"""What a batch plan writes: a state as read (`Stored`) and a fenced write of a new one (`StateWrite`)."""

from __future__ import annotations

from typing import NamedTuple

from worker.core.state import InteractionLog, StoredLog, Tombstone

State = InteractionLog | StoredLog | Tombstone
"""A state as the stage holds it: an open log (as objects or as its stored document) or a tombstone."""


class Stored(NamedTuple):
    """A state as read: its version (0 = nothing stored) and the log or tombstone.

    NamedTuples, this and `StateWrite`: one of each per changed state on the fold stage's path, and the state
    cache keeps a `Stored` per open log. A tuple is one object built in one call; a frozen dataclass pays an
    `object.__setattr__` per field (0.95 against 0.29 µs for a `StateWrite`) and keeps a `__dict__` beside it."""

    version: int
    state: State | None


class StateWrite(NamedTuple):
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
