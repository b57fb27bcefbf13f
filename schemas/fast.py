"""A compiled decoder (msgspec) for the commonest events, for the fold stage's hot loop.

`decode_event_fast(value, headers)` gives what `schemas.decode.decode_event` gives, faster for the events
it knows: connected, held, resumed, disconnected, record.viewed, log.opened, interaction.wrapup,
interaction.attributes, and log.updated without `name` or `related_to`. Those come back as `FastEvent`s:
msgspec structs with the attributes of the pydantic models that the fold reads (`type`, `id`, `subject`,
`time` as an aware UTC datetime, `sequence`, `data`, and for log.updated `data.model_fields_set`). The data
of connected and record.viewed holds record refs and a customer, which the state and the snapshot keep
as models: their JSON goes to the data model's own validator (strict, as `decode_event` validates), so
`data` is the very model `decode_event` gives. Everything else — the other types, binary mode, an event
over the size bound, and any event the structs or the data models refuse or that is not exactly the
accepted form — goes to `decode_event`, which gives the model and words every rejection as before. Three
refusals are worded here, as `decode_event` words them, without the models' failing validation (which cost
a dead-lettered event three to four times an accepted one): a message `json` cannot read, a type no model
takes, and connected or viewed data its model refuses in an envelope the structs accepted. A message that is
not UTF-8 goes to the models before msgspec reads it: msgspec skips the bytes of a field it ignores unread,
where the models refuse the whole message. So the fast path accepts only events the models accept, with the
same values, and refuses with the models' words (`tests/unit/test_fast_decode.py` compares both over
generated events, their mutations and sample lines with bytes changed); the models in `schemas.events` stay
the contract.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, ClassVar, Literal

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType
from pydantic import ValidationError

from schemas.common import MAX_FIELD_CHARS
from schemas.decode import data_rejection, decode_event, not_json_rejection, unknown_type_rejection
from schemas.events import (
    _RFC3339,
    MAX_ATTRIBUTE_KEY_CHARS,
    MAX_ATTRIBUTE_VALUE_CHARS,
    MAX_ATTRIBUTES,
    MAX_EVENT_BYTES,
    MAX_SEQUENCE,
    MAX_TEXT_CHARS,
    TRACEPARENT_REGEX,
    ConnectedData,
    Event,
    EventModel,
    RecordViewedData,
    Rejection,
)

__all__ = ["AnyEvent", "FastEvent", "decode_event_fast"]

_Id = Annotated[str, Meta(min_length=1, max_length=MAX_FIELD_CHARS)]
_Bounded = Annotated[str, Meta(max_length=MAX_FIELD_CHARS)]
_Text = Annotated[str, Meta(max_length=MAX_TEXT_CHARS)]
_BINARY_MODE_KEYS = ("ce_specversion", "ce_type")


class _Data(Struct, frozen=True, gc=False):
    """Unknown fields are ignored, as the models ignore them."""


class EmptyData(_Data, frozen=True, gc=False):
    pass


class DisconnectedData(_Data, frozen=True, gc=False):
    reason: Annotated[str, Meta(max_length=1000)] | None = None


class LogUpdatedData(_Data, frozen=True, gc=False):
    notes: _Text | UnsetType | None = UNSET
    subject: _Bounded | UnsetType | None = UNSET
    name: msgspec.Raw | UnsetType = UNSET  # sent: the models decode it (a ref)
    related_to: msgspec.Raw | UnsetType = UNSET

    @property
    def model_fields_set(self) -> set[str]:
        """The fields that were sent, as the model's `model_fields_set`."""
        return {name for name in ("notes", "subject") if getattr(self, name) is not UNSET}


class WrapupData(_Data, frozen=True, gc=False):
    code: _Id
    note: _Text | None = None


class AttributesData(_Data, frozen=True, gc=False):
    attributes: Annotated[
        dict[Annotated[str, Meta(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)],
             Annotated[str, Meta(max_length=MAX_ATTRIBUTE_VALUE_CHARS)]],
        Meta(max_length=MAX_ATTRIBUTES),
    ]


_EMPTY = EmptyData()
_NOT_DISCONNECTED = DisconnectedData()


if TYPE_CHECKING:
    _TimeText = datetime
    _ConnectedJson = ConnectedData
    _RecordViewedJson = RecordViewedData
else:
    _TimeText = str  # the decoder reads the text; `_fast` puts the datetime in its place before anyone sees it
    _ConnectedJson = _RecordViewedJson = msgspec.Raw  # the JSON; `_fast` puts the validated model in its place


class _Envelope(Struct, gc=False, kw_only=True, tag_field="type"):
    specversion: Literal["1.0"]
    id: _Id
    source: Annotated[str, Meta(min_length=1, max_length=1000)]
    subject: _Id
    time: _TimeText
    sequence: Annotated[int, Meta(ge=0, le=MAX_SEQUENCE)] | None = None
    # anything but a well-formed one goes to the models, which ignore it (`schemas.events.trace_context`)
    traceparent: Annotated[str, Meta(pattern=TRACEPARENT_REGEX)] | None = None


class ConnectedEvent(_Envelope, tag="interaction.connected"):
    type: ClassVar[str] = "interaction.connected"
    data: _ConnectedJson


class HeldEvent(_Envelope, tag="interaction.held"):
    type: ClassVar[str] = "interaction.held"
    data: EmptyData = _EMPTY


class ResumedEvent(_Envelope, tag="interaction.resumed"):
    type: ClassVar[str] = "interaction.resumed"
    data: EmptyData = _EMPTY


class DisconnectedEvent(_Envelope, tag="interaction.disconnected"):
    type: ClassVar[str] = "interaction.disconnected"
    data: DisconnectedData = _NOT_DISCONNECTED


class RecordViewedEvent(_Envelope, tag="record.viewed"):
    type: ClassVar[str] = "record.viewed"
    data: _RecordViewedJson


class LogOpenedEvent(_Envelope, tag="log.opened"):
    type: ClassVar[str] = "log.opened"
    data: EmptyData = _EMPTY


class LogUpdatedEvent(_Envelope, tag="log.updated"):
    type: ClassVar[str] = "log.updated"
    data: LogUpdatedData


class WrapupEvent(_Envelope, tag="interaction.wrapup"):
    type: ClassVar[str] = "interaction.wrapup"
    data: WrapupData


class AttributesEvent(_Envelope, tag="interaction.attributes"):
    type: ClassVar[str] = "interaction.attributes"
    data: AttributesData


FastEvent = (ConnectedEvent | HeldEvent | ResumedEvent | DisconnectedEvent | LogUpdatedEvent | RecordViewedEvent
             | LogOpenedEvent | WrapupEvent | AttributesEvent)
"""An event decoded by the fast path; `time` is replaced by the aware UTC datetime the models give."""
AnyEvent = EventModel | FastEvent
"""What the fold takes: a model (`schemas.events.Event`) or a struct of the fast path."""

_DECODER = msgspec.json.Decoder(FastEvent)
_AT_TYPE = "at `$.type`"
"""How msgspec's refusal of a tag ends (`Invalid value 'x' - at `$.type``)."""
_DATA_MODELS = {ConnectedEvent: ConnectedData.__pydantic_validator__,
                RecordViewedEvent: RecordViewedData.__pydantic_validator__}
"""The events whose `data` the models validate, by struct: the validator `decode_event` runs on it too."""


def decode_event_fast(
    value: bytes | None, headers: Sequence[tuple[str, bytes | None]] | None = None,
) -> Event | FastEvent | Rejection:
    """`decode_event(value, headers)`, through the compiled decoder when the event is one it knows."""
    if value is None or len(value) > MAX_EVENT_BYTES or (headers and _binary(headers)):
        return decode_event(value, headers)
    answer = _fast(value)
    return decode_event(value, headers) if answer is None else answer


def _binary(headers: Sequence[tuple[str, bytes | None]]) -> bool:
    return any(key in _BINARY_MODE_KEYS for key, _ in headers)


def _fast(value: bytes) -> FastEvent | Rejection | None:
    """The event when the compiled decoder and the models' remaining rules accept it; the models' rejection,
    worded as `decode_event` words it, for three refusals it can tell without running the models (not JSON; a
    type no model takes; connected or viewed data its model refuses, the envelope being valid); else None."""
    if not value.isascii() and not _utf8(value):
        return None  # msgspec skips the bytes of a field it ignores unread; the models refuse the whole message
    try:
        event = _DECODER.decode(value)
    except msgspec.ValidationError as error:
        # a tag no struct takes: unless it is a string no model takes either, the models word it
        return unknown_type_rejection(value) if str(error).endswith(_AT_TYPE) else None
    except msgspec.DecodeError:  # not JSON to msgspec: when `json` cannot read it either, the models say so
        return not_json_rejection(value)
    if isinstance(event, LogUpdatedEvent) and not _plain_update(event.data):
        return None
    text: str = event.time  # type: ignore[assignment]  # still the text here
    moment = (compiled_time(text) if compiled_time is not None else None) or _utc_time(text)
    if moment is None:
        return None
    validator = _DATA_MODELS.get(type(event))
    if validator is not None:
        try:  # strict, as `decode_event` validates the whole event: the same model, or the same refusal
            event.data = validator.validate_json(bytes(event.data), strict=True)  # type: ignore[arg-type]  # the JSON
        except ValidationError as error:  # the envelope is valid (the structs accepted it): data is all that is wrong
            return data_rejection(event.id, event.subject, event.type, error)
    event.time = moment
    return event


def _utf8(value: bytes) -> bool:
    try:
        value.decode()
    except UnicodeDecodeError:
        return False
    return True


def _plain_update(data: LogUpdatedData) -> bool:
    """At least one field sent (the model's rule), and no ref: the models decode those."""
    return data.name is UNSET and data.related_to is UNSET and (data.notes is not UNSET or data.subject is not UNSET)


compiled_time: Callable[[str], datetime | None] | None = None
"""`_utc_time` compiled (`ilog_native.utc_time`: None for a text it leaves to `_utc_time`), or None. Set by
`worker.core.native`, the one switch of the compiled core: this package does not depend on the worker."""


def _utc_time(text: str) -> datetime | None:
    """`schemas.events.EventTime` as the models read it: the RFC 3339 pattern, then the instant in UTC."""
    if not _RFC3339.match(text):
        return None
    try:
        return datetime.fromisoformat(text.upper()).astimezone(UTC)
    except (ValueError, OverflowError):
        return None
