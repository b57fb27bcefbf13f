"""The wire contract: input events, the folded log and the snapshot that leaves the fold stage."""

from schemas.common import Customer, Direction, Media, RecordRef, RecordSystem, State, Trigger
from schemas.snapshot import LogSnapshot

__all__ = [
    "Customer",
    "Direction",
    "LogSnapshot",
    "Media",
    "RecordRef",
    "RecordSystem",
    "State",
    "Trigger",
]
