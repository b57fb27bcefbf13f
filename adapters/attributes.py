"""Interaction attributes mapped onto a target's fields, each value checked by the field's type.

One bad value (text in a number field) is dropped with a warning that names the attribute and the
field, never the value; the rest of the record still saves.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

import structlog

from schemas.snapshot import LogSnapshot

log = structlog.get_logger(__name__)

FieldValue = str | int | float | bool
FieldKey = TypeVar("FieldKey", str, int)
Coerce = Callable[[FieldKey, str], tuple[FieldValue | None, str | None]]


def checked_attributes(
    snapshot: LogSnapshot,
    attribute_map: Mapping[str, FieldKey],
    coerce: Coerce[FieldKey],
    *,
    dropped_event: str,
    field_label: str,
) -> list[tuple[FieldKey, FieldValue]]:
    """(field, value) for every mapped attribute whose value fits its field, in the map's order.

    A map key matches its attribute exactly, else without regard to case: set as nested environment
    variables (`ILOG_SALESFORCE_ATTRIBUTE_FIELDS__customerTier`), the keys arrive lower-cased."""
    fitting: list[tuple[FieldKey, FieldValue]] = []
    attributes = snapshot.attributes
    by_lower: dict[str, str] | None = None
    for key, field in attribute_map.items():
        attribute: str | None = key
        if key not in attributes:
            if by_lower is None:
                by_lower = {name.lower(): name for name in sorted(attributes, reverse=True)}
            attribute = by_lower.get(key.lower())
        if attribute is None:
            continue
        value, reason = coerce(field, attributes[attribute])
        if value is None:
            log.warning(dropped_event, interaction_id=snapshot.interaction_id, attribute=attribute,
                        reason=reason, **{field_label: field})
            continue
        fitting.append((field, value))
    return fitting
