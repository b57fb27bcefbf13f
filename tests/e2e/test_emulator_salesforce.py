"""The Salesforce emulator driven by simple-salesforce, the client the adapter uses."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import jwt
import pytest
import requests
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceExpiredSession,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)
from simple_salesforce.login import token_login

from tests.e2e.conftest import Emulators

VALID = {"Subject": "Inbound call from Ada", "Status": "In Progress", "Priority": "Normal",
         "CallObject": "conv-1", "CallType": "Inbound", "TaskSubtype": "Call"}


def _session(emulators: Emulators) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # else REQUESTS_CA_BUNDLE would override session.verify
    session.verify = emulators.ca_bundle
    return session


def _login(emulators: Emulators, session: requests.Session) -> tuple[str, str]:
    env = emulators.env
    data = {"grant_type": "client_credentials", "client_id": env["ILOG_SALESFORCE_CLIENT_ID"],
            "client_secret": env["ILOG_SALESFORCE_CLIENT_SECRET"]}
    token, instance = token_login(f"{env['ILOG_SALESFORCE_LOGIN_URL']}/services/oauth2/token", data,
                                  "login", env["ILOG_SALESFORCE_CLIENT_ID"], None, None, session)
    return str(token), str(instance)


@pytest.fixture
def sf(fresh_emulators: Emulators) -> Iterator[Salesforce]:
    session = _session(fresh_emulators)
    token, _ = _login(fresh_emulators, session)
    yield Salesforce(instance_url=fresh_emulators.env["ILOG_SALESFORCE_INSTANCE_URL"], session_id=token,
                     session=session, version="62.0")
    session.close()


def _codes(exc: Any) -> list[str]:
    return [error["errorCode"] for error in exc.content]


def test_client_credentials_token_has_the_documented_fields(fresh_emulators: Emulators) -> None:
    """Shape: Salesforce Help, "OAuth 2.0 Client Credentials Flow" token response."""
    session = _session(fresh_emulators)
    response = session.post(f"{fresh_emulators.env['ILOG_SALESFORCE_LOGIN_URL']}/services/oauth2/token",
                            data={"grant_type": "client_credentials",
                                  "client_id": fresh_emulators.env["ILOG_SALESFORCE_CLIENT_ID"],
                                  "client_secret": fresh_emulators.env["ILOG_SALESFORCE_CLIENT_SECRET"]})
    body = response.json()
    assert {"access_token", "instance_url", "id", "token_type", "issued_at", "signature", "scope"} == set(body)
    assert (body["instance_url"], body["token_type"]) == (fresh_emulators.env["ILOG_SALESFORCE_INSTANCE_URL"],
                                                          "Bearer")


def test_bad_client_secret_is_invalid_client(fresh_emulators: Emulators) -> None:
    data = {"grant_type": "client_credentials", "client_id": "ilog-emulator-client", "client_secret": "nope"}
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        token_login(f"{fresh_emulators.env['ILOG_SALESFORCE_LOGIN_URL']}/services/oauth2/token", data,
                    "login", "x", None, None, _session(fresh_emulators))
    assert failed.value.code == "invalid_client"
    assert "invalid client credentials" in str(failed.value)


def test_jwt_bearer_grant_accepts_a_well_formed_assertion(fresh_emulators: Emulators) -> None:
    assertion = jwt.encode({"iss": "ilog-emulator-client", "sub": "worker@example.com",
                            "aud": "https://login.salesforce.com", "exp": 4102444800}, "k" * 32, algorithm="HS256")
    data = {"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion}
    token, instance = token_login(f"{fresh_emulators.env['ILOG_SALESFORCE_LOGIN_URL']}/services/oauth2/token",
                                  data, "login", "x", None, None, _session(fresh_emulators))
    assert token.startswith("00D") and instance.startswith("127.0.0.1:")


def test_task_create_get_update_delete_round_trip(sf: Salesforce, fresh_emulators: Emulators) -> None:
    """Shapes: REST API Developer Guide, "Create a Record" (201 id/success/errors), "Update a Record" (204)."""
    created = sf.Task.create(VALID)
    assert (created["success"], created["errors"], len(created["id"]), created["id"][:3]) == (True, [], 18, "00T")
    assert sf.Task.update(created["id"], {"Description": "notes", "Status": "Completed", "Score__c": "4.5"}) == 204
    fetched = sf.Task.get(created["id"])
    expected = {**VALID, "Description": "notes", "Status": "Completed", "Score__c": 4.5, "IsClosed": True}
    assert {k: fetched[k] for k in expected} == expected
    task = fresh_emulators.salesforce.state()["tasks"][0]
    assert task["CreatedDate"] <= task["LastModifiedDate"]
    sf.Task.delete(created["id"])
    assert ([], [created["id"]]) == (fresh_emulators.salesforce.state()["tasks"],
                                     fresh_emulators.salesforce.state()["deleted_ids"])


@pytest.mark.parametrize(("fields", "code"), [
    ({"Subject": "x" * 256}, "STRING_TOO_LONG"),
    ({"Description": "x" * 32001}, "STRING_TOO_LONG"),
    ({"CallType": "Sideways"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ({"Status": None}, "REQUIRED_FIELD_MISSING"),
    ({"WhoId": "not-an-id"}, "MALFORMED_ID"),
    ({"Mood__c": "happy"}, "INVALID_FIELD"),
    ({"Score__c": "high"}, "JSON_PARSER_ERROR"),
    ({"CallDurationInSeconds": "12.5"}, "JSON_PARSER_ERROR"),
])
def test_invalid_create_is_a_malformed_request_with_the_real_error_code(
        sf: Salesforce, fields: dict[str, Any], code: str) -> None:
    """Shape: REST API Developer Guide, "Status Codes and Error Responses" ([{message, errorCode, fields}])."""
    with pytest.raises(SalesforceMalformedRequest) as failed:
        sf.Task.create({**VALID, **fields})
    assert [code] == _codes(failed.value)


def test_task_subtype_is_create_only(sf: Salesforce) -> None:
    created = sf.Task.create(VALID)
    with pytest.raises(SalesforceMalformedRequest) as failed:
        sf.Task.update(created["id"], {"TaskSubtype": "Task"})
    assert _codes(failed.value) == ["INVALID_FIELD_FOR_INSERT_UPDATE"]


def test_describe_lists_standard_and_custom_fields(sf: Salesforce) -> None:
    fields = {f["name"]: f for f in sf.Task.describe()["fields"]}
    assert {"Subject", "Description", "CallObject", "WhoId", "WhatId", "Tier__c", "Score__c", "Queue__c"} <= set(fields)
    custom = [(fields[n]["type"], fields[n]["length"]) for n in ("Tier__c", "Score__c", "Queue__c")]
    assert custom == [("string", 40), ("double", 0), ("string", 80)]
    assert [v["value"] for v in fields["CallType"]["picklistValues"]] == ["Inbound", "Outbound", "Internal"]


def test_collection_create_answers_per_record_in_request_order(sf: Salesforce, fresh_emulators: Emulators) -> None:
    """Shape: REST API Developer Guide, "sObject Collections: Create Multiple Records"."""
    records = [{"attributes": {"type": "Task"}, **VALID, "CallObject": "a"},
               {"attributes": {"type": "Task"}, **VALID, "Subject": "x" * 300},
               {"attributes": {"type": "Task"}, **VALID, "Bogus__c": 1}]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": False, "records": records})
    assert [r["success"] for r in results] == [True, False, False]
    assert [[e["statusCode"] for e in r["errors"]] for r in results[1:]] == [["STRING_TOO_LONG"], ["INVALID_FIELD"]]
    assert [t["CallObject"] for t in fresh_emulators.salesforce.state()["tasks"]] == ["a"]


def test_collection_all_or_none_rolls_back_everything(sf: Salesforce, fresh_emulators: Emulators) -> None:
    records = [{"attributes": {"type": "Task"}, **VALID}, {"attributes": {"type": "Task"}, **VALID, "Priority": "?"}]
    results = sf.restful("composite/sobjects", method="POST", json={"allOrNone": True, "records": records})
    codes = [[e["statusCode"] for e in r["errors"]] for r in results]
    assert codes == [["ALL_OR_NONE_OPERATION_ROLLED_BACK"], ["INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"]]
    assert fresh_emulators.salesforce.state()["tasks"] == []


def test_collection_update_and_the_200_record_cap(sf: Salesforce, fresh_emulators: Emulators) -> None:
    first = sf.Task.create(VALID)["id"]
    records = [{"attributes": {"type": "Task"}, "id": first, "Description": "v2"},
               {"attributes": {"type": "Task"}, "id": "00T8d9999999999QAA", "Description": "v2"}]
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": records})
    assert [(first, True), ("00T8d9999999999QAA", False)] == [(r["id"], r["success"]) for r in results]
    assert fresh_emulators.salesforce.state()["tasks"][0]["Description"] == "v2"
    with pytest.raises(SalesforceMalformedRequest) as failed:
        sf.restful("composite/sobjects", method="POST",
                   json={"allOrNone": False, "records": [{"attributes": {"type": "Task"}, **VALID}] * 201})
    assert _codes(failed.value) == ["EXCEEDED_ID_LIMIT"]


def test_query_finds_tasks_by_call_object(sf: Salesforce) -> None:
    """Shape: REST API Developer Guide, "Execute a SOQL Query" (totalSize, done, records with attributes)."""
    ids = [sf.Task.create({**VALID, "CallObject": name})["id"] for name in ("conv-a", "conv-b", "conv-c")]
    one = sf.query("SELECT Id, CallObject FROM Task WHERE CallObject = 'conv-b'")
    assert (1, True, [{"attributes": {"type": "Task", "url": f"/services/data/v62.0/sobjects/Task/{ids[1]}"},
                       "Id": ids[1], "CallObject": "conv-b"}]) == (one["totalSize"], one["done"], one["records"])
    many = sf.query("SELECT Id FROM Task WHERE CallObject IN ('conv-a', 'conv-c', 'zzz')")
    assert [ids[0], ids[2]] == [r["Id"] for r in many["records"]]
    lower = sf.query("select Id from Task where CallObject in ('conv-b','it\\'s') AND CallObject NOT IN ('conv-a')")
    assert [ids[1]] == [r["Id"] for r in lower["records"]]


@pytest.mark.parametrize(
    "where",
    ["CallObject IN ()", "CallObject IN (conv-a)", "CallObject IN ('conv-a' 'conv-b')",
     "CallObject IN ('conv-a',)", "CallObject IN 'conv-a'"],
)
def test_malformed_in_lists_are_refused_as_salesforce_does(sf: Salesforce, where: str) -> None:
    with pytest.raises(SalesforceMalformedRequest) as failed:
        sf.query(f"SELECT Id FROM Task WHERE {where}")
    assert _codes(failed.value) == ["MALFORMED_QUERY"]


def test_and_inside_a_literal_is_text(sf: Salesforce) -> None:
    created = sf.Task.create({**VALID, "CallObject": "a AND b"})["id"]
    found = sf.query("SELECT Id FROM Task WHERE CallObject IN ('a AND b') AND Subject = 'Inbound call from Ada'")
    assert [created] == [r["Id"] for r in found["records"]]


def test_a_query_over_2000_records_pages_with_next_records_url(sf: Salesforce, fresh_emulators: Emulators) -> None:
    """Shape: "Execute a SOQL Query": ≤ 2,000 records an answer, `done` false and `nextRecordsUrl`."""
    fresh_emulators.salesforce.seed({"tasks": [{**VALID, "CallObject": "conv-many"}] * 2_001})
    first = sf.query("SELECT Id, CallObject FROM Task WHERE CallObject IN ('conv-many')")
    assert (2_001, False, 2_000) == (first["totalSize"], first["done"], len(first["records"]))
    assert first["nextRecordsUrl"].startswith("/services/data/v62.0/query/")
    everything = sf.query_all("SELECT Id, CallObject FROM Task WHERE CallObject IN ('conv-many')")
    assert (2_001, 2_001) == (everything["totalSize"], len({r["Id"] for r in everything["records"]}))


def test_fault_errors_map_to_simple_salesforce_exceptions(sf: Salesforce, fresh_emulators: Emulators) -> None:
    handle = fresh_emulators.salesforce
    handle.inject("request_limit")
    with pytest.raises(SalesforceRefusedRequest):
        sf.Task.create(VALID)
    handle.inject("503")
    with pytest.raises(SalesforceGeneralError) as unavailable:
        sf.Task.create(VALID)
    assert unavailable.value.status == 503
    handle.inject("429", retry_after=7)
    raw = sf.session.get(f"{handle.base_url}/services/data/v62.0/limits", headers=sf.headers)
    assert (raw.status_code, raw.headers["Retry-After"]) == (429, "7")
    handle.inject("invalid_session")
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.Task.create(VALID)
    assert _codes(expired.value) == ["INVALID_SESSION_ID"]
    with pytest.raises(SalesforceExpiredSession):  # the token itself is gone: a new login is needed
        sf.Task.create(VALID)
    assert handle.state()["tasks"] == []


def test_timeout_fault_applies_the_write_then_answers_late(sf: Salesforce, fresh_emulators: Emulators) -> None:
    fresh_emulators.salesforce.inject("timeout", delay_s=1.0, path="/sobjects/Task")
    with pytest.raises(requests.Timeout):
        sf.session.post(f"{sf.base_url}sobjects/Task/", json=VALID, headers=sf.headers, timeout=0.3)
    assert [t["CallObject"] for t in fresh_emulators.salesforce.state()["tasks"]] == ["conv-1"]


def test_drop_after_apply_closes_without_answer(sf: Salesforce, fresh_emulators: Emulators) -> None:
    fresh_emulators.salesforce.inject("drop_after_apply", method="POST")
    with pytest.raises(requests.ConnectionError):
        sf.Task.create(VALID)
    assert len(fresh_emulators.salesforce.state()["tasks"]) == 1
    faulted = [(r["method"], r["status"], r["fault"]) for r in fresh_emulators.salesforce.requests() if r["fault"]]
    assert faulted == [("POST", None, "drop_after_apply")]


def test_every_api_answer_carries_api_usage(sf: Salesforce, fresh_emulators: Emulators) -> None:
    sf.Task.create(VALID)
    response = sf.session.get(f"{sf.base_url}limits", headers=sf.headers)
    assert response.headers["Sforce-Limit-Info"] == "api-usage=2/100000"
    logged = [f"{r['method']} {r['path']}" for r in fresh_emulators.salesforce.requests()]
    assert logged == ["POST /services/oauth2/token", "POST /services/data/v62.0/sobjects/Task/",
                      "GET /services/data/v62.0/limits"]
