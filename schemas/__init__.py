"""The wire contract: input events, the folded log and the snapshot that leaves the fold stage."""

from schemas.common import Customer, Direction, Media, RecordRef, RecordSystem, State, Trigger
from schemas.decode import decode_event
from schemas.events import Event, Rejection, RejectReason
from schemas.log import InteractionLog, Tombstone, state_from_bytes
from schemas.snapshot import LogSnapshot

__all__ = [
    "Customer",
    "Direction",
    "Event",
    "InteractionLog",
    "LogSnapshot",
    "Media",
    "RecordRef",
    "RecordSystem",
    "RejectReason",
    "Rejection",
    "State",
    "Tombstone",
    "Trigger",
    "decode_event",
    "state_from_bytes",
]
