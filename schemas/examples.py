"""One sample event per type: the schemas' `examples`, the producer guide's samples (docs/producers.md).

Tests decode every one with the worker and validate it with the published schemas.
"""

from __future__ import annotations

from typing import Any

_ENVELOPE: dict[str, Any] = {"specversion": "1.0", "source": "/platform/conversations", "subject": "conv-42"}
_CASE = {"system": "salesforce", "type": "Case", "id": "5005g00000XyZ"}
_CONTACT = {"system": "salesforce", "type": "Contact", "id": "0035g00000AbCdE"}


def _event(number: int, event_type: str, time: str, data: dict[str, Any] | None) -> dict[str, Any]:
    event: dict[str, Any] = {**_ENVELOPE, "id": f"evt-{number:04d}", "type": event_type, "time": time,
                             "sequence": number}
    if data is not None:
        event["data"] = data
    return event


EXAMPLE_EVENTS: dict[str, dict[str, Any]] = {
    "interaction.connected": _event(1, "interaction.connected", "2026-11-27T10:00:00Z", {
        "media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
        "customer": {"address": "+4930123456", "name": "Ada Example"}, "name": _CONTACT, "related_to": None}),
    "record.viewed": _event(2, "record.viewed", "2026-11-27T10:00:40Z", {"record": _CASE}),
    "interaction.held": _event(3, "interaction.held", "2026-11-27T10:01:00Z", {}),
    "interaction.resumed": _event(4, "interaction.resumed", "2026-11-27T10:01:40Z", {}),
    "interaction.attributes": _event(5, "interaction.attributes", "2026-11-27T10:02:00Z",
                                     {"attributes": {"tier": "gold", "language": "de"}}),
    "log.updated": _event(6, "log.updated", "2026-11-27T10:03:00Z",
                          {"notes": "Customer asked for a refund.", "related_to": _CASE}),
    "interaction.disconnected": _event(7, "interaction.disconnected", "2026-11-27T10:05:00Z",
                                       {"reason": "customer hung up"}),
    "interaction.wrapup": _event(8, "interaction.wrapup", "2026-11-27T10:05:30+01:00",
                                 {"code": "Resolved", "note": "Refund approved."}),
    "log.opened": _event(9, "log.opened", "2026-11-27T10:06:00Z", None),
}
"""Type → a sample event, in the order an interaction produces them."""
