"""The log snapshot: what `ilog fold`, `ilog inspect` and the upserts topic carry (CONTRACT.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from schemas.common import MAX_FIELD_CHARS, Customer, Direction, Media, RecordRef, State, Trigger, UtcDatetime
from schemas.events import MAX_ATTRIBUTE_KEY_CHARS, MAX_ATTRIBUTE_VALUE_CHARS, MAX_ATTRIBUTES, MAX_TEXT_CHARS


def _published_bound(max_chars: int) -> JsonDict:
    """A CONTRACT.md bound the published schema carries but validation does not enforce: the sync stage must
    still read the snapshot of a state stored before the bounds (e.g. longer notes) rather than dead-letter it."""
    return {"maxLength": max_chars}


_ATTRIBUTE_BOUNDS: JsonDict = {"maxProperties": MAX_ATTRIBUTES,
                               "propertyNames": {"minLength": 1, "maxLength": MAX_ATTRIBUTE_KEY_CHARS},
                               "additionalProperties": {"type": "string", "maxLength": MAX_ATTRIBUTE_VALUE_CHARS}}


class LogSnapshot(BaseModel):
    """One interaction log at one version. Field names are contract: add, never rename."""

    model_config = ConfigDict(extra="ignore")

    interaction_id: str = Field(json_schema_extra=_published_bound(MAX_FIELD_CHARS))
    version: int = Field(ge=1)
    trigger: Trigger
    state: State | None = None
    media: Media | None = None
    direction: Direction | None = None
    queue: str | None = Field(None, json_schema_extra=_published_bound(MAX_FIELD_CHARS))
    agent_id: str | None = Field(None, json_schema_extra=_published_bound(MAX_FIELD_CHARS))
    customer: Customer | None = None
    subject: str | None = Field(None, json_schema_extra=_published_bound(MAX_FIELD_CHARS))
    notes: str | None = Field(None, json_schema_extra=_published_bound(MAX_TEXT_CHARS))
    name: RecordRef | None = None
    related_to: RecordRef | None = None
    name_candidates: list[RecordRef] = Field(default_factory=list)
    related_candidates: list[RecordRef] = Field(default_factory=list)
    connected_at: UtcDatetime | None = None
    disconnected_at: UtcDatetime | None = None
    edit_deadline: UtcDatetime | None = None
    finalized: bool = False
    duration_seconds: int | None = None
    hold_seconds: int = 0
    hold_count: int = 0
    talk_seconds: int | None = None
    wrapup_code: str | None = Field(None, json_schema_extra=_published_bound(MAX_FIELD_CHARS))
    wrapup_note: str | None = Field(None, json_schema_extra=_published_bound(MAX_TEXT_CHARS))
    attributes: dict[str, str] = Field(default_factory=dict, json_schema_extra=_ATTRIBUTE_BOUNDS)
    # Extensions (not in the original contract table, added fields only).
    ignored_reconnects: int = Field(0, description="`connected` events after disconnect, ignored")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()
