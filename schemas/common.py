"""Shared wire types: record refs, customers and the enums of CONTRACT.md."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError


def _to_utc(value: datetime) -> datetime:
    try:
        return value.astimezone(UTC)
    except OverflowError as error:  # 0001-01-01T00:00:00+01:00 has no UTC time
        raise ValueError("is outside the years 1 to 9999 in UTC") from error


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


NAME_TYPES = frozenset({"contact", "lead"})
"""Record types that belong in Name (who) in every system; everything else is Related to (what)."""

ZENDESK_NAME_TYPES = frozenset({"user"})
"""Zendesk's who: a user (CONTRACT.md: "Name takes Contact and Lead (Zendesk: user)")."""


def is_name_type(system: str, record_type: str) -> bool:
    """True when a record of this type belongs in Name: Contact and Lead anywhere, a user in Zendesk only
    (a Salesforce User is not a who a Task's WhoId takes)."""
    kind = record_type.lower()
    return kind in NAME_TYPES or (system == "zendesk" and kind in ZENDESK_NAME_TYPES)


MAX_FIELD_CHARS = 255
"""Bound of ids, the interaction id, a ref's id, and short fields a CRM field holds (CONTRACT.md "Bounds")."""

BoundedText = Annotated[str, Field(max_length=MAX_FIELD_CHARS)]


class RecordRef(BaseModel):
    """A record in a target system, as the agent links it: `{system, type, id}`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    system: RecordSystem = Field(description="salesforce, zendesk or custom")
    type: str = Field(min_length=1, max_length=80, description=(
        "Contact, Lead, Account, Case, Opportunity, ticket, user…; Contact, Lead and (Zendesk) user are Name, "
        "the rest Related to"))
    id: str = Field(min_length=1, max_length=MAX_FIELD_CHARS, description="the record's id in that system")

    @property
    def is_name(self) -> bool:
        """True when the record is a who (Contact, Lead; Zendesk user)."""
        return is_name_type(self.system, self.type)


class Customer(BaseModel):
    """The customer as the platform knows them."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    address: BoundedText | None = Field(None, description="phone number, email address or handle")
    name: BoundedText | None = Field(None, description="display name")


def _case_free(word: str) -> str:
    """A JSON Schema (ECMA 262) pattern piece that matches `word` in any case: it has no inline flags."""
    return "".join(f"[{letter.upper()}{letter.lower()}]" for letter in word)


NAME_REF_SCHEMA: dict[str, Any] = {"anyOf": [
    {"properties": {"type": {"pattern": f"^({'|'.join(_case_free(kind) for kind in sorted(NAME_TYPES))})$"}}},
    {"properties": {"system": {"const": "zendesk"},
                    "type": {"pattern": f"^({'|'.join(_case_free(kind) for kind in sorted(ZENDESK_NAME_TYPES))})$"}}},
]}
"""`is_name_type` as JSON Schema: what a ref in Name must match, and a ref in Related to must not."""


def _name_ref(ref: RecordRef) -> RecordRef:
    if not ref.is_name:
        raise PydanticCustomError("name_ref", "a {system} {type} is not a Name record: Name takes Contact and "
                                  "Lead (Zendesk: user); put it in related_to",
                                  {"system": ref.system.value, "type": repr(ref.type)})
    return ref


def _related_ref(ref: RecordRef) -> RecordRef:
    if ref.is_name:
        raise PydanticCustomError("related_ref", "a {system} {type} is not a Related to record: Related to takes "
                                  "everything but Contact and Lead (Zendesk: user); put it in name",
                                  {"system": ref.system.value, "type": repr(ref.type)})
    return ref


def _with_ref_rule(rule: dict[str, Any]) -> Any:
    """A field's JSON Schema change: its ref (`anyOf` [ref, null]) must also meet `rule`."""
    def change(schema: dict[str, Any]) -> None:
        for option in schema.get("anyOf", ()):
            if "$ref" in option:
                option["allOf"] = [{"$ref": option.pop("$ref")}, rule]
    return change


NameRef = Annotated[RecordRef, AfterValidator(_name_ref)]
"""A ref for Name (who): Contact, Lead, a Zendesk user (CONTRACT.md). Use as `NameRef | None` with
`NAME_FIELD_SCHEMA` as the field's `json_schema_extra`."""
RelatedRef = Annotated[RecordRef, AfterValidator(_related_ref)]
"""A ref for Related to (what): every other record. Use with `RELATED_FIELD_SCHEMA`."""
NAME_FIELD_SCHEMA = _with_ref_rule(NAME_REF_SCHEMA)
RELATED_FIELD_SCHEMA = _with_ref_rule({"not": NAME_REF_SCHEMA})
