"""Snapshot → Task fields, and each mapped attribute checked against the Task describe (pure).

Description is truncated at the Task limit with a visible marker (the log text is also in the
webhook and the interaction store, and a Task that fails to save loses more than a tail of text).
Subject is not truncated: an over-long Subject is sent as is, Salesforce rejects that record with
STRING_TOO_LONG and it goes to the DLQ, where an operator sees it.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import structlog

from adapters.attributes import FieldValue, checked_attributes
from adapters.log_text import render_log_text
from schemas.common import Media, RecordRef, RecordSystem
from schemas.snapshot import LogSnapshot

log = structlog.get_logger(__name__)

_WARNED_KEPT = 10_000
"""Dropped links remembered, so each is logged once (`_link_dropped`), not on every update of its Task."""
_warned: dict[tuple[object, ...], None] = {}
_warned_lock = threading.Lock()  # Salesforce calls run on several threads at once


def _link_dropped(snapshot: LogSnapshot, field: str, record: RecordRef | None, reason: str | None = None) -> None:
    """`salesforce.link_dropped`, once per interaction, field, record and reason while it is remembered (the
    newest 10,000): the same Task is built again on every change of its log, and one line says it as well as ten."""
    key = (snapshot.interaction_id, field, None if record is None else (record.type, record.id), reason)
    with _warned_lock:
        if key in _warned:
            return
        if len(_warned) >= _WARNED_KEPT:
            del _warned[next(iter(_warned))]  # the oldest: a dict keeps insertion order
        _warned[key] = None
    log.warning("salesforce.link_dropped", interaction_id=snapshot.interaction_id, field=field,
                record_type=None if record is None else record.type, **({"reason": reason} if reason else {}))

DESCRIPTION_LIMIT = 32_000
_TRUNCATION_MARK = "\n…[truncated: {count} characters not shown]"
_CALL_MEDIA = frozenset({Media.VOICE, Media.CALLBACK})
_STRING_TYPES = frozenset(
    {"string", "textarea", "picklist", "multipicklist", "phone", "email", "url", "combobox"}
)
_INTEGER_TYPES = frozenset({"int", "long"})
_NUMBER_TYPES = frozenset({"double", "currency", "percent"})
_PICKLIST_TYPES = frozenset({"picklist", "multipicklist"})
_INT_LIMIT = 2**31  # an `int` field holds a 32-bit signed integer

@dataclass(frozen=True)
class FieldSpec:
    """A Task field as the describe gives it; `picklist` holds the active values when `restricted`
    (Salesforce refuses the whole record for a value outside a restricted picklist)."""

    name: str
    type: str
    length: int = 0
    precision: int = 0
    scale: int = 0
    picklist: frozenset[str] = frozenset()
    restricted: bool = False


def parse_describe(describe: Mapping[str, Any]) -> dict[str, FieldSpec]:
    """Field specs by API name from an sObject describe."""
    specs: dict[str, FieldSpec] = {}
    for raw in describe.get("fields", []):
        spec = FieldSpec(
            name=str(raw["name"]),
            type=str(raw.get("type", "string")),
            length=int(raw.get("length") or 0),
            precision=int(raw.get("precision") or 0),
            scale=int(raw.get("scale") or 0),
            picklist=frozenset(str(option["value"]) for option in raw.get("picklistValues") or []
                               if option.get("active", True)),
            restricted=bool(raw.get("restrictedPicklist")),
        )
        specs[spec.name] = spec
    return specs


def _coerce_number(spec: FieldSpec, value: str) -> tuple[FieldValue | None, str | None]:
    try:
        number = float(value.strip())
    except ValueError:
        return None, f"not a number for {spec.type}"
    if not math.isfinite(number):
        return None, "not a finite number"
    if spec.type in _INTEGER_TYPES:
        if not number.is_integer():
            return None, "not an integer"
        return (int(number), None) if abs(number) < _INT_LIMIT else (None, "outside the integer range")
    if spec.precision and abs(number) >= 10.0 ** (spec.precision - spec.scale):
        # Salesforce refuses the whole record (NUMBER_OUTSIDE_VALID_RANGE) for more integer digits than
        # precision - scale allow
        return None, f"more than {spec.precision - spec.scale} digits before the decimal point"
    return number, None


def coerce_attribute(spec: FieldSpec | None, value: str) -> tuple[FieldValue | None, str | None]:
    """The value to send, or None and the reason it cannot go into this field."""
    if spec is None:
        return None, "field not on Task"
    if spec.type in _STRING_TYPES:
        return _coerce_text(spec, value)
    if spec.type in _INTEGER_TYPES or spec.type in _NUMBER_TYPES:
        return _coerce_number(spec, value)
    if spec.type == "boolean":
        lowered = value.strip().lower()
        if lowered in {"true", "false"}:
            return lowered == "true", None
        return None, "not a boolean"
    if spec.type == "date":
        try:
            return date.fromisoformat(value.strip()).isoformat(), None
        except ValueError:
            return None, "not a date"
    return None, f"unsupported field type {spec.type}"


def _coerce_text(spec: FieldSpec, value: str) -> tuple[FieldValue | None, str | None]:
    if spec.length and len(value) > spec.length:
        return None, f"longer than {spec.length} characters"
    if not _fits_picklist(spec, value):
        return None, "not a value of the restricted picklist"
    if spec.type == "email":
        address = value.strip()  # Salesforce refuses the whole Task for a malformed one: INVALID_EMAIL_ADDRESS
        return (address, None) if _EMAIL.fullmatch(address) else (None, "not an email address")
    return value, None


def _fits_picklist(spec: FieldSpec, value: str) -> bool:
    """True unless the field is a restricted picklist without this value (a multi-select: each `;` part)."""
    if not spec.restricted or spec.type not in _PICKLIST_TYPES:
        return True
    chosen = value.split(";") if spec.type == "multipicklist" else [value]
    return all(part in spec.picklist for part in chosen)


def attribute_fields(
    snapshot: LogSnapshot, attribute_map: Mapping[str, str], specs: Mapping[str, FieldSpec]
) -> dict[str, FieldValue]:
    """Mapped attributes that fit their field; a bad value is dropped with a warning (never logged)."""
    return dict(checked_attributes(
        snapshot, attribute_map, lambda name, raw: coerce_attribute(specs.get(name), raw),
        dropped_event="salesforce.attribute_dropped", field_label="field",
    ))


def truncate_description(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    if len(text) <= limit:
        return text
    # Reserve room for the marker, whose own length depends on the count it reports.
    keep = limit - len(_TRUNCATION_MARK.format(count=len(text)))
    return text[:keep] + _TRUNCATION_MARK.format(count=len(text) - keep)


def default_subject(snapshot: LogSnapshot) -> str:
    direction = snapshot.direction.value.capitalize() if snapshot.direction else "Interaction"
    media = "interaction" if snapshot.media is None else snapshot.media.value
    media = {"voice": "call"}.get(media, media)
    party = snapshot.customer.name or snapshot.customer.address if snapshot.customer else None
    return f"{direction} {media} from {party}" if party else f"{direction} {media}"


def task_subtype(media: Media | None) -> str:
    if media in _CALL_MEDIA:
        return "Call"
    return "Email" if media == Media.EMAIL else "Task"


def _linked_records(snapshot: LogSnapshot) -> dict[str, FieldValue | None]:
    fields: dict[str, FieldValue | None] = {}
    for ref in (snapshot.name, snapshot.related_to):
        if ref is None or ref.system != RecordSystem.SALESFORCE:
            continue
        field = "WhoId" if ref.is_name else "WhatId"
        if not ref.is_name and ref.type.lower() in _NOT_A_WHAT:
            # WhatId refuses these, and the refusal would fail the whole Task: the link alone is dropped
            _link_dropped(snapshot, field, ref)
            continue
        if _SALESFORCE_ID.fullmatch(ref.id) is None:
            # not an id Salesforce can read (MALFORMED_ID would fail the whole Task): the link alone is dropped
            _link_dropped(snapshot, field, ref, "not a Salesforce id")
            continue
        fields[field] = ref.id
    if _is_lead(snapshot.name) and fields.get("WhoId") is not None:
        # A Task whose WhoId is a lead takes no WhatId (FIELD_INTEGRITY_EXCEPTION would fail the whole Task):
        # Related to is left out, and cleared, as the Task may hold one from a contact chosen before.
        if "WhatId" in fields:
            _link_dropped(snapshot, "WhatId", snapshot.related_to, "lead in Name")
        fields["WhatId"] = None
    return fields


def _is_lead(ref: RecordRef | None) -> bool:
    return ref is not None and ref.system == RecordSystem.SALESFORCE and (
        ref.type.lower() == "lead" or ref.id.startswith(_LEAD_KEY_PREFIX))


_NOT_A_WHAT = frozenset({"user", "group"})
_LEAD_KEY_PREFIX = "00Q"  # the Lead object's key prefix in every org
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s.]+")  # local@domain.tld, as an email field takes it
_SALESFORCE_ID = re.compile(r"[a-zA-Z0-9]{15}(?:[a-zA-Z0-9]{3})?")  # the 15- or 18-character form
"""Salesforce record types a Task's WhatId never takes that the fold puts in Related to."""


def _call_fields(snapshot: LogSnapshot) -> dict[str, FieldValue]:
    fields: dict[str, FieldValue] = {}
    if snapshot.direction is not None:
        fields["CallType"] = snapshot.direction.value.capitalize()
    if snapshot.duration_seconds is not None:
        fields["CallDurationInSeconds"] = snapshot.duration_seconds
    if snapshot.wrapup_code:
        fields["CallDisposition"] = snapshot.wrapup_code
    return fields


def task_fields(
    snapshot: LogSnapshot, attribute_map: Mapping[str, str], specs: Mapping[str, FieldSpec]
) -> dict[str, FieldValue | None]:
    """The Task as Salesforce stores it. Unknown values are left out rather than cleared (None: cleared)."""
    fields: dict[str, FieldValue | None] = {
        "Subject": snapshot.subject or default_subject(snapshot),
        "Description": truncate_description(render_log_text(snapshot)),
        "Status": "Completed" if snapshot.finalized else "In Progress",
        "Priority": "Normal",
        "TaskSubtype": task_subtype(snapshot.media),
        "CallObject": snapshot.interaction_id,
    }
    if snapshot.connected_at is not None:
        fields["ActivityDate"] = snapshot.connected_at.date().isoformat()
    fields.update(_linked_records(snapshot))
    fields.update(_call_fields(snapshot))
    fields.update(attribute_fields(snapshot, attribute_map, specs))
    return fields
