"""Input events: the CloudEvents 1.0 envelope, one data model per event type, and rejections.

Models are strict on types, enums and timestamps (decode validates with `strict=True`) and
tolerant of extra fields, so producers can add fields without breaking the worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from schemas.common import MAX_FIELD_CHARS, BoundedText, Customer, Direction, Media, RecordRef, UtcDatetime

MAX_TEXT_CHARS = 32_000
"""Upper bound for free text (notes); Salesforce's Task Description holds 32k characters."""
MAX_EVENT_BYTES = 256 * 1024
"""One event as bytes (structured mode: the value; binary mode: the value plus its `ce_` headers)."""
MAX_SEQUENCE = 2**63 - 1
"""`sequence` is a signed 64-bit integer: 0 ≤ sequence < 2^63."""
MAX_ATTRIBUTES = 100
"""Attributes per event, and per interaction (the fold refuses an event that would exceed it)."""
MAX_ATTRIBUTE_KEY_CHARS = 100
MAX_ATTRIBUTE_VALUE_CHARS = 1000


def _numeric_string_to_int(value: Any) -> Any:
    # CloudEvents extension attributes often travel as strings (binary mode headers always do).
    if isinstance(value, str) and value.isascii() and value.isdigit():
        return int(value)
    return value


# The bounds come before the BeforeValidator, so they constrain the integer itself and the JSON Schema
# carries them as `minimum`/`maximum` (after it, pydantic can only publish them as unknown keywords).
SequenceNumber = Annotated[int, Field(ge=0, le=MAX_SEQUENCE), BeforeValidator(_numeric_string_to_int)]
ShortText = Annotated[str, Field(max_length=1000)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)]
AttributeValue = Annotated[str, Field(max_length=MAX_ATTRIBUTE_VALUE_CHARS)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ConnectedData(_Data):
    media: Media
    direction: Direction
    queue: BoundedText | None = None
    agent_id: BoundedText | None = None
    customer: Customer | None = None
    name: RecordRef | None = None
    related_to: RecordRef | None = None


class EmptyData(_Data):
    """`interaction.held`, `interaction.resumed`, `log.opened`: no fields."""


class DisconnectedData(_Data):
    reason: ShortText | None = None


class LogUpdatedData(_Data):
    """An agent edit. A field left out is untouched; a field sent as null is cleared.

    Use `model_fields_set` to tell the two apart. `name`/`related_to` here are explicit agent
    choices: once made, navigation no longer changes that field.
    """

    notes: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None
    subject: BoundedText | None = None
    name: RecordRef | None = None
    related_to: RecordRef | None = None

    @model_validator(mode="after")
    def _at_least_one_field(self) -> LogUpdatedData:
        if not self.model_fields_set:
            raise ValueError("log.updated needs at least one of notes, subject, name, related_to")
        return self


class RecordViewedData(_Data):
    record: RecordRef


class WrapupData(_Data):
    code: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)]
    note: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = None


class AttributesData(_Data):
    attributes: Annotated[dict[AttributeKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES)]


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)]
    source: Annotated[str, Field(min_length=1, max_length=1000)]
    subject: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS, description="the interaction id")]
    time: UtcDatetime
    sequence: SequenceNumber | None = None


class ConnectedEvent(_Envelope):
    type: Literal["interaction.connected"]
    data: ConnectedData


class HeldEvent(_Envelope):
    type: Literal["interaction.held"]
    data: EmptyData = EmptyData()


class ResumedEvent(_Envelope):
    type: Literal["interaction.resumed"]
    data: EmptyData = EmptyData()


class DisconnectedEvent(_Envelope):
    type: Literal["interaction.disconnected"]
    data: DisconnectedData = DisconnectedData()


class LogUpdatedEvent(_Envelope):
    type: Literal["log.updated"]
    data: LogUpdatedData


class RecordViewedEvent(_Envelope):
    type: Literal["record.viewed"]
    data: RecordViewedData


class LogOpenedEvent(_Envelope):
    type: Literal["log.opened"]
    data: EmptyData = EmptyData()


class WrapupEvent(_Envelope):
    type: Literal["interaction.wrapup"]
    data: WrapupData


class AttributesEvent(_Envelope):
    type: Literal["interaction.attributes"]
    data: AttributesData


EventModel = (
    ConnectedEvent
    | HeldEvent
    | ResumedEvent
    | DisconnectedEvent
    | LogUpdatedEvent
    | RecordViewedEvent
    | LogOpenedEvent
    | WrapupEvent
    | AttributesEvent
)
Event = Annotated[EventModel, Field(discriminator="type")]
"""A validated event: envelope fields plus `data` typed by `type`."""

EVENT_MODELS: dict[str, type[_Envelope]] = {
    "interaction.connected": ConnectedEvent,
    "interaction.held": HeldEvent,
    "interaction.resumed": ResumedEvent,
    "interaction.disconnected": DisconnectedEvent,
    "log.updated": LogUpdatedEvent,
    "record.viewed": RecordViewedEvent,
    "log.opened": LogOpenedEvent,
    "interaction.wrapup": WrapupEvent,
    "interaction.attributes": AttributesEvent,
}
EVENT_TYPES = frozenset(EVENT_MODELS)


class CloudEventEnvelope(_Envelope):
    """The envelope alone (any `type`, untyped `data`): published as a JSON Schema for producers."""

    type: Annotated[str, Field(min_length=1, max_length=255)]
    data: dict[str, Any] | None = None


class RejectReason(StrEnum):
    INVALID = "invalid"
    UNKNOWN_TYPE = "unknown_type"
    LATE_EDIT = "late_edit"
    WINDOW_CLOSED = "window_closed"
    TOO_LARGE = "too_large"
    FUTURE_TIME = "future_time"


@dataclass(frozen=True, slots=True)
class Rejection:
    """An event the worker will not apply, with a message that names the field and the problem."""

    event_id: str | None
    subject: str | None
    reason: RejectReason
    message: str

    def to_dict(self) -> dict[str, str | None]:
        return {"id": self.event_id, "subject": self.subject, "reason": str(self.reason),
                "message": self.message}
