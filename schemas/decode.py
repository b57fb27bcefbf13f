"""`decode_event`: Kafka message (or file line) → typed `Event` or `Rejection`. Never raises.

An event over `MAX_EVENT_BYTES` is refused `too_large` before anything parses it. A field over its
size bound is `too_large` too (the message names the field), when that is all that is wrong with the
event; any other problem makes it `invalid`.

The fast path is one `validate_json` on the raw bytes. Only when that fails is the message
parsed again (orjson, or `json` where the two could differ) to build a readable rejection (which
field, what is wrong).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from schemas.common import MAX_FIELD_CHARS
from schemas.events import EVENT_TYPES, MAX_EVENT_BYTES, Event, Rejection, RejectReason

_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
_MAX_ERRORS_IN_MESSAGE = 3
_BINARY_MODE_KEYS = ("ce_specversion", "ce_type")
_KNOWN_TYPES = ", ".join(sorted(EVENT_TYPES))
_ORJSON_MAX_BRACKETS = 100
"""Below this many `[`/`{`, `json.loads` cannot hit its recursion limit, where orjson would not."""
_MESSAGE_KEYS = ("id", "subject", "type")
_PATH_PART_CHARS = 64
MAX_BYTES_READ_FOR_IDS = 16 * 1024 * 1024
"""Up to this size an event over the bound is still parsed (orjson, a few ms) to report its id and subject."""
_SIZE_ERRORS = frozenset({"string_too_long", "too_long"})
"""pydantic error types of a `max_length` bound: a string, or a dict/list with too many items."""

__all__ = ["RejectReason", "Rejection", "data_rejection", "decode_event", "not_json_rejection",
           "unknown_type_rejection"]


def decode_event(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None = None
) -> Event | Rejection:
    """Decode a structured-mode event, or a binary-mode one when `ce_` headers are present."""
    try:
        binary = bool(headers) and any(key in _BINARY_MODE_KEYS for key, _ in headers or ())
        size_bytes = event_bytes(value, headers if binary else None)
        if size_bytes > MAX_EVENT_BYTES:
            return _too_large(size_bytes, headers) if binary else _too_large_structured(size_bytes, value)
        if binary:
            assert headers is not None
            return _decode_binary(value, headers)
        if value is None:
            return Rejection(None, None, RejectReason.INVALID, "empty message: no value")
        try:
            return _ADAPTER.validate_json(value, strict=True)
        except ValidationError as error:
            return _rejection_for(value, error)
    except Exception as error:  # contract: bad input becomes a rejection, never a crash
        return Rejection(None, None, RejectReason.INVALID, f"undecodable: {type(error).__name__}: {error}")


def event_bytes(value: bytes | None, ce_headers: Sequence[tuple[str, bytes | None]] | None) -> int:
    """The size of one event: the value, plus the names and values of its `ce_` headers in binary mode."""
    size = len(value) if value else 0
    for key, raw in ce_headers or ():
        if key.startswith("ce_"):
            size += len(key) + (len(raw) if raw else 0)
    return size


def _too_large(size_bytes: int, ce_headers: Sequence[tuple[str, bytes | None]] | None) -> Rejection:
    named = {key: raw for key, raw in ce_headers or () if raw is not None}
    return Rejection(_header_text(named.get("ce_id")), _header_text(named.get("ce_subject")), RejectReason.TOO_LARGE,
                     f"event: {size_bytes} bytes, over the bound of {MAX_EVENT_BYTES} bytes")


def _too_large_structured(size_bytes: int, value: bytes | None) -> Rejection:
    """`too_large` with the id and subject of the JSON object `value`, when it is one (not validated)."""
    document: object = None
    if value is not None and len(value) <= MAX_BYTES_READ_FOR_IDS:
        with contextlib.suppress(orjson.JSONDecodeError):  # not JSON, or nested past orjson's limit: no ids
            document = orjson.loads(value)
    ids = document if isinstance(document, dict) else {}
    return Rejection(_string_or_none(ids.get("id")), _string_or_none(ids.get("subject")), RejectReason.TOO_LARGE,
                     f"event: {size_bytes} bytes, over the bound of {MAX_EVENT_BYTES} bytes")


def _header_text(raw: bytes | None) -> str | None:
    return None if raw is None else _string_or_none(raw.decode("utf-8", errors="replace"))


def _decode_binary(value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> Event | Rejection:
    envelope: dict[str, Any] = {}
    for key, raw in headers:
        if key.startswith("ce_") and raw is not None:
            envelope[key[3:]] = raw.decode("utf-8", errors="replace")
    sequence = envelope.get("sequence")
    if isinstance(sequence, str) and sequence.isascii() and sequence.isdigit():
        envelope["sequence"] = int(sequence)  # a header is text; in structured mode a sequence is a number
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
    details = error.errors(include_url=False, include_context=False, include_input=False)
    try:
        invalid_json = bool(details) and details[0]["type"] == "json_invalid"
        document = json.loads(value) if invalid_json else parse_for_message(value)
    except (UnicodeDecodeError, ValueError) as json_error:
        return Rejection(None, None, RejectReason.INVALID, f"not JSON: {_json_problem(json_error)}")
    if not isinstance(document, dict):
        return Rejection(None, None, RejectReason.INVALID,
                         f"not a JSON object: got {type(document).__name__}")
    event_id, subject = _string_or_none(document.get("id")), _string_or_none(document.get("subject"))
    event_type = document.get("type")
    if isinstance(event_type, str) and event_type not in EVENT_TYPES:
        return _unknown_type(event_id, subject, event_type)
    return _invalid(event_id, subject, details, event_type)


def unknown_type_rejection(value: bytes) -> Rejection | None:
    """What `decode_event(value)` gives a JSON object whose `type` is a string no model takes (a structured-mode
    event within the size bound), worded alike; None for anything else. No model accepts such an object, so
    `decode_event` words it from the parsed object alone: this skips only the models' failing validation."""
    try:
        document = parse_for_message(value)
    except Exception:  # not JSON, or nested past `json`'s recursion limit: `decode_event` words it (and never raises)
        return None
    event_type = document.get("type") if isinstance(document, dict) else None
    if not isinstance(event_type, str) or event_type in EVENT_TYPES:
        return None
    return _unknown_type(_string_or_none(document.get("id")), _string_or_none(document.get("subject")), event_type)


def not_json_rejection(value: bytes) -> Rejection | None:
    """What `decode_event(value)` gives a structured-mode event within the size bound that `json` cannot read,
    worded alike; None when `json` reads it. What `json` refuses the models' parser refuses too, and
    `decode_event` then words the rejection from `json`'s error alone: this skips only the models' failing
    parse."""
    try:
        json.loads(value)
    except (UnicodeDecodeError, ValueError) as error:
        return Rejection(None, None, RejectReason.INVALID, f"not JSON: {_json_problem(error)}")
    except Exception:  # nested past the recursion limit: `decode_event` words it (and never raises)
        return None
    return None


def data_rejection(event_id: str, subject: str, event_type: str, error: ValidationError) -> Rejection | None:
    """What `decode_event` gives an event whose envelope the models accept and whose `data` their data model
    refuses with `error` (validated strict, as `decode_event` validates): the same details under `data`. None
    when the data is not JSON the models read (`decode_event` then refuses the whole message as not JSON)."""
    details = error.errors(include_url=False, include_context=False, include_input=False)
    if any(detail["type"].startswith("json_") for detail in details):
        return None
    for detail in details:
        detail["loc"] = ("data", *detail["loc"])
    return _invalid(_string_or_none(event_id), _string_or_none(subject), details, event_type)


def _unknown_type(event_id: str | None, subject: str | None, event_type: str) -> Rejection:
    return Rejection(event_id, subject, RejectReason.UNKNOWN_TYPE,
                     f"type: unknown event type {event_type!r} (known: {_KNOWN_TYPES})")


def _invalid(event_id: str | None, subject: str | None, details: list[ErrorDetails], event_type: object) -> Rejection:
    too_large = all(detail["type"] in _SIZE_ERRORS or _over_sequence(detail, event_type) for detail in details)
    reason = RejectReason.TOO_LARGE if details and too_large else RejectReason.INVALID
    return Rejection(event_id, subject, reason, _describe(details, event_type))


def _over_sequence(detail: ErrorDetails, event_type: object) -> bool:
    """A `sequence` over its bound (2^63 - 1, CONTRACT.md "Bounds"): `too_large`, as a field over its size bound is.
    One under 0 is `invalid`: it is not over anything. (Discriminated unions prefix the path with the tag.)"""
    return detail["type"] == "less_than_equal" and tuple(detail["loc"]) in {("sequence",), (event_type, "sequence")}


def parse_for_message(value: bytes) -> Any:
    """`json.loads(value)` as far as a rejection reads it: whether it is an object, its id, subject, type.

    By orjson (several times faster) when that gives an object whose three fields are strings or
    absent. orjson refuses some of what `json` takes (NaN, lone surrogates) and reads big integers
    as floats: those cases, anything but such an object, and deep nesting (where `json` could hit
    the recursion limit) go to `json`.
    """
    if value.count(b"{") + value.count(b"[") < _ORJSON_MAX_BRACKETS:
        try:
            document = orjson.loads(value)
        except orjson.JSONDecodeError:
            pass
        else:
            if type(document) is dict and all(
                type(document.get(key, "")) is str for key in _MESSAGE_KEYS
            ):
                return document
    return json.loads(value)


def _describe(details: list[ErrorDetails], event_type: object) -> str:
    problems = []
    for detail in details[:_MAX_ERRORS_IN_MESSAGE]:
        loc = list(detail["loc"])
        if loc and loc[0] == event_type:  # discriminated unions prefix the path with the tag
            loc = loc[1:]
        path = ".".join(_path_part(part) for part in loc) or "event"
        message = detail["msg"]
        if detail["type"] == "union_tag_not_found":
            path, message = "type", "Field required"
        elif detail["type"] == "union_tag_invalid":  # a string not among the types is unknown_type, before this
            path, message = "type", "Input should be a valid string, one of the event types"
        problems.append(f"{path}: {message}")
    extra = len(details) - len(problems)
    suffix = f" (and {extra} more)" if extra > 0 else ""
    return "; ".join(problems) + suffix


def _path_part(part: str | int) -> str:
    """A step of an error's path; a key a producer chose (an attribute's) is cut to a readable length."""
    text = str(part)
    return text if len(text) <= _PATH_PART_CHARS else text[:_PATH_PART_CHARS] + "…"


def _json_problem(error: Exception) -> str:
    if isinstance(error, json.JSONDecodeError):
        return f"{error.msg} at char {error.pos}"
    return str(error)


def _string_or_none(value: object) -> str | None:
    """An id or subject for the rejection: cut to its bound, lone surrogates replaced (it goes into headers)."""
    if not isinstance(value, str):
        return None
    return value[:MAX_FIELD_CHARS].encode("utf-8", errors="replace").decode("utf-8")
