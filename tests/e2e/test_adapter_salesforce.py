"""Salesforce target against the emulator, through simple-salesforce over HTTPS with the test CA."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from adapters.base import Failed, Retry, Synced, SyncItem, TargetState, next_target_state
from adapters.salesforce import SalesforceTarget
from schemas.snapshot import LogSnapshot
from tests.e2e.conftest import Emulators
from tests.support import INBOUND_CALL, emulator_settings, snapshot_from
from worker.runtime.settings import Settings
from worker.runtime.targets import build_salesforce

CONTACT_ID = "0035g00000AbCdEAAZ"
CASE_ID = "5005g00000XyZabAAB"


def settings_for(emulators: Emulators, **overrides: Any) -> Settings:
    return emulator_settings(emulators.env, **overrides)


@pytest.fixture
def target(fresh_emulators: Emulators) -> Iterator[SalesforceTarget]:
    built = build_salesforce(
        settings_for(
            fresh_emulators,
            salesforce_attribute_fields={"tier": "Tier__c", "score": "Score__c", "queue": "Queue__c"},
            salesforce_timeout_seconds=2.0,
        )
    )
    try:
        yield built
    finally:
        built.close()


def snapshot(interaction_id: str = "conv-42", version: int = 1, **overrides: Any) -> LogSnapshot:
    base: dict[str, Any] = {
        **INBOUND_CALL, "trigger": "created", "state": "connected",
        "name": {"system": "salesforce", "type": "Contact", "id": CONTACT_ID},
        "related_to": {"system": "salesforce", "type": "Case", "id": CASE_ID},
    }
    return snapshot_from(base, interaction_id=interaction_id, version=version, **overrides)


def finalized(interaction_id: str = "conv-42", version: int = 5, **overrides: Any) -> LogSnapshot:
    values: dict[str, Any] = {
        "trigger": "finalized",
        "state": "disconnected",
        "finalized": True,
        "disconnected_at": "2026-11-27T10:05:00Z",
        "duration_seconds": 300,
        "talk_seconds": 260,
        "hold_seconds": 40,
        "hold_count": 1,
        "wrapup_code": "Resolved",
        "notes": "Refund issued.",
        "attributes": {"tier": "platinum", "score": "4.5"},
    }
    values.update(overrides)
    return snapshot(interaction_id, version, **values)


def tasks(emulators: Emulators) -> list[dict[str, Any]]:
    return list(emulators.salesforce.state()["tasks"])


def api_writes(emulators: Emulators) -> list[tuple[str, str]]:
    return [
        (entry["method"], entry["path"].split("/services/data/")[-1].split("/", 1)[-1])
        for entry in emulators.salesforce.requests()
        if entry["method"] in ("POST", "PATCH") and "/services/data/" in entry["path"]
    ]


def test_first_sync_creates_the_task_and_later_syncs_update_it_by_id(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    [created] = target.sync([SyncItem(snapshot())])
    assert isinstance(created, Synced)
    assert created.version == 1
    [task] = tasks(fresh_emulators)
    assert created.remote_id == task["Id"]
    expected_on_create = {
        "Subject": "Inbound call from Ada Example",
        "Status": "In Progress",
        "Priority": "Normal",
        "ActivityDate": "2026-11-27",
        "WhoId": CONTACT_ID,
        "WhatId": CASE_ID,
        "TaskSubtype": "Call",
        "CallType": "Inbound",
        "CallObject": "conv-42",
        "Tier__c": "gold",
    }
    assert expected_on_create == {key: task.get(key) for key in expected_on_create}

    state = next_target_state(TargetState(), created)
    [updated] = target.sync([SyncItem(finalized(), state)])
    assert Synced(created.remote_id, 5) == updated
    [task] = tasks(fresh_emulators)
    expected_after_update = {
        **expected_on_create,
        "Status": "Completed",
        "CallDurationInSeconds": 300,
        "CallDisposition": "Resolved",
        "Tier__c": "platinum",
        "Score__c": 4.5,
    }
    assert expected_after_update == {key: task.get(key) for key in expected_after_update}
    assert task["Description"].startswith("Refund issued.\n\n")
    assert "Duration: 5m 00s" in task["Description"]
    assert api_writes(fresh_emulators) == [("POST", "composite/sobjects"), ("PATCH", "composite/sobjects")]


@pytest.mark.parametrize(
    ("media", "direction", "subtype", "call_type"),
    [("chat", "inbound", "Task", "Inbound"), ("email", "outbound", "Email", "Outbound")],
)
def test_chat_and_email_logs_become_tasks_of_their_subtype(
    target: SalesforceTarget, fresh_emulators: Emulators, media: str, direction: str, subtype: str, call_type: str
) -> None:
    [outcome] = target.sync([SyncItem(finalized(media=media, direction=direction, subject=f"{media} with Ada"))])
    assert isinstance(outcome, Synced)
    [task] = tasks(fresh_emulators)
    assert {"TaskSubtype": subtype, "CallType": call_type, "Subject": f"{media} with Ada", "Status": "Completed"} == {
        key: task[key] for key in ("TaskSubtype", "CallType", "Subject", "Status")
    }
    assert f"({media}, {direction})" in task["Description"]


def test_notes_only_updates_are_not_wanted(target: SalesforceTarget) -> None:
    assert [
        target.wants(snapshot(trigger=trigger))
        for trigger in ("updated", "created", "state_changed", "opened", "finalized")
    ] == [False, True, True, True, True]


def test_429_with_retry_after_is_a_retry_outcome(target: SalesforceTarget, fresh_emulators: Emulators) -> None:
    fresh_emulators.salesforce.inject("429", retry_after=7, path="composite")
    [outcome] = target.sync([SyncItem(snapshot())])
    assert isinstance(outcome, Retry)
    assert (outcome.retry_after_s, outcome.budget_exhausted, outcome.uncertain) == (7.0, False, False)
    assert tasks(fresh_emulators) == []
    [retried] = target.sync([SyncItem(snapshot(), next_target_state(TargetState(), outcome))])
    assert isinstance(retried, Synced)
    assert len(tasks(fresh_emulators)) == 1


def test_503_is_a_retry_outcome(target: SalesforceTarget, fresh_emulators: Emulators) -> None:
    fresh_emulators.salesforce.inject("503", path="composite")
    [outcome] = target.sync([SyncItem(snapshot())])
    assert isinstance(outcome, Retry)
    assert outcome.error.startswith("HTTP 503")
    assert tasks(fresh_emulators) == []


def test_an_expired_session_logs_in_again_once_and_the_write_succeeds(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    [first] = target.sync([SyncItem(snapshot())])
    assert isinstance(first, Synced)
    logins_before = fresh_emulators.salesforce.state()["logins"]
    fresh_emulators.salesforce.inject("invalid_session", path="composite")
    [second] = target.sync([SyncItem(finalized(), next_target_state(TargetState(), first))])
    assert Synced(first.remote_id, 5) == second
    assert logins_before + 1 == fresh_emulators.salesforce.state()["logins"]
    assert tasks(fresh_emulators)[0]["Status"] == "Completed"


def test_a_session_that_stays_invalid_is_retried_later_not_in_a_loop(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    fresh_emulators.salesforce.inject("invalid_session", count=5, path="composite")
    [outcome] = target.sync([SyncItem(snapshot())])
    assert isinstance(outcome, Retry)
    assert sum(1 for entry in fresh_emulators.salesforce.requests() if "composite" in entry["path"]) == 2


def test_request_limit_exceeded_is_a_retry_with_the_budget_exhausted(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    fresh_emulators.salesforce.inject("request_limit", path="composite")
    [outcome] = target.sync([SyncItem(snapshot())])
    assert isinstance(outcome, Retry)
    assert (outcome.budget_exhausted, outcome.retry_after_s) == (True, 60.0)


@pytest.mark.parametrize("fault", ["drop_after_apply", "timeout"])
def test_a_create_whose_answer_was_lost_is_found_by_call_object_not_created_twice(
    target: SalesforceTarget, fresh_emulators: Emulators, fault: str
) -> None:
    fresh_emulators.salesforce.inject(fault, method="POST", path="composite", delay_s=4.0)
    [lost] = target.sync([SyncItem(snapshot())])
    assert isinstance(lost, Retry)
    assert lost.uncertain
    state = next_target_state(TargetState(), lost)
    assert TargetState(remote_id=None, synced_version=0, uncertain=True) == state

    [retried] = target.sync([SyncItem(finalized(), state)])
    [task] = tasks(fresh_emulators)
    assert Synced(task["Id"], 5) == retried
    assert task["Status"] == "Completed"
    assert ("POST", "composite/sobjects") not in api_writes(fresh_emulators)[1:]


def test_an_over_long_subject_fails_its_record_while_the_rest_of_the_batch_syncs(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    batch = [
        SyncItem(snapshot("conv-1")),
        SyncItem(snapshot("conv-2", subject="S" * 300)),
        SyncItem(snapshot("conv-3", media="chat")),
    ]
    first, bad, third = target.sync(batch)
    assert isinstance(first, Synced)
    assert isinstance(third, Synced)
    assert isinstance(bad, Failed)
    assert bad.code == "STRING_TOO_LONG"
    assert sorted(task["CallObject"] for task in tasks(fresh_emulators)) == ["conv-1", "conv-3"]


def test_a_bad_attribute_value_is_dropped_and_the_task_saves(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    [outcome] = target.sync([SyncItem(finalized(attributes={"tier": "gold", "score": "very high", "queue": "Q1"}))])
    assert isinstance(outcome, Synced)
    [task] = tasks(fresh_emulators)
    assert {
        key: task.get(key) for key in ("Tier__c", "Score__c", "Queue__c")
    } == {"Tier__c": "gold", "Score__c": None, "Queue__c": "Q1"}


def test_a_number_too_large_for_its_field_is_dropped_and_the_task_saves(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    """Score__c is a number(18, 2): sixteen digits before the point at most, or the whole Task fails."""
    outcomes = target.sync([
        SyncItem(finalized("conv-1", attributes={"tier": "gold", "score": "1e20"})),
        SyncItem(finalized("conv-2", attributes={"tier": "gold", "score": "-12345678901234567"})),
        SyncItem(finalized("conv-3", attributes={"tier": "gold", "score": "1234567890123456"})),
    ])
    assert [Synced, Synced, Synced] == [type(outcome) for outcome in outcomes], outcomes
    assert {"conv-1": ("gold", None), "conv-2": ("gold", None), "conv-3": ("gold", 1234567890123456.0)} == {
        task["CallObject"]: (task.get("Tier__c"), task.get("Score__c")) for task in tasks(fresh_emulators)}


LEAD_ID = "00Q5g00000LeAdXAAZ"


def test_a_lead_in_name_keeps_the_task_saving_without_a_related_to(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    """Salesforce takes no WhatId on a Task whose WhoId is a lead: the link is left out (and cleared when the
    agent switched Name to a lead after a contact with a Related to), the rest of the Task saves."""
    lead = {"system": "salesforce", "type": "Lead", "id": LEAD_ID}
    [with_lead] = target.sync([SyncItem(snapshot("conv-1", name=lead))])
    [contact_first] = target.sync([SyncItem(snapshot("conv-2"))])
    assert [Synced, Synced] == [type(with_lead), type(contact_first)], (with_lead, contact_first)
    state = next_target_state(TargetState(), contact_first)
    [switched] = target.sync([SyncItem(finalized("conv-2", name=lead), state)])
    assert isinstance(switched, Synced), switched
    assert {"conv-1": (LEAD_ID, None, "In Progress"), "conv-2": (LEAD_ID, None, "Completed")} == {
        task["CallObject"]: (task.get("WhoId"), task.get("WhatId"), task["Status"]) for task in tasks(fresh_emulators)}


def test_a_record_id_salesforce_cannot_read_is_left_out_and_the_task_saves(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    """A Salesforce id has 15 or 18 letters and digits (`5005g00000XyZ` has 13): such a link would fail the
    whole Task (MALFORMED_ID), so it alone is left out; the other link and the rest of the log are saved."""
    short_case = {"system": "salesforce", "type": "Case", "id": "5005g00000XyZ"}
    odd_contact = {"system": "salesforce", "type": "Contact", "id": "ada@example.com"}
    outcomes = target.sync([SyncItem(finalized("conv-1", related_to=short_case)),
                            SyncItem(finalized("conv-2", name=odd_contact))])
    assert [Synced, Synced] == [type(outcome) for outcome in outcomes], outcomes
    assert {"conv-1": (CONTACT_ID, None, "Completed"), "conv-2": (None, CASE_ID, "Completed")} == {
        task["CallObject"]: (task.get("WhoId"), task.get("WhatId"), task["Status"]) for task in tasks(fresh_emulators)}


def test_a_malformed_address_for_an_email_field_is_dropped_and_the_task_saves(fresh_emulators: Emulators) -> None:
    """Salesforce refuses the whole Task for an email field whose value is no address (INVALID_EMAIL_ADDRESS)."""
    target = build_salesforce(settings_for(
        fresh_emulators, salesforce_attribute_fields={"tier": "Tier__c", "email": "Customer_Email__c"}))
    try:
        outcomes = target.sync([
            SyncItem(finalized("conv-1", attributes={"tier": "gold", "email": "ada at example.com"})),
            SyncItem(finalized("conv-2", attributes={"tier": "gold", "email": "ada@example.com"})),
        ])
    finally:
        target.close()
    assert [Synced, Synced] == [type(outcome) for outcome in outcomes], outcomes
    assert {"conv-1": ("gold", None), "conv-2": ("gold", "ada@example.com")} == {
        task["CallObject"]: (task.get("Tier__c"), task.get("Customer_Email__c")) for task in tasks(fresh_emulators)}


def test_an_attribute_named_in_mixed_case_maps_when_set_as_a_nested_variable(
    fresh_emulators: Emulators, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ILOG_SALESFORCE_ATTRIBUTE_FIELDS__customerTier=Tier__c` (README): environment names are read without
    case, so the setting holds `customertier`; the attribute `customerTier` still goes to Tier__c."""
    monkeypatch.setenv("ILOG_SALESFORCE_ATTRIBUTE_FIELDS__customerTier", "Tier__c")
    from_env = Settings(_env_file=None)
    target = build_salesforce(settings_for(
        fresh_emulators, salesforce_attribute_fields=from_env.salesforce_attribute_fields))
    try:
        [outcome] = target.sync([SyncItem(finalized(attributes={"customerTier": "gold"}))])
    finally:
        target.close()
    assert isinstance(outcome, Synced), outcome
    assert ["gold"] == [task.get("Tier__c") for task in tasks(fresh_emulators)]


def test_a_value_outside_a_restricted_picklist_is_dropped_and_the_task_saves(fresh_emulators: Emulators) -> None:
    target = build_salesforce(settings_for(
        fresh_emulators, salesforce_attribute_fields={"tier": "Tier__c", "segment": "Segment__c"}))
    try:
        outcomes = target.sync([
            SyncItem(finalized("conv-1", attributes={"tier": "gold", "segment": "Consumer"})),
            SyncItem(finalized("conv-2", attributes={"tier": "gold", "segment": "Enterprise"})),
        ])
    finally:
        target.close()
    assert [Synced, Synced] == [type(outcome) for outcome in outcomes], outcomes
    assert {"conv-1": ("gold", None), "conv-2": ("gold", "Enterprise")} == {
        task["CallObject"]: (task.get("Tier__c"), task.get("Segment__c")) for task in tasks(fresh_emulators)}


def test_a_batch_mixes_creates_and_updates_in_one_request_each(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    created = target.sync([SyncItem(snapshot(f"conv-{n}")) for n in range(3)])
    states = [next_target_state(TargetState(), outcome) for outcome in created]
    batch = [SyncItem(finalized(f"conv-{n}"), states[n]) for n in range(3)]
    batch += [SyncItem(snapshot(f"conv-{n}")) for n in range(3, 5)]
    outcomes = target.sync(batch)
    assert all(isinstance(outcome, Synced) for outcome in outcomes)
    assert len(tasks(fresh_emulators)) == 5
    assert (
        api_writes(fresh_emulators)
    ) == [("POST", "composite/sobjects"), ("PATCH", "composite/sobjects"), ("POST", "composite/sobjects")]


def test_jwt_bearer_login_with_a_key_file(fresh_emulators: Emulators, tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = tmp_path / "server.key"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    settings = settings_for(
        fresh_emulators,
        salesforce_client_secret=None,
        salesforce_username="integration@acme.example",
        salesforce_private_key_file=str(key_file),
    )
    target = build_salesforce(settings)
    try:
        [outcome] = target.sync([SyncItem(snapshot())])
    finally:
        target.close()
    assert isinstance(outcome, Synced)
    assert [outcome.remote_id] == [task["Id"] for task in tasks(fresh_emulators)]


def api_queries(emulators: Emulators, since: int = 0) -> list[str]:
    return [entry["path"] for entry in emulators.salesforce.requests()[since:]
            if entry["method"] == "GET" and entry["path"].split("?", 1)[0].endswith("/query")]


def test_without_a_sync_state_tasks_are_looked_up_in_one_query_and_updated_not_created_again(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    target.sync([SyncItem(snapshot(f"conv-{n}")) for n in range(2)])  # their states are then lost
    since = len(fresh_emulators.salesforce.requests())
    writes_before = len(api_writes(fresh_emulators))
    outcomes = target.sync([SyncItem(finalized(f"conv-{n}")) for n in range(3)])
    assert all(isinstance(outcome, Synced) for outcome in outcomes)
    by_call = {task["CallObject"]: task for task in tasks(fresh_emulators)}
    assert (["conv-0", "conv-1", "conv-2"], {"Completed"}) == (
        sorted(by_call), {task["Status"] for task in by_call.values()})
    assert 1 == len(api_queries(fresh_emulators, since))
    assert [("PATCH", "composite/sobjects"), ("POST", "composite/sobjects")] == api_writes(fresh_emulators)[
        writes_before:]
    assert [by_call["conv-0"]["Id"], by_call["conv-1"]["Id"]] == [
        outcome.remote_id for outcome in outcomes[:2] if isinstance(outcome, Synced)]


def test_look_ups_of_a_large_batch_go_200_ids_a_query(target: SalesforceTarget, fresh_emulators: Emulators) -> None:
    outcomes = target.sync([SyncItem(snapshot(f"conv-{n}")) for n in range(450)])
    assert all(isinstance(outcome, Synced) for outcome in outcomes)
    assert (3, 450) == (len(api_queries(fresh_emulators)), len(tasks(fresh_emulators)))


def test_without_a_sync_state_a_closed_task_is_not_reopened_by_an_older_snapshot(
    target: SalesforceTarget, fresh_emulators: Emulators
) -> None:
    [final] = target.sync([SyncItem(finalized())])
    writes_before = len(api_writes(fresh_emulators))
    [older] = target.sync([SyncItem(snapshot(version=2, trigger="state_changed"))])  # replayed, no state
    [task] = tasks(fresh_emulators)
    assert isinstance(final, Synced) and Synced(final.remote_id, 2) == older
    assert ("Completed", writes_before) == (task["Status"], len(api_writes(fresh_emulators)))
