"""Zendesk pure parts: the rendered log, its version marker, typed ticket fields, job results."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters.attributes import FieldValue
from adapters.base import Failed, Retry, Synced, SyncOutcome
from adapters.log_text import format_duration
from adapters.zendesk_errors import zenpy_location
from adapters.zendesk_jobs import JobResults
from adapters.zendesk_render import (
    TicketField,
    attribute_custom_fields,
    coerce_ticket_value,
    has_marker,
    linked_ticket_id,
    marker,
    parse_ticket_fields,
    render_comment,
)
from schemas.snapshot import LogSnapshot
from tests.support import snapshot_from

FIELD_TYPES = parse_ticket_fields(
    [
        {"id": 360001, "type": "textarea"},
        {"id": 360002, "type": "integer"},
        {"id": 360003, "type": "decimal"},
        {"id": 360004, "type": "text"},
        {"id": 360005, "type": "tagger", "custom_field_options": [{"value": "billing"}, {"value": "technical"}]},
    ]
)


SNAPSHOT: dict[str, Any] = {
    "interaction_id": "conv-42",
    "version": 9,
    "trigger": "finalized",
    "finalized": True,
    "state": "disconnected",
    "media": "chat",
    "direction": "inbound",
    "customer": {"address": "ada@example.com", "name": "Ada Example"},
    "notes": "Refund approved.",
    "related_to": {"system": "zendesk", "type": "ticket", "id": "1001"},
    "connected_at": "2026-11-27T10:00:00Z",
    "disconnected_at": "2026-11-27T10:04:05Z",
    "duration_seconds": 245,
    "talk_seconds": 245,
    "wrapup_code": "Resolved",
    "wrapup_note": "Refund approved.",
    "attributes": {"seats": "12", "score": "high", "plan": "gold"},
}


def snapshot(**overrides: Any) -> LogSnapshot:
    return snapshot_from(SNAPSHOT, **overrides)


def test_the_comment_renders_the_log_and_ends_with_the_version_marker() -> None:
    expected = "\n".join(
        [
            "Refund approved.",
            "",
            "Interaction: conv-42 (chat, inbound)",
            "Customer: Ada Example <ada@example.com>",
            "Queue: — · Agent: —",
            "Connected: 2026-11-27 10:00:00 UTC",
            "Disconnected: 2026-11-27 10:04:05 UTC",
            "Duration: 4m 05s · Talk: 4m 05s · Hold: 0s (0×)",
            "Name: —",
            "Related to: ticket 1001 (zendesk)",
            "Wrap-up: Resolved",
            "Attributes: plan=gold, score=high, seats=12",
            "",
            "[interaction conv-42 · log v9]",
        ]
    )
    assert expected == render_comment(snapshot())


def test_attributes_are_shown_by_key_and_cut_when_long() -> None:
    many = {f"k{n:03d}": "v" * 1000 for n in range(100)}
    line = next(line for line in render_comment(snapshot(attributes=many)).splitlines()
                if line.startswith("Attributes: "))
    assert (len("Attributes: ") + 2000, "Attributes: k000=vvv", "…") == (len(line), line[:20], line[-1])
    assert "Attributes:" not in render_comment(snapshot(attributes={}))


def test_a_wrapup_note_that_differs_from_the_notes_is_shown() -> None:
    assert "Wrap-up note: Call back on Monday" in render_comment(snapshot(wrapup_note="Call back on Monday"))


@pytest.mark.parametrize(
    ("text", "version", "found"),
    [
        ("log text\n\n[interaction conv-42 · log v9]", 9, True),
        ("log text\n\n[interaction conv-42 · log v9]  \n", 9, True),
        ("log text\n\n[interaction conv-42 · log v9]", 8, False),
        ("log text\n\n[interaction conv-42 · log v90]", 9, False),
        ("quoted: [interaction conv-42 · log v9] in a sentence", 9, False),
        ("", 9, False),
    ],
)
def test_the_marker_of_exactly_this_version_is_found_on_its_own_line(text: str, version: int, found: bool) -> None:
    assert has_marker(text, "conv-42", version) is found


def test_marker_format_is_the_contract_one() -> None:
    assert marker("conv-42", 7) == "[interaction conv-42 · log v7]"


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(None, "—"), (0, "0s"), (45, "45s"), (245, "4m 05s"), (3723, "1h 02m 03s"), (-5, "0s")],
)
def test_durations_read_like_a_clock(seconds: int | None, expected: str) -> None:
    assert format_duration(seconds) == expected


@pytest.mark.parametrize(
    ("field_type", "value", "expected"),
    [
        ("integer", "12", (12, None)),
        ("integer", "12.5", (None, "not an integer")),
        ("integer", "twelve", (None, "not a number for integer")),
        ("decimal", "4.25", (4.25, None)),
        ("decimal", "high", (None, "not a number for decimal")),
        ("decimal", "inf", (None, "not a finite number")),
        ("decimal", "1e20", ("100000000000000000000", None)),  # plain digits: Zendesk refuses `1e+20`
        ("decimal", "0.00001", ("0.00001", None)),
        ("integer", "12345678901234567890", (12345678901234567890, None)),  # every digit kept
        ("integer", "1e3", (1000, None)),
        ("checkbox", "false", (False, None)),
        ("checkbox", "maybe", (None, "not a boolean")),
        ("date", "2026-11-27", ("2026-11-27", None)),
        ("date", "27.11.2026", (None, "not a date")),
        ("text", "gold", ("gold", None)),
        ("textarea", "long\ntext", ("long\ntext", None)),
        (None, "gold", (None, "unknown ticket field")),
    ],
)
def test_attribute_values_are_typed_by_the_ticket_field(
    field_type: str | None, value: str, expected: tuple[FieldValue | None, str | None]
) -> None:
    field = None if field_type is None else TicketField(field_type)
    assert coerce_ticket_value(field, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("billing", ("billing", None)), ("Billing", (None, "not an option of the drop-down"))]
)
def test_a_drop_down_takes_only_its_option_values(value: str, expected: tuple[FieldValue | None, str | None]) -> None:
    assert coerce_ticket_value(FIELD_TYPES[360005], value) == expected


def test_a_non_numeric_value_for_a_number_field_is_dropped_and_the_rest_saves() -> None:
    mapping = {"seats": 360002, "score": 360003, "plan": 360004, "absent": 360001}
    with capture_logs() as logs:
        fields = attribute_custom_fields(snapshot(), mapping, FIELD_TYPES)
    assert fields == [{"id": 360002, "value": 12}, {"id": 360004, "value": "gold"}]
    assert logs == [
        {
            "event": "zendesk.attribute_dropped",
            "log_level": "warning",
            "interaction_id": "conv-42",
            "attribute": "score",
            "field_id": 360003,
            "reason": "not a number for decimal",
        }
    ]


@pytest.mark.parametrize(
    ("related_to", "expected"),
    [
        ({"system": "zendesk", "type": "ticket", "id": "1001"}, 1001),
        ({"system": "zendesk", "type": "Ticket", "id": "1001"}, 1001),
        ({"system": "zendesk", "type": "ticket", "id": "abc"}, None),
        ({"system": "salesforce", "type": "Case", "id": "500x"}, None),
        (None, None),
    ],
)
def test_related_to_links_a_ticket_only_when_it_is_a_zendesk_ticket(
    related_to: dict[str, str] | None, expected: int | None
) -> None:
    assert linked_ticket_id(snapshot(related_to=related_to)) == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://acme.zendesk.com", ("acme", "zendesk.com", None)),
        ("https://support.acme.example", ("support", "acme.example", None)),
        ("http://127.0.0.1:8765", ("local", "127.0.0.1", "127.0.0.1:8765")),
        ("https://localhost:9443", ("local", "localhost", "localhost:9443")),
    ],
)
def test_zenpy_location_forces_the_netloc_only_when_zenpy_cannot_build_the_url(
    url: str, expected: tuple[str, str, str | None]
) -> None:
    assert zenpy_location(url) == expected


@pytest.mark.parametrize(
    ("results", "ticket_id", "expected"),
    [
        ([{"id": 1001, "success": True, "status": "Updated"}], 1001, Synced("1001", 9)),
        (
            [{"id": 1001, "success": False, "error": "TicketUpdateFailed", "details": "closed"}],
            1001,
            Failed("TicketUpdateFailed", "closed"),
        ),
        (
            [{"id": 1002, "success": True}],
            1001,
            Retry(None, "job finished without a result for the ticket", uncertain=True, remote_id="1001"),
        ),
    ],
)
def test_job_results_are_read_per_ticket(results: list[dict[str, Any]], ticket_id: int, expected: SyncOutcome) -> None:
    assert JobResults.parse(results).outcome(ticket_id, 9) == expected
