"""Pure parts of the Zendesk target: the rendered log, its version marker, typed custom fields."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

import structlog

from adapters.attributes import FieldValue, checked_attributes
from adapters.log_text import render_log_text
from schemas.snapshot import LogSnapshot

log = structlog.get_logger(__name__)



@dataclass(frozen=True)
class TicketField:
    type: str
    options: frozenset[str] = frozenset()


def _read(raw: Any, key: str) -> Any:
    return raw.get(key) if isinstance(raw, Mapping) else getattr(raw, key, None)


def marker(interaction_id: str, version: int) -> str:
    """The last line of every comment the worker writes (CONTRACT.md)."""
    return f"[interaction {interaction_id} · log v{version}]"


def has_marker(text: str, interaction_id: str, version: int) -> bool:
    expected = marker(interaction_id, version)
    return any(line.strip() == expected for line in text.splitlines())


def render_comment(snapshot: LogSnapshot) -> str:
    return f"{render_log_text(snapshot)}\n\n{marker(snapshot.interaction_id, snapshot.version)}"


def parse_ticket_fields(raw_fields: Any) -> dict[int, TicketField]:
    """Ticket fields by id (type, and the option values of a drop-down), from zenpy objects or dicts."""
    fields: dict[int, TicketField] = {}
    for raw in raw_fields:
        field_id, field_type = _read(raw, "id"), _read(raw, "type")
        if field_id is None or not field_type:
            continue
        options = frozenset(str(_read(option, "value")) for option in _read(raw, "custom_field_options") or [])
        fields[int(field_id)] = TicketField(str(field_type), options)
    return fields


def coerce_ticket_value(field: TicketField | None, value: str) -> tuple[FieldValue | None, str | None]:
    """The value typed for the ticket field, or None and why it does not fit."""
    if field is None:
        return None, "unknown ticket field"
    field_type = field.type
    if field_type == "tagger":
        return (value, None) if value in field.options else (None, "not an option of the drop-down")
    if field_type in ("integer", "decimal"):
        return _ticket_number(field_type, value)
    if field_type == "checkbox":
        lowered = value.strip().lower()
        return (lowered == "true", None) if lowered in ("true", "false") else (None, "not a boolean")
    if field_type == "date":
        try:
            return date.fromisoformat(value.strip()).isoformat(), None
        except ValueError:
            return None, "not a date"
    return value, None


def _ticket_number(field_type: str, value: str) -> tuple[FieldValue | None, str | None]:
    """Zendesk reads a number field's value as plain digits (`-12`, `4.25`): read as a Decimal, so a long
    integer keeps every digit, and a decimal that JSON would write with an exponent (`1e+20`, `1e-05`;
    refused, with the whole update) goes as its plain digits instead."""
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None, f"not a number for {field_type}"
    if not number.is_finite():
        return None, "not a finite number"
    if field_type == "integer":
        return (int(number), None) if number == number.to_integral_value() else (None, "not an integer")
    as_float = float(number)
    if math.isfinite(as_float) and "e" not in repr(as_float):
        return as_float, None
    return format(number, "f"), None


def attribute_custom_fields(
    snapshot: LogSnapshot, attribute_fields: Mapping[str, int], ticket_fields: Mapping[int, TicketField]
) -> list[dict[str, FieldValue]]:
    """Mapped attributes as `custom_fields`; a bad value is dropped with a warning naming the field."""
    fitting = checked_attributes(
        snapshot, attribute_fields, lambda field_id, raw: coerce_ticket_value(ticket_fields.get(field_id), raw),
        dropped_event="zendesk.attribute_dropped", field_label="field_id",
    )
    return [{"id": field_id, "value": value} for field_id, value in fitting]


def linked_ticket_id(snapshot: LogSnapshot) -> int | None:
    """Related to, when it is a Zendesk ticket with a numeric id."""
    ref = snapshot.related_to
    if ref is None or ref.system.value != "zendesk" or ref.type.lower() != "ticket":
        return None
    return int(ref.id) if ref.id.isdigit() else None


def chosen_requester_id(snapshot: LogSnapshot) -> int | None:
    """Name, when it is a Zendesk user with a numeric id: the requester the agent picked for a new ticket."""
    ref = snapshot.name
    if ref is None or ref.system.value != "zendesk" or ref.type.lower() != "user":
        return None
    return int(ref.id) if ref.id.isdigit() else None
