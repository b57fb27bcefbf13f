"""A closed linked ticket: how the Zendesk target tells Zendesk's refusal from any other."""

from __future__ import annotations

from zenpy.lib.exception import APIException

from adapters.base import Failed, Retry, Synced, SyncOutcome, outcome_for_error
from adapters.zendesk_errors import translate_zenpy_error
from adapters.zendesk_followup import refused_as_closed
from adapters.zendesk_jobs import JobResults
from tests.fakes import json_response

CLOSED_BODY = {"error": "RecordInvalid", "description": "Record validation errors",
               "details": {"status": [{"description": "Status: closed prevents ticket update"}]}}


def test_a_422_says_what_zendesk_refused_in_the_error_it_becomes() -> None:
    closed = translate_zenpy_error(APIException(response=json_response(422, CLOSED_BODY)))
    several = translate_zenpy_error(APIException(response=json_response(422, {
        "error": "RecordInvalid", "details": {"base": [{"description": "Seats: is not a whole number"},
                                                       {"description": "Priority: is invalid"}]}})))
    bare = translate_zenpy_error(APIException(response=json_response(422, {"error": "RecordInvalid"})))
    assert [str(closed), str(several), str(bare)] == [
        "RecordInvalid: HTTP 422: Status: closed prevents ticket update",
        "RecordInvalid: HTTP 422: Seats: is not a whole number; Priority: is invalid",
        "RecordInvalid: HTTP 422",
    ]


def test_only_the_closed_refusal_of_a_direct_update_or_a_job_result_asks_for_a_follow_up() -> None:
    direct = outcome_for_error(translate_zenpy_error(APIException(response=json_response(422, CLOSED_BODY))))
    job = JobResults.parse([{"index": 0, "id": 7, "action": "update", "success": False, "status": "Failed",
                             "error": "RecordInvalid", "details": CLOSED_BODY["details"]}]).outcome(7, 9)
    job_text = JobResults.parse([{"index": 0, "id": 7, "action": "update", "success": False, "status": "Failed",
                                  "error": "TicketUpdateFailed",
                                  "details": "Status closed prevents ticket update"}]).outcome(7, 9)
    others: list[SyncOutcome | None] = [
        Failed("RecordInvalid", "HTTP 422: Seats: is not a whole number"),
        Failed("RecordNotFound", "ticket not found"),
        Retry(None, "HTTP 503"),
        Synced("7", 9),
        None,
    ]
    assert [refused_as_closed(direct), refused_as_closed(job), refused_as_closed(job_text)] == [True] * 3
    assert [refused_as_closed(outcome) for outcome in others] == [False] * len(others)
