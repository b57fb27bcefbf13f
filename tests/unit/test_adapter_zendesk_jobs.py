"""Pure parts of the Zendesk bulk jobs: per-ticket results and the pacing of polls."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from zenpy.lib.api_objects import Ticket

from adapters.base import Failed, Retry, Synced, SyncItem, TargetState
from adapters.zendesk_jobs import JobPacing, JobResults
from adapters.zendesk_lookup import estimated_lookup_requests
from adapters.zendesk_writes import Write, estimated_requests, plan_units
from schemas.snapshot import LogSnapshot

# Result rows as zenpy's recorded sessions show them: create_many
# (`test_full_objects_create-create-multiple.json`), update_many (`test_multiple_update_full_objects-update-many.json`).
CREATED = [{"index": 0, "id": 3561, "account_id": 1}, {"index": 1, "id": 3593, "account_id": 1}]
UPDATED = [{"action": "update", "status": "Updated", "success": True, "id": 3862}]


def test_created_tickets_are_matched_by_request_index() -> None:
    results = JobResults.parse(CREATED)
    assert [Synced("3593", 4), Synced("3561", 4)] == [results.created(1, 4), results.created(0, 4)]


def test_a_create_missing_from_the_results_is_uncertain_without_an_id() -> None:
    outcome = JobResults.parse(CREATED).created(2, 4)
    assert Retry(None, "job finished without a result for the ticket", uncertain=True) == outcome


def test_updates_are_matched_by_ticket_id() -> None:
    results = JobResults.parse(UPDATED)
    assert (Synced("3862", 7), Retry(None, "job finished without a result for the ticket", uncertain=True,
                                     remote_id="3863")) == (results.outcome(3862, 7), results.outcome(3863, 7))


@pytest.mark.parametrize(("row", "expected"), [
    ({"index": 0, "id": 5, "success": False, "error": "TooManyRequests", "details": "limit"},
     Retry(None, "TooManyRequests: limit", remote_id="5")),
    ({"index": 0, "id": 5, "success": False, "error": "RecordNotFound", "details": "Not found"},
     Failed("RecordNotFound", "Not found")),
])
def test_failed_update_results_are_retried_only_for_the_per_ticket_limit(
    row: dict[str, object], expected: object
) -> None:
    assert expected == JobResults.parse([row]).outcome(5, 1)


def test_the_first_poll_waits_for_the_expected_pace_of_the_largest_job() -> None:
    pacing = JobPacing(min_poll_s=0.5, seconds_per_item=0.1, queue_s=1.0)
    assert [1.0, 3.0, 11.0] == pytest.approx([pacing.first_delay_s([]), pacing.first_delay_s([20]),
                                              pacing.first_delay_s([100, 40])])


@pytest.mark.parametrize(("progress", "expected_s"), [
    (25, 6.0),  # a quarter done in 2 s: three quarters left
    (None, 1.0),  # still queued: half the time waited so far
    (0, 1.0),
])
def test_later_polls_follow_the_job_progress(progress: int | None, expected_s: float) -> None:
    pacing = JobPacing(min_poll_s=0.5)
    job = SimpleNamespace(progress=progress, total=100)
    assert expected_s == pytest.approx(pacing.next_delay_s(2.0, job))


def test_pace_is_learnt_from_jobs_that_needed_several_polls_and_shortened_when_one_sufficed() -> None:
    pacing = JobPacing(min_poll_s=0.1, seconds_per_item=0.05, queue_s=0.5)
    pacing.learn(elapsed_s=10.5, total=100, polls=3)
    assert pacing.seconds_per_item == pytest.approx(0.1)
    pacing.learn(elapsed_s=10.5, total=100, polls=1)
    assert pacing.seconds_per_item == pytest.approx(0.09)


def _write(index: int, ticket_id: int | None) -> Write:
    create = ticket_id is None
    return Write(index, Ticket(id=ticket_id) if ticket_id else Ticket(external_id=f"c{index}"), 1, create=create)


def test_writes_are_split_into_jobs_of_at_most_100_and_a_ticket_updated_twice_waits() -> None:
    writes = [_write(n, 1000 + n) for n in range(150)] + [_write(150, 1000)]
    writes += [_write(n, None) for n in range(151, 154)]
    units, repeats = plan_units(writes)
    assert [(False, 100), (False, 50), (True, 3)] == [(unit.create, len(unit.writes)) for unit in units]
    assert [150] == [write.index for write in repeats]


@pytest.mark.parametrize(("updates", "creates", "expected"), [
    (1, 1, [(False, 1), (True, 1)]),  # two direct calls
    (2, 0, [(False, 1), (False, 1)]),  # a job and its poll would cost as much
    (2, 1, [(False, 1), (False, 1), (True, 1)]),  # a tie: direct calls answer at once
    (3, 0, [(False, 3)]),  # one job and one poll instead of three calls
    (2, 2, [(False, 2), (True, 2)]),  # two jobs sharing one poll: three requests instead of four
])
def test_jobs_are_used_when_they_save_requests(
    updates: int, creates: int, expected: list[tuple[bool, int]]
) -> None:
    writes = [_write(n, 1000 + n) for n in range(updates)] + [_write(100 + n, None) for n in range(creates)]
    units, _ = plan_units(writes)
    assert expected == [(unit.create, len(unit.writes)) for unit in units]


def _item(n: int, *, linked: bool = False, state: TargetState | None = None) -> SyncItem:
    snapshot = LogSnapshot.model_validate({
        "interaction_id": f"conv-{n}", "version": 3, "trigger": "finalized", "finalized": True,
        "related_to": {"system": "zendesk", "type": "ticket", "id": str(500 + n)} if linked else None,
    })
    return SyncItem(snapshot, state or TargetState())


@pytest.mark.parametrize(("items", "expected"), [
    ([], 0),
    ([_item(0)], 1 + 1),  # no state: one search by external_id, one direct create
    ([_item(n) for n in range(150)], 2 + 3),  # two searches; two create_many jobs, one poll
    # one search for the 80; the comments of each of the 20 linked tickets; two jobs, one poll
    ([_item(n) for n in range(80)] + [_item(n, linked=True) for n in range(80, 100)], 1 + 20 + 3),
    ([_item(0, state=TargetState(uncertain=True))], 1 + 1),  # a direct external_id read, a write
    ([_item(0, linked=True, state=TargetState(remote_id="500", synced_version=2))], 1 + 1),  # marker check
    ([_item(0, linked=True, state=TargetState(remote_id="500", synced_version=3))], 1 + 1),
    ([_item(0, linked=True, state=TargetState(remote_id="500"))], 0 + 1),  # stored, never synced: no check
])
def test_the_budget_estimate_counts_look_ups_submits_and_one_poll_not_tickets(
    items: list[SyncItem], expected: int
) -> None:
    assert expected == estimated_requests(items) + estimated_lookup_requests(items)
