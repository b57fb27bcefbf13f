"""Snapshot → Task fields, attribute type checks against the describe, per-record results."""

from __future__ import annotations

from typing import Any

import pytest
from structlog.testing import capture_logs

from adapters import salesforce_fields
from adapters.attributes import FieldValue
from adapters.base import Failed, Retry, Synced, SyncOutcome
from adapters.salesforce import error_code, record_outcome
from adapters.salesforce_fields import (
    DESCRIPTION_LIMIT,
    FieldSpec,
    coerce_attribute,
    parse_describe,
    task_fields,
    truncate_description,
)
from adapters.salesforce_lookup import soql_quote
from schemas.snapshot import LogSnapshot
from tests.support import INBOUND_CALL, snapshot_from

SPECS = parse_describe(
    {
        "fields": [
            {"name": "Subject", "type": "string", "length": 255},
            {"name": "Tier__c", "type": "string", "length": 40},
            {"name": "Score__c", "type": "double", "precision": 18, "scale": 2},
            {"name": "Queue__c", "type": "string", "length": 80},
            {"name": "Seats__c", "type": "int"},
            {"name": "Vip__c", "type": "boolean"},
            {"name": "Seg__c", "type": "picklist", "length": 40, "restrictedPicklist": True,
             "picklistValues": [{"value": "SMB", "active": True}, {"value": "Old", "active": False}]},
        ]
    }
)
ATTRIBUTE_MAP = {"tier": "Tier__c", "score": "Score__c", "queue": "Queue__c"}


SNAPSHOT: dict[str, Any] = {
    **INBOUND_CALL,
    "interaction_id": "conv-42",
    "version": 7,
    "trigger": "state_changed",
    "state": "disconnected",
    "name": {"system": "salesforce", "type": "Contact", "id": "0035g00000AbCdE"},
    "related_to": {"system": "salesforce", "type": "Case", "id": "5005g00000XyZab"},
    "disconnected_at": "2026-11-27T10:05:00Z",
    "duration_seconds": 300,
    "hold_seconds": 40,
    "hold_count": 1,
    "talk_seconds": 260,
    "wrapup_code": "Resolved",
}


def snapshot(**overrides: Any) -> LogSnapshot:
    return snapshot_from(SNAPSHOT, **overrides)


@pytest.fixture(autouse=True)
def _no_link_warned_yet() -> None:
    """Each test starts with no dropped link remembered (`salesforce.link_dropped` is logged once per link)."""
    salesforce_fields._warned.clear()


def test_a_voice_log_maps_to_a_call_task() -> None:
    fields = task_fields(snapshot(), ATTRIBUTE_MAP, SPECS)
    description = fields.pop("Description")
    assert fields == {
        "Subject": "Inbound call from Ada Example",
        "Status": "In Progress",
        "Priority": "Normal",
        "TaskSubtype": "Call",
        "CallObject": "conv-42",
        "ActivityDate": "2026-11-27",
        "WhoId": "0035g00000AbCdE",
        "WhatId": "5005g00000XyZab",
        "CallType": "Inbound",
        "CallDurationInSeconds": 300,
        "CallDisposition": "Resolved",
        "Tier__c": "gold",
    }
    assert isinstance(description, str)
    assert description.startswith("Customer asked for a refund.\n\n")
    for fact in ("Duration: 5m 00s", "Hold: 40s (1×)", "Wrap-up: Resolved", "Connected: 2026-11-27 10:00:00 UTC"):
        assert fact in description


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"media": "chat"}, {"TaskSubtype": "Task"}),
        ({"media": "email", "direction": "outbound"}, {"TaskSubtype": "Email", "CallType": "Outbound"}),
        ({"media": "callback"}, {"TaskSubtype": "Call"}),
        ({"finalized": True, "trigger": "finalized"}, {"Status": "Completed"}),
        ({"subject": None, "media": "chat"}, {"Subject": "Inbound chat from Ada Example"}),
        ({"subject": None, "customer": None}, {"Subject": "Inbound call"}),
    ],
)
def test_media_direction_and_finalization_shape_the_task(
    overrides: dict[str, Any], expected: dict[str, FieldValue]
) -> None:
    fields = task_fields(snapshot(**overrides), ATTRIBUTE_MAP, SPECS)
    assert expected == {key: fields[key] for key in expected}


LEAD = {"system": "salesforce", "type": "Lead", "id": "00Q5g00000LeAd1"}
CASE = {"system": "salesforce", "type": "Case", "id": "5005g00000CaSe1"}
CONTACT = {"system": "salesforce", "type": "Contact", "id": "0035g00000CoNt1"}


@pytest.mark.parametrize("record_id", ["5005g00000XyZ", "5005g00000XyZabAABX", "5005g00000XyZ-b"])
def test_an_id_salesforce_cannot_read_is_left_out_with_a_warning(record_id: str) -> None:
    related = {"system": "salesforce", "type": "Case", "id": record_id}
    with capture_logs() as logs:
        fields = task_fields(snapshot(related_to=related), {}, SPECS)
    assert "WhatId" not in fields
    assert fields["WhoId"] == "0035g00000AbCdE"
    assert ["WhatId"] == [entry["field"] for entry in logs if entry["event"] == "salesforce.link_dropped"]


@pytest.mark.parametrize(
    ("name", "related_to", "expected"),
    [
        # a Task whose WhoId is a lead takes no WhatId: cleared, and a chosen Related to is left out
        (LEAD, None, {"WhoId": LEAD["id"], "WhatId": None}),
        (LEAD, CASE, {"WhoId": LEAD["id"], "WhatId": None}),
        (CONTACT, CASE, {"WhoId": CONTACT["id"], "WhatId": CASE["id"]}),
        (None, {"system": "salesforce", "type": "Account", "id": "0015g00000AcCt1"}, {"WhatId": "0015g00000AcCt1"}),
        (None, {"system": "zendesk", "type": "ticket", "id": "77"}, {}),
        ({"system": "custom", "type": "Contact", "id": "c-1"}, None, {}),
        # a Salesforce User is Related to, which WhatId refuses: the link alone is left out
        (None, {"system": "salesforce", "type": "User", "id": "0055g00000UsEr1"}, {}),
    ],
)
def test_only_salesforce_records_link_as_who_and_what(
    name: dict[str, str] | None, related_to: dict[str, str] | None, expected: dict[str, str]
) -> None:
    with capture_logs() as logs:
        fields = task_fields(snapshot(name=name, related_to=related_to), {}, SPECS)
    assert expected == {key: fields[key] for key in ("WhoId", "WhatId") if key in fields}
    dropped = [entry for entry in logs if entry["event"] == "salesforce.link_dropped"]
    lead_with_what = name is not None and name["type"] == "Lead" and related_to is not None
    assert ((related_to is not None and related_to["type"] == "User") or lead_with_what) == bool(dropped)
    assert "Subject" in fields  # the rest of the Task is there either way


@pytest.mark.parametrize(
    ("spec", "value", "expected"),
    [
        (FieldSpec("Tier__c", "string", 40), "gold", ("gold", None)),
        (FieldSpec("Tier__c", "string", 4), "platinum", (None, "longer than 4 characters")),
        (FieldSpec("Score__c", "double"), "4.5", (4.5, None)),
        (FieldSpec("Score__c", "double"), "high", (None, "not a number for double")),
        (FieldSpec("Score__c", "double"), "nan", (None, "not a finite number")),
        (FieldSpec("Seats__c", "int"), "12", (12, None)),
        (FieldSpec("Seats__c", "int"), "1.5", (None, "not an integer")),
        (FieldSpec("Email__c", "email", 80), "ada@example.com", ("ada@example.com", None)),
        (FieldSpec("Email__c", "email", 80), "ada@example", (None, "not an email address")),
        (FieldSpec("Seats__c", "int"), "2147483648", (None, "outside the integer range")),
        (FieldSpec("Score__c", "double", precision=5, scale=2), "999.99", (999.99, None)),
        (FieldSpec("Score__c", "double", precision=5, scale=2), "1000",
         (None, "more than 3 digits before the decimal point")),
        (FieldSpec("Vip__c", "boolean"), "TRUE", (True, None)),
        (FieldSpec("Vip__c", "boolean"), "yes", (None, "not a boolean")),
        (FieldSpec("Due__c", "date"), "2026-11-27", ("2026-11-27", None)),
        (FieldSpec("Due__c", "date"), "tomorrow", (None, "not a date")),
        (FieldSpec("Geo__c", "location"), "x", (None, "unsupported field type location")),
        (FieldSpec("Seg__c", "picklist", 40, picklist=frozenset({"SMB"}), restricted=True), "SMB", ("SMB", None)),
        (FieldSpec("Seg__c", "picklist", 40, picklist=frozenset({"SMB"}), restricted=True), "smb",
         (None, "not a value of the restricted picklist")),
        (FieldSpec("Seg__c", "picklist", 40, picklist=frozenset({"SMB"})), "Consumer", ("Consumer", None)),
        (FieldSpec("Seg__c", "multipicklist", 40, picklist=frozenset({"A", "B"}), restricted=True), "A;B",
         ("A;B", None)),
        (FieldSpec("Seg__c", "multipicklist", 40, picklist=frozenset({"A", "B"}), restricted=True), "A;C",
         (None, "not a value of the restricted picklist")),
        (None, "x", (None, "field not on Task")),
    ],
)
def test_attribute_values_are_checked_by_field_type(
    spec: FieldSpec | None, value: str, expected: tuple[FieldValue | None, str | None]
) -> None:
    assert coerce_attribute(spec, value) == expected


def test_a_bad_attribute_value_is_dropped_with_a_warning_and_the_rest_saves() -> None:
    secret_text = "call me at home, PIN 1234"
    log = snapshot(attributes={"tier": "gold", "score": secret_text, "queue": "Billing", "unmapped": "x"})
    with capture_logs() as logs:
        fields = task_fields(log, ATTRIBUTE_MAP, SPECS)
    assert {
        key: value for key, value in fields.items() if key.endswith("__c")
    } == {"Tier__c": "gold", "Queue__c": "Billing"}
    assert logs == [
        {
            "event": "salesforce.attribute_dropped",
            "log_level": "warning",
            "interaction_id": "conv-42",
            "attribute": "score",
            "field": "Score__c",
            "reason": "not a number for double",
        }
    ]
    assert secret_text not in repr(logs)


def test_description_over_the_limit_is_truncated_with_a_marker() -> None:
    text = "x" * (DESCRIPTION_LIMIT + 500)
    truncated = truncate_description(text)
    kept, marker = truncated.split("\n…", 1)
    assert DESCRIPTION_LIMIT - 5 <= len(truncated) <= DESCRIPTION_LIMIT
    assert kept == "x" * len(kept)
    assert marker == f"[truncated: {len(text) - len(kept)} characters not shown]"


def test_description_within_the_limit_is_kept() -> None:
    assert truncate_description("short") == "short"


def test_an_over_long_subject_is_sent_as_is_for_salesforce_to_reject() -> None:
    fields = task_fields(snapshot(subject="S" * 300), {}, SPECS)
    assert fields["Subject"] == "S" * 300


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        ({"id": "00T9", "success": True, "errors": []}, Synced("00T9", 7)),
        ({"success": True, "errors": []}, Synced("00T1", 7)),
        (
            {"success": False, "errors": [{"statusCode": "STRING_TOO_LONG", "message": "Subject: too long"}]},
            Failed("STRING_TOO_LONG", "Subject: too long"),
        ),
        (
            {"success": False, "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked"}]},
            Retry(None, "UNABLE_TO_LOCK_ROW: locked"),
        ),
        (
            {"success": False, "errors": [{"statusCode": "REQUEST_LIMIT_EXCEEDED", "message": "limit"}]},
            Retry(None, "REQUEST_LIMIT_EXCEEDED: limit", budget_exhausted=True),
        ),
    ],
)
def test_each_collection_result_becomes_its_own_outcome(result: dict[str, Any], expected: SyncOutcome) -> None:
    assert record_outcome(result, 7, "00T1") == expected


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([{"errorCode": "INVALID_SESSION_ID", "message": "expired"}], ("INVALID_SESSION_ID", "expired")),
        ({"error": "invalid_grant"}, ("invalid_grant", "")),
        ("<html>", ("UNKNOWN", "<html>")),
        ([], ("UNKNOWN", "[]")),
    ],
)
def test_error_codes_are_read_from_either_error_shape(content: Any, expected: tuple[str, str]) -> None:
    assert error_code(content) == expected


@pytest.mark.parametrize(
    ("value", "expected"), [("conv-42", "'conv-42'"), ("o'brien", "'o\\'brien'"), ("a\\b", "'a\\\\b'")]
)
def test_soql_literals_are_escaped(value: str, expected: str) -> None:
    assert soql_quote(value) == expected


def test_the_describe_gives_the_active_values_of_a_restricted_picklist() -> None:
    assert FieldSpec("Seg__c", "picklist", 40, picklist=frozenset({"SMB"}), restricted=True) == SPECS["Seg__c"]


def test_a_dropped_link_is_logged_once_per_interaction_not_on_every_update_of_its_task() -> None:
    with capture_logs() as logs:
        for version in (1, 2, 3):  # the same Task built again as its log changes
            task_fields(snapshot(name=LEAD, related_to=CASE, version=version), {}, SPECS)
        task_fields(snapshot(name=LEAD, related_to=CASE, interaction_id="conv-43"), {}, SPECS)
        task_fields(snapshot(name=LEAD, related_to=CONTACT | {"type": "Opportunity", "id": "0065g00000OpPt1"}),
                    {}, SPECS)  # another record in Related to: said again
    dropped = [(entry["interaction_id"], entry["record_type"]) for entry in logs
               if entry["event"] == "salesforce.link_dropped"]
    assert dropped == [("conv-42", "Case"), ("conv-43", "Case"), ("conv-42", "Opportunity")]


def test_the_dropped_links_remembered_are_bounded() -> None:
    kept = salesforce_fields._WARNED_KEPT
    with capture_logs() as logs:
        for n in range(kept + 5):
            task_fields(snapshot(name=LEAD, related_to=CASE, interaction_id=f"conv-{n}"), {}, SPECS)
        task_fields(snapshot(name=LEAD, related_to=CASE, interaction_id="conv-0"), {}, SPECS)  # forgotten: again
    assert len(salesforce_fields._warned) == kept
    assert sum(entry["event"] == "salesforce.link_dropped" for entry in logs) == kept + 6

