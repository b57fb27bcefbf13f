"""`decode_event`: Kafka message (or file line) → typed `Event` or `Rejection`. Never raises.

The fast path is one `validate_json` on the raw bytes. Only when that fails is the message
parsed again with `json` to build a readable rejection (which field, what is wrong).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from pydantic import TypeAdapter, ValidationError

from schemas.events import EVENT_TYPES, Event, Rejection, RejectReason

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_MAX_ERRORS_IN_MESSAGE = 3
_BINARY_MODE_KEYS = ("ce_specversion", "ce_type")

__all__ = ["RejectReason", "Rejection", "decode_event"]


def decode_event(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None = None
) -> Event | Rejection:
    """Decode a structured-mode event, or a binary-mode one when `ce_` headers are present."""
    try:
        if headers and any(key in _BINARY_MODE_KEYS for key, _ in headers):
            return _decode_binary(value, headers)
        if value is None:
            return Rejection(None, None, RejectReason.INVALID, "empty message: no value")
        try:
            return _ADAPTER.validate_json(value, strict=True)
        except ValidationError as error:
            return _rejection_for(value, error)
    except Exception as error:  # contract: bad input becomes a rejection, never a crash
        return Rejection(None, None, RejectReason.INVALID, f"undecodable: {type(error).__name__}: {error}")


def _decode_binary(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> Event | Rejection:
    envelope: dict[str, Any] = {}
    for key, raw in headers:
        if key.startswith("ce_") and raw is not None:
            envelope[key[3:]] = raw.decode("utf-8", errors="replace")
    event_id, subject = _string_or_none(envelope.get("id")), _string_or_none(envelope.get("subject"))
    if value:
        try:
            envelope["data"] = json.loads(value)
        except (UnicodeDecodeError, ValueError) as error:
            problem = f"data: not JSON: {_json_problem(error)}"
            return Rejection(event_id, subject, RejectReason.INVALID, problem)
    document = json.dumps(envelope).encode()
    try:
        return _ADAPTER.validate_json(document, strict=True)
    except ValidationError as error:
        return _rejection_for(document, error)


def _rejection_for(value: bytes, error: ValidationError) -> Rejection:
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, ValueError) as json_error:
        return Rejection(None, None, RejectReason.INVALID, f"not JSON: {_json_problem(json_error)}")
    if not isinstance(document, dict):
        return Rejection(None, None, RejectReason.INVALID,
                         f"not a JSON object: got {type(document).__name__}")
    event_id, subject = _string_or_none(document.get("id")), _string_or_none(document.get("subject"))
    event_type = document.get("type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        known = ", ".join(sorted(EVENT_TYPES))
        return Rejection(event_id, subject, RejectReason.UNKNOWN_TYPE,
                         f"type: unknown event type {event_type!r} (known: {known})")
    return Rejection(event_id, subject, RejectReason.INVALID, _describe(error, event_type))


def _describe(error: ValidationError, event_type: object) -> str:
    problems = []
    for detail in error.errors(include_url=False)[:_MAX_ERRORS_IN_MESSAGE]:
        loc = list(detail["loc"])
        if loc and loc[0] == event_type:  # discriminated unions prefix the path with the tag
            loc = loc[1:]
        path = ".".join(str(part) for part in loc) or "event"
        message = detail["msg"]
        if detail["type"] == "union_tag_not_found":
            path, message = "type", "Field required"
        problems.append(f"{path}: {message}")
    extra = error.error_count() - len(problems)
    suffix = f" (and {extra} more)" if extra > 0 else ""
    return "; ".join(problems) + suffix


def _json_problem(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at char {error.pos}"
    return str(error)


def _string_or_none(value: object) -> str | None:
    return value[:255] if isinstance(value, str) else None
