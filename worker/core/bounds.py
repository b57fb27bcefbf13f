"""Bounds the fold applies beyond decode: event time against the wall clock, attributes per interaction,
and whether a folded log can still be encoded and produced as a snapshot.

Pure: the wall clock is a parameter (`now_ms`), read by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas import fast
from schemas.common import Trigger
from schemas.events import MAX_ATTRIBUTES, AttributesEvent, Rejection, RejectReason
from schemas.fast import AnyEvent
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, to_us

ENCODE_ERRORS = (TypeError, ValueError, OverflowError)
"""What encoding a state or snapshot can raise (orjson's JSONEncodeError is a TypeError; pydantic's
ValidationError a ValueError)."""
SNAPSHOT_SLACK_BYTES = 64
"""Room kept under the snapshot bound: the same log finalized, or at a longer version, is a few bytes longer."""
SNAPSHOT_OVER_STATE_BYTES = 4096
"""A log's snapshot is at most twice its stored document and this many bytes: every text of the snapshot is a
copy of one in the document (the notes at most twice, as notes and wrap-up note; a viewed record at most twice,
as a candidate and as the chosen one), but for the fixed keys and times (under 1 KB) and a derived subject (255
characters, each at most 6 bytes escaped). `tests/unit/test_bounds_fold.py` checks it over drawn histories."""


def snapshot_surely_fits(document: bytes, max_snapshot_bytes: int | None) -> bool:
    """Whether the snapshot of the log stored as `document` fits `max_snapshot_bytes` without writing it."""
    return max_snapshot_bytes is None or \
        2 * len(document) + SNAPSHOT_OVER_STATE_BYTES + SNAPSHOT_SLACK_BYTES <= max_snapshot_bytes


def future_time(event: AnyEvent, now_ms: int, max_skew_ms: int, *, clock: str = "the worker's clock",
                ) -> Rejection | None:
    """`future_time` when the event's time is more than `max_skew_ms` ahead of `now_ms`, else None.

    Such an event must not reach the fold or the partition clock: its time would close other
    interactions' windows early. `clock` names what `now_ms` was read from, for the message.
    """
    ahead_ms = to_us(event.time) // 1000 - now_ms
    if ahead_ms <= max_skew_ms:
        return None
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    message = (f"time: {event.time.isoformat().replace('+00:00', 'Z')} is {ahead_ms / 1000:.0f} s ahead of "
               f"{clock} ({now}); at most {max_skew_ms / 1000:.0f} s allowed")
    return Rejection(event.id, event.subject, RejectReason.FUTURE_TIME, message)


def too_many_attributes(log: InteractionLog | None, event: AnyEvent) -> Rejection | None:
    """`too_large` when an attributes event would take the interaction over `MAX_ATTRIBUTES` keys."""
    if not isinstance(event, (AttributesEvent, fast.AttributesEvent)):
        return None
    keys = {key for key, _stamp, _value in log.attributes} if log is not None else set()
    total = len(keys | event.data.attributes.keys())
    if total <= MAX_ATTRIBUTES:
        return None
    return Rejection(event.id, event.subject, RejectReason.TOO_LARGE,
                     f"data.attributes: the interaction would hold {total} attribute keys, "
                     f"at most {MAX_ATTRIBUTES} allowed")


def encoding_problem(log: InteractionLog, event: AnyEvent, trigger: Trigger, max_snapshot_bytes: int | None,
                     ) -> Rejection | None:
    """Why `event`, folded into `log`, cannot be kept: its state or snapshot does not encode (`invalid`),
    or either would be over `max_snapshot_bytes` (`too_large`: both are produced to Kafka, the snapshot
    to the upserts topic, the state to the changelog); None when it can."""
    try:
        state_bytes = len(log.to_bytes())
        snapshot_bytes = len(snapshot_json(log, trigger))
    except ENCODE_ERRORS as error:
        return Rejection(event.id, event.subject, RejectReason.INVALID,
                         f"{event.type}: the log cannot be encoded with this event: {type(error).__name__}: {error}")
    if max_snapshot_bytes is None or max(state_bytes, snapshot_bytes) + SNAPSHOT_SLACK_BYTES <= max_snapshot_bytes:
        return None
    what, size_bytes = ("snapshot", snapshot_bytes) if snapshot_bytes >= state_bytes else ("state", state_bytes)
    return Rejection(event.id, event.subject, RejectReason.TOO_LARGE,
                     f"{what}: the log would be {size_bytes} bytes with this event, over the bound of "
                     f"{max_snapshot_bytes - SNAPSHOT_SLACK_BYTES} bytes (ILOG_MAX_SNAPSHOT_BYTES={max_snapshot_bytes} "
                     f"less {SNAPSHOT_SLACK_BYTES} bytes of room)")
