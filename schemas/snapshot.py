"""The log snapshot: what `ilog fold`, `ilog inspect` and the upserts topic carry (CONTRACT.md)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import Customer, Direction, Media, RecordRef, State, Trigger, UtcDatetime


class LogSnapshot(BaseModel):
    """One interaction log at one version. Field names are contract: add, never rename."""

    model_config = ConfigDict(extra="ignore")

    interaction_id: str
    version: int = Field(ge=1)
    trigger: Trigger
    state: State | None = None
    media: Media | None = None
    direction: Direction | None = None
    queue: str | None = None
    agent_id: str | None = None
    customer: Customer | None = None
    subject: str | None = None
    notes: str | None = None
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
    wrapup_code: str | None = None
    wrapup_note: str | None = None
    attributes: dict[str, str] = Field(default_factory=dict)
    # Extensions (not in the original contract table, added fields only).
    ignored_reconnects: int = Field(0, description="`connected` events after disconnect, ignored")

    def to_json_bytes(self) -> bytes:
        return self.model_dump_json().encode()
