"""Bounds the fold applies beyond decode: event time against the wall clock, attributes per interaction.

Pure: the wall clock is a parameter (`now_ms`), read by the caller.
"""

from __future__ import annotations

from datetime import UTC, datetime

from schemas.events import MAX_ATTRIBUTES, AttributesEvent, Event, Rejection, RejectReason
from worker.core.state import InteractionLog, to_us


def future_time(event: Event, now_ms: int, max_skew_ms: int) -> Rejection | None:
    """`future_time` when the event's time is more than `max_skew_ms` ahead of `now_ms`, else None.

    Such an event must not reach the fold or the partition clock: its time would close other
    interactions' windows early.
    """
    ahead_ms = to_us(event.time) // 1000 - now_ms
    if ahead_ms <= max_skew_ms:
        return None
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    message = (f"time: {event.time.isoformat().replace('+00:00', 'Z')} is {ahead_ms / 1000:.0f} s ahead of the "
               f"worker's clock ({now}); at most {max_skew_ms / 1000:.0f} s allowed")
    return Rejection(event.id, event.subject, RejectReason.FUTURE_TIME, message)


def too_many_attributes(log: InteractionLog | None, event: Event) -> Rejection | None:
    """`too_large` when an attributes event would take the interaction over `MAX_ATTRIBUTES` keys."""
    if not isinstance(event, AttributesEvent):
        return None
    keys = {key for key, _stamp, _value in log.attributes} if log is not None else set()
    total = len(keys | event.data.attributes.keys())
    if total <= MAX_ATTRIBUTES:
        return None
    return Rejection(event.id, event.subject, RejectReason.TOO_LARGE,
                     f"data.attributes: the interaction would hold {total} attribute keys, "
                     f"at most {MAX_ATTRIBUTES} allowed")
