"""Budget admission (pure): finalized first, only finalized when low, as many as fit; what each target
says a batch costs."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from adapters import zendesk_lookup, zendesk_writes
from adapters.base import BudgetLimits, SyncItem, TargetState
from adapters.http_post import Poster
from adapters.http_session import RecordingSession
from adapters.salesforce import SalesforceTarget
from adapters.salesforce_auth import SalesforceCredentials
from adapters.webhook import WebhookTarget
from adapters.zendesk import ZendeskOptions, ZendeskTarget
from schemas.snapshot import LogSnapshot
from worker.store.budget import Grant, admit

LIMITS = BudgetLimits(per_minute=100, per_day=10_000)


def item(interaction_id: str, *, final: bool = False, state: TargetState | None = None) -> SyncItem:
    snapshot = LogSnapshot.model_validate({
        "interaction_id": interaction_id, "version": 2, "trigger": "finalized" if final else "state_changed",
        "finalized": final,
    })
    return SyncItem(snapshot, state or TargetState())


def grant(left_minute: int, left_day: int = 10_000) -> Grant:
    return Grant(True, left_minute, left_day, 0.0)


def one_request_each(items: Sequence[SyncItem]) -> int:
    return len(items)


@pytest.fixture
def salesforce() -> Iterator[SalesforceTarget]:
    credentials = SalesforceCredentials(login_url="https://login.example", client_id="c", client_secret="s")
    target = SalesforceTarget(instance_url="https://acme.example", credentials=credentials,
                              session=RecordingSession(None, 5.0), api_version="61.0", attribute_fields={})
    yield target
    target.close()


@pytest.fixture
def zendesk() -> Iterator[ZendeskTarget]:
    target = ZendeskTarget(url="https://acme.zendesk.com", email="a@acme.example", token="t",
                           session=RecordingSession(None, 5.0), options=ZendeskOptions())
    yield target
    target.close()


def test_salesforce_costs_its_look_up_queries_and_one_collection_request_per_200_records(
    salesforce: SalesforceTarget,
) -> None:
    items = [item(f"c{n}") for n in range(401)] + [item("known", state=TargetState("00T1", 3))]
    assert 3 + 1 + 3 == salesforce.estimate_requests(items)  # 401 look-ups, 1 update, 401 creates
    assert 0 == salesforce.estimate_requests([])


def test_zendesk_costs_its_look_ups_and_what_its_writer_estimates_writes_in_jobs_included(
    zendesk: ZendeskTarget,
) -> None:
    items = [item("a", final=True), item("b", final=True, state=TargetState("7", 3))]
    lookups = zendesk_lookup.estimated_lookup_requests(items)
    assert (2, 2) == (lookups, zendesk_writes.estimated_requests(items))  # a search; ticket 7's comments
    assert lookups + zendesk_writes.estimated_requests(items) == zendesk.estimate_requests(items)
    many = [item(f"n{n}", final=True) for n in range(150)]
    assert 2 + 2 + 1 == zendesk.estimate_requests(many)  # two searches, two create jobs and one poll


def test_a_webhook_post_is_one_request_per_snapshot() -> None:
    target = WebhookTarget(url="https://hooks.example", secret="k", session=Poster("https://hooks.example", None, 5.0))
    try:
        assert 3 == target.estimate_requests([item("a"), item("b"), item("c")])
    finally:
        target.close()


def test_with_plenty_left_everything_goes_finalized_first() -> None:
    items = [item("a"), item("b", final=True), item("c")]
    admitted = admit(one_request_each, items, grant(90), LIMITS, 0.1)
    assert ["b", "a", "c"] == [i.snapshot.interaction_id for i in admitted]


def test_when_the_budget_is_low_only_finalized_snapshots_go() -> None:
    items = [item("a"), item("b", final=True), item("c")]
    assert ["b"] == [i.snapshot.interaction_id for i in admit(one_request_each, items, grant(9), LIMITS, 0.1)]
    assert ["b"] == [i.snapshot.interaction_id for i in admit(one_request_each, items, grant(90, 999), LIMITS, 0.1)]


def test_only_as_many_as_the_budget_holds_are_admitted_and_none_when_it_is_spent() -> None:
    items = [item(f"f{n}", final=True) for n in range(8)]
    assert 4 == len(admit(one_request_each, items, grant(5), LIMITS, 0.1))
    assert [] == admit(one_request_each, items, grant(0), LIMITS, 0.1)


def test_a_target_without_limits_is_never_low() -> None:
    items = [item("a")]
    assert items == admit(one_request_each, items, grant(1), None, 0.1)
