"""Input events: the CloudEvents 1.0 envelope, one data model per event type, and rejections.

Models are strict on types, enums and timestamps (decode validates with `strict=True`) and
tolerant of extra fields, so producers can add fields without breaking the worker.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator

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


RFC3339_PATTERN = (
    r"^(000[1-9]|00[1-9][0-9]|0[1-9][0-9]{2}|[1-9][0-9]{3})-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)
"""An RFC 3339 date-time with a time zone: what the worker reads, published as the schema's `pattern` so a
validator that does not check formats still refuses a time without offset. Up to 9 fractional digits (the
nanoseconds Go's and Java's clocks write); the worker keeps microseconds and drops the rest."""
_RFC3339 = re.compile(RFC3339_PATTERN)


def _integral_number_to_int(value: Any) -> Any:
    # JSON Schema counts 5.0 as an integer; so does the worker. (Binary-mode headers are converted by
    # the binary decoder; a string is not a sequence in structured mode.)
    if type(value) is float and value.is_integer():
        return int(value)
    return value


def _rfc3339_time(value: Any) -> Any:
    """The text as the schema's pattern describes it, read into a datetime (an impossible day is refused)."""
    if not isinstance(value, str):
        return value  # strict validation refuses it with its own message
    if not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 date-time with a time zone, e.g. 2026-11-27T10:00:00Z")
    return datetime.fromisoformat(value.upper())


TRACEPARENT_REGEX = r"^(?!ff)[0-9a-f]{2}-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}\Z"
"""A W3C Trace Context `traceparent` (version, trace id, parent span id, flags; lower-case hex, not version ff,
neither id all zeros): the CloudEvents distributed-tracing extension attribute. `\\Z`, since Python's `$` also
matches before a final newline."""
_TRACEPARENT = re.compile(TRACEPARENT_REGEX)


def trace_context(value: Any) -> str | None:
    """The `traceparent` when it is one, else None: a malformed trace context is ignored (W3C Trace Context
    says to start afresh), never a reason to refuse the event it came with."""
    return value if isinstance(value, str) and _TRACEPARENT.match(value) else None


# The bounds come before the BeforeValidator, so they constrain the integer itself and the JSON Schema
# carries them as `minimum`/`maximum` (after it, pydantic can only publish them as unknown keywords).
SequenceNumber = Annotated[int, Field(ge=0, le=MAX_SEQUENCE), BeforeValidator(_integral_number_to_int)]
EventTime = Annotated[UtcDatetime, BeforeValidator(_rfc3339_time)]
ShortText = Annotated[str, Field(max_length=1000)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=MAX_ATTRIBUTE_KEY_CHARS)]
AttributeValue = Annotated[str, Field(max_length=MAX_ATTRIBUTE_VALUE_CHARS)]


class _Data(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


def _ref(description: str) -> Any:
    return Field(None, description=description)


class ConnectedData(_Data):
    """The interaction reached an agent (or the customer, for outbound)."""

    media: Media = Field(description="voice, callback, chat, email or message")
    direction: Direction = Field(description="inbound or outbound")
    queue: BoundedText | None = Field(None, description="the queue it came through; set means a queue interaction "
                                                        "(the log's notes are also the wrap-up note)")
    agent_id: BoundedText | None = Field(None, description="the agent handling it")
    customer: Customer | None = Field(None, description="the customer's address (phone number, email) and name")
    name: RecordRef | None = _ref("a Contact or Lead (Zendesk: user) the platform already matched")
    related_to: RecordRef | None = _ref("a Case, Account, Opportunity, ticket… the platform already matched")


class EmptyData(_Data):
    """No fields (any sent are ignored); `data` may be left out."""


class DisconnectedData(_Data):
    """The interaction ended; the edit window starts now."""

    reason: ShortText | None = Field(None, description="why it ended, as the platform says it")


class LogUpdatedData(_Data):
    """An agent's edit of the log. At least one of the four fields; a field left out stays as it is, a field
    sent as null is cleared. `name` and `related_to` sent here are the agent's explicit choice: navigation
    (record.viewed) no longer changes that field."""

    # Absent and null differ: the fold reads the fields that were sent (model_fields_set).
    model_config = ConfigDict(json_schema_extra={"anyOf": [{"required": ["notes"]}, {"required": ["subject"]},
                                                           {"required": ["name"]}, {"required": ["related_to"]}]})

    notes: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = Field(
        None, description="the whole note text (not a diff)")
    subject: BoundedText | None = Field(None, description="the log's subject line")
    name: RecordRef | None = _ref("who: a Contact or Lead (Zendesk: user)")
    related_to: RecordRef | None = _ref("what: a Case, Account, Opportunity, ticket…")

    @model_validator(mode="after")
    def _at_least_one_field(self) -> LogUpdatedData:
        if not self.model_fields_set:
            raise ValueError("log.updated needs at least one of notes, subject, name, related_to")
        return self


class RecordViewedData(_Data):
    """The agent navigated to a record while the interaction was active: it becomes a candidate (and the
    selection) for Name or Related to, unless the agent chose that field with log.updated."""

    record: RecordRef = Field(description="the record the agent looked at")


class WrapupData(_Data):
    """The wrap-up the agent (or the platform) chose."""

    code: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)] = Field(
        description="the wrap-up code, e.g. Resolved")
    note: Annotated[str, Field(max_length=MAX_TEXT_CHARS)] | None = Field(None, description="the wrap-up note")


class AttributesData(_Data):
    """Key/value interaction attributes; merged into the log's (at most 100 keys per interaction)."""

    attributes: Annotated[dict[AttributeKey, AttributeValue], Field(max_length=MAX_ATTRIBUTES)] = Field(
        description="string to string; a key sent again replaces its value")


class _Envelope(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    specversion: Literal["1.0"] = Field(description="CloudEvents version: 1.0")
    id: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)] = Field(
        description="unique per event; an id seen again for the same interaction is a duplicate and changes nothing")
    source: Annotated[str, Field(min_length=1, max_length=1000)] = Field(
        description="the producing platform, e.g. /platform/conversations")
    subject: Annotated[str, Field(min_length=1, max_length=MAX_FIELD_CHARS)] = Field(
        description="the interaction id; also the Kafka message key")
    time: EventTime = Field(
        description="when it happened: RFC 3339 with a time zone (Z or an offset), at most 9 fractional digits "
        "(kept to the microsecond)",
        json_schema_extra={"pattern": RFC3339_PATTERN})
    sequence: SequenceNumber | None = Field(
        None, description="optional; increases per interaction, orders its events (an integer, 0 to 2^63-1)")
    # Published without a type: the worker accepts the event whatever this holds (the schemas accept exactly
    # what the worker accepts), and ignores a value that is not a well-formed traceparent.
    traceparent: Annotated[str | None, BeforeValidator(trace_context), WithJsonSchema({})] = Field(
        None, description="optional (CloudEvents distributed tracing): a W3C traceparent, e.g. "
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01; the worker's log lines about the event carry "
        "its trace and span ids, and the snapshots it changes carry it on (Kafka header and webhook header "
        "`traceparent`). Anything else here is ignored")


class ConnectedEvent(_Envelope):
    """interaction.connected: the interaction reached an agent; creates the log if it is the first event."""

    type: Literal["interaction.connected"]
    data: ConnectedData


class HeldEvent(_Envelope):
    """interaction.held: the customer is on hold (hold time and count follow from held/resumed)."""

    type: Literal["interaction.held"]
    data: EmptyData = EmptyData()


class ResumedEvent(_Envelope):
    """interaction.resumed: back from hold."""

    type: Literal["interaction.resumed"]
    data: EmptyData = EmptyData()


class DisconnectedEvent(_Envelope):
    """interaction.disconnected: the interaction ended; edits are accepted for the edit window after it."""

    type: Literal["interaction.disconnected"]
    data: DisconnectedData = DisconnectedData()


class LogUpdatedEvent(_Envelope):
    """log.updated: the agent edited the log (notes, subject, Name, Related to)."""

    type: Literal["log.updated"]
    data: LogUpdatedData


class RecordViewedEvent(_Envelope):
    """record.viewed: the agent navigated to a CRM record."""

    type: Literal["record.viewed"]
    data: RecordViewedData


class LogOpenedEvent(_Envelope):
    """log.opened: the agent opened the activity record or refreshed the page."""

    type: Literal["log.opened"]
    data: EmptyData = EmptyData()


class WrapupEvent(_Envelope):
    """interaction.wrapup: the wrap-up code and note."""

    type: Literal["interaction.wrapup"]
    data: WrapupData


class AttributesEvent(_Envelope):
    """interaction.attributes: key/value attributes of the interaction."""

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
    """The CloudEvents envelope every event shares; `data` is checked by the schema of its `type`."""

    type: Annotated[str, Field(min_length=1, max_length=255)] = Field(
        description="one of the event types (event.<type>.json)")
    data: dict[str, Any] | None = Field(None, description="the event's fields, by type")


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
