"""Shared wire types: record refs, customers and the enums of CONTRACT.md."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


UtcDatetime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""A timestamp with a time zone, normalized to UTC (serialized as RFC 3339 with `Z`)."""


class Media(StrEnum):
    VOICE = "voice"
    CALLBACK = "callback"
    CHAT = "chat"
    EMAIL = "email"
    MESSAGE = "message"


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"


class State(StrEnum):
    CONNECTED = "connected"
    HELD = "held"
    DISCONNECTED = "disconnected"


class Trigger(StrEnum):
    CREATED = "created"
    STATE_CHANGED = "state_changed"
    OPENED = "opened"
    UPDATED = "updated"
    FINALIZED = "finalized"


class RecordSystem(StrEnum):
    SALESFORCE = "salesforce"
    ZENDESK = "zendesk"
    CUSTOM = "custom"


NAME_TYPES = frozenset({"contact", "lead", "user"})
"""Record types that belong in Name (who); everything else is Related to (what)."""


MAX_FIELD_CHARS = 255
"""Bound of ids, the interaction id, a ref's id, and short fields a CRM field holds (CONTRACT.md "Bounds")."""

BoundedText = Annotated[str, Field(max_length=MAX_FIELD_CHARS)]


class RecordRef(BaseModel):
    """A record in a target system, as the agent links it: `{system, type, id}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    system: RecordSystem
    type: str = Field(min_length=1, max_length=80)
    id: str = Field(min_length=1, max_length=MAX_FIELD_CHARS)

    @property
    def is_name(self) -> bool:
        """True when the record is a who (Contact, Lead; Zendesk user)."""
        return self.type.lower() in NAME_TYPES


class Customer(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    address: BoundedText | None = None
    name: BoundedText | None = None
