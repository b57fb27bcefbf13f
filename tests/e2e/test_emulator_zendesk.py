"""The Zendesk emulator driven by zenpy (reached through ZENPY_FORCE_NETLOC / ZENPY_FORCE_SCHEME)."""

from __future__ import annotations

import os

import pytest
import requests
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, CustomField, Ticket
from zenpy.lib.exception import APIException, RatelimitBudgetExceeded, RecordNotFoundException, TooManyValuesException

from tests.e2e.conftest import Emulators


def _point_zenpy_at(emulators: Emulators) -> None:
    """zenpy reads its host override from the environment; another tier's emulator set (the fault
    tests start their own) may have pointed it elsewhere."""
    os.environ.update({name: emulators.env[name] for name in ("ZENPY_FORCE_NETLOC", "ZENPY_FORCE_SCHEME")})


def _client(emulators: Emulators, **options: object) -> Zenpy:
    _point_zenpy_at(emulators)
    return Zenpy(subdomain="x", email=emulators.env["ILOG_ZENDESK_EMAIL"],
                 token=emulators.env["ILOG_ZENDESK_TOKEN"], disable_cache=True, **options)


@pytest.fixture
def zd(fresh_emulators: Emulators) -> Zenpy:
    fresh_emulators.zendesk.seed({"tickets": [{"id": 101, "subject": "Refund", "external_id": "case-9",
                                               "comments": [{"body": "Customer wrote in", "public": True}]}]})
    return _client(fresh_emulators)


def test_update_with_private_comment_and_custom_field(zd: Zenpy, fresh_emulators: Emulators) -> None:
    """Shape: zenpy cassette TestTicketCreateUpdateDelete.test_single_object_update-update-single.json."""
    ticket = zd.tickets(id=101)
    ticket.comment = Comment(body="Log v3 [interaction conv-1 · log v3]", public=False)
    ticket.custom_fields = [CustomField(id=360002, value=2), CustomField(id=360004, value="gold")]
    audit = zd.tickets.update(ticket)
    assert audit.ticket.id == 101
    assert [e["type"] for e in audit.audit.events] == ["Comment", "Change", "Change"]
    stored = fresh_emulators.zendesk.state()["tickets"][0]
    assert [(c["body"], c["public"]) for c in stored["comments"]] == [
        ("Customer wrote in", True), ("Log v3 [interaction conv-1 · log v3]", False)]
    assert {f["id"]: f["value"] for f in stored["custom_fields"] if f["value"] is not None} == {
        360002: 2, 360004: "gold"}
    assert [c.body for c in zd.tickets.comments(ticket=101)][-1] == "Log v3 [interaction conv-1 · log v3]"


def test_unknown_ticket_raises_record_not_found(zd: Zenpy) -> None:
    """Shape: zenpy cassette ...test_single_update_raises_recordnotfoundexception-recordnotfound-update.json."""
    with pytest.raises(RecordNotFoundException):
        zd.tickets(id=999)


def test_text_in_an_integer_field_is_record_invalid(zd: Zenpy) -> None:
    with pytest.raises(APIException) as failed:
        zd.tickets.update(Ticket(id=101, custom_fields=[CustomField(id=360002, value="three")]))
    assert failed.value.response.status_code == 422
    assert failed.value.response.json()["error"] == "RecordInvalid"


def test_wrong_token_is_401(fresh_emulators: Emulators) -> None:
    _point_zenpy_at(fresh_emulators)
    client = Zenpy(subdomain="x", email="agent@example.com", token="wrong", disable_cache=True)
    with pytest.raises(APIException) as failed:
        client.tickets(id=1)
    assert failed.value.response.json() == {"error": "Couldn't authenticate you"}


def test_update_many_job_goes_queued_working_completed(zd: Zenpy, fresh_emulators: Emulators) -> None:
    """Shape: zenpy cassette TestTicketCreateUpdateDelete.test_multiple_update_full_objects-update-many.json
    (queued with progress null; working with progress and "Updating ticket #N", results null;
    completed with one result per ticket)."""
    fresh_emulators.zendesk.seed({"tickets": [{"id": 102, "subject": "Other"}],
                                  "config": {"job_queue_s": 3600}})
    job = zd.tickets.update([Ticket(id=101, comment=Comment(body="bulk a", public=False)),
                             Ticket(id=102, comment=Comment(body="bulk b", public=False))])
    assert (job.status, job.id[:3], job.progress, job.total) == ("queued", "V3-", None, 2)
    assert zd.job_status(id=job.id).status == "queued"
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 0, "job_seconds_per_item": 3600}})
    working = zd.job_status(id=job.id)
    assert (working.status, working.progress, working.message, working.results) == (
        "working", 0, "Updating ticket #0", None)
    fresh_emulators.zendesk.seed({"config": {"job_seconds_per_item": 0}})
    final = zd.job_status(id=job.id)
    assert (final.status, final.progress) == ("completed", 2)
    assert [(r.id, r.success, r.status) for r in final.results] == [(101, True, "Updated"), (102, True, "Updated")]
    bodies = [t["comments"][-1]["body"] for t in fresh_emulators.zendesk.state()["tickets"]]
    assert bodies == ["bulk a", "bulk b"]


def test_a_job_writes_its_tickets_as_it_reaches_them_without_being_polled(
    zd: Zenpy, fresh_emulators: Emulators
) -> None:
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 3600}})
    zd.tickets.create([Ticket(subject=f"n{i}", comment=Comment(body="b")) for i in range(3)])
    assert len(fresh_emulators.zendesk.state()["tickets"]) == 1  # the seeded one
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 0, "job_seconds_per_item": 0}})
    assert [t["subject"] for t in fresh_emulators.zendesk.state()["tickets"]] == ["Refund", "n0", "n1", "n2"]
    polls = [r for r in fresh_emulators.zendesk.requests() if "job_statuses" in r["path"]]
    assert polls == []


def test_show_many_job_statuses_answers_every_known_job_in_one_request(
    zd: Zenpy, fresh_emulators: Emulators
) -> None:
    """Shape: `GET /api/v2/job_statuses/show_many.json?ids=` → `{"job_statuses": [...]}` (Zendesk Job
    Statuses API, "Show Many Job Statuses"; read by zenpy's JobStatusesResponseHandler)."""
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 0, "job_seconds_per_item": 0}})
    created = zd.tickets.create([Ticket(subject=f"n{i}", comment=Comment(body="b")) for i in range(2)])
    updated = zd.tickets.update([Ticket(id=101, subject="s1"), Ticket(id=101, subject="s2")])
    found = zd.job_status(ids=[created.id, "V3-unknown", updated.id])["job_statuses"]
    assert [(j.id, j.status, j.total) for j in found] == [(created.id, "completed", 2), (updated.id, "completed", 2)]
    assert [(r.index, r.id) for r in found[0].results] == [(0, 1), (1, 2)]
    [request] = [r for r in fresh_emulators.zendesk.requests() if "job_statuses" in r["path"]]
    assert request["path"].startswith("/api/v2/job_statuses/show_many.json?ids=")


def test_more_than_100_tickets_is_too_many_values(zd: Zenpy) -> None:
    """Shape: zenpy cassette ...test_raises_multiple_update_raises_toomanyvaluesexception-update-many.json."""
    with pytest.raises(TooManyValuesException):
        zd.tickets.update([Ticket(id=i, subject="x") for i in range(101)])


def test_create_many_reports_index_and_id(zd: Zenpy, fresh_emulators: Emulators) -> None:
    """Shape: zenpy cassette TestTicketCreateUpdateDelete.test_full_objects_create-create-multiple.json
    (results `{"index", "id", "account_id"}` in request order)."""
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 0, "job_seconds_per_item": 0}})
    job = zd.tickets.create([Ticket(subject=f"n{i}", comment=Comment(body="b")) for i in range(2)])
    job = zd.job_status(id=job.id)
    assert [(r.index, r.id, r.account_id) for r in job.results] == [(0, 1, 1), (1, 2, 1)]


def test_idempotency_key_replays_the_same_ticket(fresh_emulators: Emulators) -> None:
    url = f"{fresh_emulators.zendesk.base_url}/api/v2/tickets.json"
    auth = (f"{fresh_emulators.env['ILOG_ZENDESK_EMAIL']}/token", fresh_emulators.env["ILOG_ZENDESK_TOKEN"])
    body = {"ticket": {"subject": "Call", "comment": {"body": "log", "public": False}, "external_id": "conv-7"}}
    first, second = (requests.post(url, json=body, auth=auth, headers={"Idempotency-Key": "k1"}) for _ in range(2))
    assert [(r.status_code, r.headers["x-idempotency-lookup"]) for r in (first, second)] == [
        (201, "miss"), (201, "hit")]
    assert first.json()["ticket"]["id"] == second.json()["ticket"]["id"]
    found = requests.get(url, params={"external_id": "conv-7"}, auth=auth).json()
    assert (found["count"], found["next_page"]) == (1, None)


def test_429_with_retry_after_is_waited_out_by_zenpy(zd: Zenpy, fresh_emulators: Emulators) -> None:
    fresh_emulators.zendesk.inject("429", retry_after=1)
    assert zd.tickets(id=101).subject == "Refund"
    assert [r["status"] for r in fresh_emulators.zendesk.requests()] == [429, 200]


def test_ratelimit_budget_turns_429_into_an_exception(fresh_emulators: Emulators) -> None:
    fresh_emulators.zendesk.seed({"tickets": [{"id": 5, "subject": "s"}]})
    fresh_emulators.zendesk.inject("429", retry_after=30)
    with pytest.raises(RatelimitBudgetExceeded):
        _client(fresh_emulators, ratelimit_budget=1).tickets(id=5)


def test_per_ticket_update_limit_answers_429(zd: Zenpy, fresh_emulators: Emulators) -> None:
    fresh_emulators.zendesk.seed({"config": {"ticket_update_limit": 2}})
    budgeted = _client(fresh_emulators, ratelimit_budget=1)
    for n in range(2):
        budgeted.tickets.update(Ticket(id=101, subject=f"s{n}"))
    with pytest.raises(RatelimitBudgetExceeded):
        budgeted.tickets.update(Ticket(id=101, subject="s3"))
    limited = fresh_emulators.zendesk.requests()[-1]
    assert (limited["method"], limited["status"]) == ("PUT", 429)


def test_comment_cap_of_5000_is_record_invalid(fresh_emulators: Emulators) -> None:
    fresh_emulators.zendesk.seed({"tickets": [{"id": 7, "comments": [{"body": "c"}] * 5000}]})
    with pytest.raises(APIException) as failed:
        _client(fresh_emulators).tickets.update(Ticket(id=7, comment=Comment(body="one more", public=False)))
    assert failed.value.response.status_code == 422


def test_rate_limit_headers_and_ticket_fields(zd: Zenpy, fresh_emulators: Emulators) -> None:
    field = zd.ticket_fields(id=360002)
    assert (field.type, field.title) == ("integer", "Hold count")
    raw = requests.get(f"{fresh_emulators.zendesk.base_url}/api/v2/ticket_fields.json",
                       auth=(f"{fresh_emulators.env['ILOG_ZENDESK_EMAIL']}/token",
                             fresh_emulators.env["ILOG_ZENDESK_TOKEN"]))
    assert raw.headers["X-Rate-Limit"] == "700"
    assert int(raw.headers["X-Rate-Limit-Remaining"]) < 700


def test_a_closed_ticket_refuses_every_update_and_takes_follow_ups(zd: Zenpy, fresh_emulators: Emulators) -> None:
    """Zendesk's "Creating a follow-up ticket": closed is final; `via_followup_source_id` links a new ticket to a
    closed one and has no effect with any other."""
    zd.tickets.update(Ticket(id=101, status="closed"))
    with pytest.raises(APIException) as refused:
        zd.tickets.update(Ticket(id=101, comment=Comment(body="late", public=False)))
    assert (422, {"error": "RecordInvalid", "description": "Record validation errors",
                  "details": {"status": [{"description": "Status: closed prevents ticket update"}]}}) == (
        refused.value.response.status_code, refused.value.response.json())
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 0, "job_seconds_per_item": 0}})
    job = zd.tickets.update([Ticket(id=101, status="open"), Ticket(id=101, subject="again")])
    failed = zd.job_status(id=job.id)
    assert [(r.success, r.error) for r in failed.results] == [(False, "RecordInvalid")] * 2
    follow_up = zd.tickets.create(Ticket(via_followup_source_id=101, comment=Comment(body="still hot"))).ticket
    ignored = zd.tickets.create(Ticket(via_followup_source_id=follow_up.id, comment=Comment(body="b"))).ticket
    tickets = {t["id"]: t for t in fresh_emulators.zendesk.state()["tickets"]}
    assert (tickets[follow_up.id]["via"]["source"]["rel"], tickets[follow_up.id]["via"]["source"]["from"]["ticket_id"],
            tickets[ignored.id]["via"]["source"]["rel"], tickets[101]["followup_ids"]) == (
        "follow_up", 101, None, [follow_up.id])
    assert ["Customer wrote in"] == [c["body"] for c in tickets[101]["comments"]]
