"""The wire contract: input events and the log snapshot that leaves the fold stage."""

from schemas.common import Customer, Direction, Media, RecordRef, RecordSystem, State, Trigger
from schemas.decode import decode_event
from schemas.events import Event, Rejection, RejectReason
from schemas.snapshot import LogSnapshot

__all__ = [
    "Customer",
    "Direction",
    "Event",
    "LogSnapshot",
    "Media",
    "RecordRef",
    "RecordSystem",
    "RejectReason",
    "Rejection",
    "State",
    "Trigger",
    "decode_event",
]
