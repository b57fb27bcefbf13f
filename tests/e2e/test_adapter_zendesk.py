"""Zendesk target against the emulator, through zenpy (local host via ZENPY_FORCE_NETLOC)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from zenpy.lib.api_objects import Ticket

from adapters.base import Retry, Skipped, Synced, SyncItem, SyncOutcome, TargetState, next_target_state
from adapters.zendesk import ZendeskTarget
from adapters.zendesk_render import marker
from schemas.snapshot import LogSnapshot
from tests.e2e.conftest import Emulators
from tests.support import emulator_settings, wait_for
from worker.runtime.settings import Settings
from worker.runtime.targets import build_zendesk

ATTRIBUTES = {"holds": 360002, "talk_minutes": 360003, "tier": 360004}
TargetFactory = Callable[..., ZendeskTarget]


def settings_for(emulators: Emulators, **overrides: Any) -> Settings:
    quick = {"zendesk_timeout_seconds": 2.0, "zendesk_job_poll_seconds": 0.1}
    return emulator_settings(emulators.env, **{**quick, **overrides})


@pytest.fixture
def make_target(fresh_emulators: Emulators) -> Iterator[TargetFactory]:
    built: list[ZendeskTarget] = []

    def make(**overrides: Any) -> ZendeskTarget:
        built.append(build_zendesk(settings_for(fresh_emulators, **overrides)))
        return built[-1]

    yield make
    for target in built:
        target.close()


def seed_tickets(emulators: Emulators, count: int) -> list[int]:
    emulators.zendesk.seed(
        {"tickets": [{"subject": f"Order {n}", "description": "Where is my order?"} for n in range(count)]}
    )
    return [int(ticket["id"]) for ticket in emulators.zendesk.state()["tickets"]]


def final_log(interaction_id: str = "conv-42", version: int = 9, **overrides: Any) -> LogSnapshot:
    base: dict[str, Any] = {
        "interaction_id": interaction_id,
        "version": version,
        "trigger": "finalized",
        "finalized": True,
        "state": "disconnected",
        "media": "voice",
        "direction": "inbound",
        "customer": {"address": "ada@example.com", "name": "Ada Example"},
        "subject": "Inbound call from Ada Example",
        "notes": "Refund approved.",
        "connected_at": "2026-11-27T10:00:00Z",
        "disconnected_at": "2026-11-27T10:04:05Z",
        "duration_seconds": 245,
        "talk_seconds": 200,
        "hold_seconds": 45,
        "hold_count": 1,
        "wrapup_code": "Resolved",
        "attributes": {"holds": "1", "talk_minutes": "3.5", "tier": "gold"},
    }
    base.update(overrides)
    return LogSnapshot.model_validate(base)


def on_ticket(ticket_id: int) -> dict[str, str]:
    return {"system": "zendesk", "type": "ticket", "id": str(ticket_id)}


def ticket(emulators: Emulators, ticket_id: int) -> dict[str, Any]:
    return next(t for t in emulators.zendesk.state()["tickets"] if t["id"] == ticket_id)


def custom_values(found: dict[str, Any]) -> dict[int, Any]:
    return {int(entry["id"]): entry["value"] for entry in found["custom_fields"] if entry["value"] is not None}


def after(batch: list[SyncItem], outcomes: list[SyncOutcome]) -> list[SyncItem]:
    """The batch again, with the states the sync loop stores after these outcomes."""
    return [SyncItem(i.snapshot, next_target_state(i.target_state, o)) for i, o in zip(batch, outcomes, strict=True)]


def request_kinds(emulators: Emulators) -> list[str]:
    """The API requests the emulator answered, by kind (ticket-field reads left out)."""
    kinds = []
    for entry in emulators.zendesk.requests():
        path, method = str(entry["path"]).split("?", 1)[0], entry["method"]
        if "ticket_fields" in path:
            continue
        if "job_statuses" in path:
            kinds.append("job_statuses" if path.endswith("show_many.json") else "job_status")
        elif path.endswith(("create_many.json", "update_many.json")):
            kinds.append(path.rsplit("/", 1)[-1].removesuffix(".json"))
        elif path.endswith("/tickets.json"):
            kinds.append("create" if method == "POST" else "external_id_lookup")
        elif path.endswith("/search.json"):
            kinds.append("search")
        elif path.endswith("/comments.json"):
            kinds.append("comments")
        else:
            kinds.append(f"{method} {path}")
    return kinds


def worker_comments(found: dict[str, Any]) -> list[str]:
    return [comment["body"] for comment in found["comments"] if "[interaction " in comment["body"]]


def test_only_final_logs_are_wanted(make_target: TargetFactory) -> None:
    target = make_target()
    assert [
        target.wants(final_log()),
        target.wants(final_log(trigger="state_changed", finalized=False)),
    ] == [True, False]


def test_comment_mode_posts_one_private_comment_ending_with_the_marker(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target(zendesk_attribute_fields=ATTRIBUTES)
    [outcome] = target.sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    assert Synced(str(ticket_id), 9) == outcome
    found = ticket(fresh_emulators, ticket_id)
    [comment] = [c for c in found["comments"] if "[interaction " in c["body"]]
    assert comment["public"] is False
    assert comment["body"].startswith("Refund approved.\n\n")
    assert comment["body"].endswith("\n" + marker("conv-42", 9))
    for fact in ("Duration: 4m 05s", "Hold: 45s (1×)", "Wrap-up: Resolved", "Related to: ticket"):
        assert fact in comment["body"]
    assert custom_values(found) == {360002: 1, 360003: 3.5, 360004: "gold"}


def test_field_mode_writes_the_log_into_the_custom_field_without_a_comment(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target(zendesk_mode="field", zendesk_log_field_id=360001)
    [outcome] = target.sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    assert Synced(str(ticket_id), 9) == outcome
    found = ticket(fresh_emulators, ticket_id)
    assert worker_comments(found) == []
    assert len(found["comments"]) == 1
    assert custom_values(found)[360001].endswith(marker("conv-42", 9))


def test_field_mode_creates_a_missing_ticket_whose_only_comment_ends_with_the_marker(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """A ticket needs a first comment; the worker writes it, so it ends with the marker line (CONTRACT.md)."""
    target = make_target(zendesk_mode="field", zendesk_log_field_id=360001)
    [outcome] = target.sync([SyncItem(final_log())])
    assert isinstance(outcome, Synced)
    [found] = fresh_emulators.zendesk.state()["tickets"]
    assert ("conv-42", str(found["id"])) == (found["external_id"], outcome.remote_id)
    assert [marker("conv-42", 9)] == [comment["body"].splitlines()[-1] for comment in found["comments"]]
    assert custom_values(found)[360001].endswith(marker("conv-42", 9))


def test_a_non_numeric_attribute_is_dropped_and_the_rest_saves(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target(zendesk_attribute_fields=ATTRIBUTES)
    log = final_log(related_to=on_ticket(ticket_id), attributes={"holds": "one", "talk_minutes": "3.5", "tier": "vip"})
    [outcome] = target.sync([SyncItem(log)])
    assert isinstance(outcome, Synced)
    found = ticket(fresh_emulators, ticket_id)
    assert custom_values(found) == {360003: 3.5, 360004: "vip"}
    assert len(worker_comments(found)) == 1


def test_numbers_written_with_an_exponent_or_many_digits_reach_their_fields_and_the_log_saves(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """Zendesk reads a number field's value as plain digits: `1e20` or `0.00001` must not go out as `1e+20`
    or `1e-05` (refused: the whole update, comment included, would fail), nor a long integer be rounded."""
    tickets = seed_tickets(fresh_emulators, 3)
    target = make_target(zendesk_attribute_fields=ATTRIBUTES)
    values = [("1e20", "7"), ("0.00001", "12345678901234567890"), ("2.5", "3")]
    outcomes = target.sync([
        SyncItem(final_log(f"conv-{n}", related_to=on_ticket(ticket_id),
                           attributes={"talk_minutes": minutes, "holds": holds}))
        for n, (ticket_id, (minutes, holds)) in enumerate(zip(tickets, values, strict=True))])
    assert [Synced] * 3 == [type(outcome) for outcome in outcomes], outcomes
    found = [ticket(fresh_emulators, ticket_id) for ticket_id in tickets]
    assert [1, 1, 1] == [len(worker_comments(t)) for t in found]
    assert [(1e20, 7), (0.00001, 12345678901234567890), (2.5, 3)] == [
        (float(custom_values(t)[360003]), custom_values(t)[360002]) for t in found]


def test_without_a_linked_ticket_one_is_created_for_the_requester_and_found_again_by_external_id(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    target = make_target()
    [created] = target.sync([SyncItem(final_log())])
    assert isinstance(created, Synced)
    [found] = fresh_emulators.zendesk.state()["tickets"]
    assert (str(found["id"]), "conv-42") == (created.remote_id, found["external_id"])
    assert [marker("conv-42", 9)] == [body.splitlines()[-1] for body in worker_comments(found)]
    create_calls = [r for r in fresh_emulators.zendesk.requests() if r["method"] == "POST"]
    assert len(create_calls) == 1

    # The stored id is lost: the ticket is found by external_id and the marker stops a second post.
    [again] = target.sync([SyncItem(final_log(), TargetState(remote_id=None, synced_version=9))])
    assert Synced(str(found["id"]), 9) == again
    assert len(fresh_emulators.zendesk.state()["tickets"]) == 1
    assert len(worker_comments(ticket(fresh_emulators, found["id"]))) == 1


def test_a_new_ticket_is_for_the_zendesk_user_chosen_in_name(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """Name holds the requester the agent picked: the ticket is theirs, no user is made from the customer."""
    target = make_target()
    chosen = final_log("conv-1", name={"system": "zendesk", "type": "user", "id": "9001"})
    other_system = final_log("conv-2", name={"system": "salesforce", "type": "Contact", "id": "0035g00000AbCdE"})
    outcomes = target.sync([SyncItem(chosen), SyncItem(other_system)])
    assert [Synced, Synced] == [type(outcome) for outcome in outcomes]
    created = {t["external_id"]: t for t in fresh_emulators.zendesk.state()["tickets"]}
    assert 9001 == created["conv-1"]["requester_id"]
    [customer] = fresh_emulators.zendesk.state()["users"]  # made from conv-2's customer, none for conv-1
    assert (customer["id"], "Ada Example", "ada@example.com") == (
        created["conv-2"]["requester_id"], customer["name"], customer["email"])


def test_new_tickets_of_one_customer_share_the_requester_made_from_the_customer(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    target = make_target()
    by_phone = {"address": "+4930123456", "name": "Bo Caller"}
    outcomes = target.sync([SyncItem(final_log("conv-1")), SyncItem(final_log("conv-2")),
                            SyncItem(final_log("conv-3", customer=by_phone))])
    assert [Synced] * 3 == [type(outcome) for outcome in outcomes], outcomes
    state = fresh_emulators.zendesk.state()
    users = {user["id"]: (user["name"], user["email"], user["phone"]) for user in state["users"]}
    assert {"conv-1": ("Ada Example", "ada@example.com", None), "conv-2": ("Ada Example", "ada@example.com", None),
            "conv-3": ("Bo Caller", None, "+4930123456")} == {
        t["external_id"]: users[t["requester_id"]] for t in state["tickets"]}


def test_missing_ticket_skip_setting_skips(make_target: TargetFactory, fresh_emulators: Emulators) -> None:
    target = make_target(zendesk_missing_ticket="skip")
    assert [Skipped("no linked ticket")] == target.sync([SyncItem(final_log())])
    assert fresh_emulators.zendesk.state()["tickets"] == []


@pytest.mark.parametrize("fault", ["drop_after_apply", "timeout"])
def test_a_comment_whose_answer_was_lost_is_not_posted_twice(
    make_target: TargetFactory, fresh_emulators: Emulators, fault: str
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target()
    fresh_emulators.zendesk.inject(fault, method="PUT", path=f"/tickets/{ticket_id}", delay_s=4.0)
    item = SyncItem(final_log(related_to=on_ticket(ticket_id)))
    [lost] = target.sync([item])
    assert isinstance(lost, Retry)
    assert lost.uncertain
    state = next_target_state(item.target_state, lost)
    assert TargetState(remote_id=str(ticket_id), synced_version=0, uncertain=True) == state

    [retried] = target.sync([SyncItem(item.snapshot, state)])
    assert Synced(str(ticket_id), 9) == retried
    assert len(worker_comments(ticket(fresh_emulators, ticket_id))) == 1


def test_a_new_version_after_an_earlier_sync_is_posted(make_target: TargetFactory, fresh_emulators: Emulators) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target()
    [first] = target.sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    state = next_target_state(TargetState(), first)
    [second] = target.sync([SyncItem(final_log(version=10, related_to=on_ticket(ticket_id)), state)])
    assert Synced(str(ticket_id), 10) == second
    endings = [body.splitlines()[-1] for body in worker_comments(ticket(fresh_emulators, ticket_id))]
    assert [marker("conv-42", 9), marker("conv-42", 10)] == endings


def test_429_is_a_retry_with_retry_after_and_nothing_sleeps_inside_zenpy(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target()
    fresh_emulators.zendesk.inject("429", retry_after=30, method="PUT")
    [outcome] = target.sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    assert isinstance(outcome, Retry)
    assert (outcome.retry_after_s, outcome.uncertain) == (30.0, False)
    assert sum(1 for r in fresh_emulators.zendesk.requests() if r["method"] == "PUT") == 1
    assert worker_comments(ticket(fresh_emulators, ticket_id)) == []


def test_503_is_a_retry(make_target: TargetFactory, fresh_emulators: Emulators) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    target = make_target()
    fresh_emulators.zendesk.inject("503", method="PUT")
    [outcome] = target.sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    assert isinstance(outcome, Retry)
    assert outcome.error == "HTTP 503"


def test_several_due_tickets_go_out_in_one_update_many_job(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    ticket_ids = seed_tickets(fresh_emulators, 3)
    target = make_target(zendesk_attribute_fields=ATTRIBUTES)
    batch = [
        SyncItem(final_log(f"conv-{n}", related_to=on_ticket(ticket_id))) for n, ticket_id in enumerate(ticket_ids)
    ]
    outcomes = target.sync(batch)
    assert [Synced(str(ticket_id), 9) for ticket_id in ticket_ids] == outcomes
    for n, ticket_id in enumerate(ticket_ids):
        endings = [body.splitlines()[-1] for body in worker_comments(ticket(fresh_emulators, ticket_id))]
        assert [marker(f"conv-{n}", 9)] == endings
    # No sync state: each linked ticket's comments are read for the marker first.
    assert ["comments"] * 3 + ["update_many", "job_status"] == request_kinds(fresh_emulators)


def test_a_ticket_create_whose_answer_was_lost_is_not_created_twice(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    target = make_target()
    fresh_emulators.zendesk.inject("timeout", method="POST", path="/tickets.json", delay_s=4.0)
    item = SyncItem(final_log())
    [lost] = target.sync([item])
    assert isinstance(lost, Retry)
    assert lost.uncertain
    [retried] = target.sync([SyncItem(item.snapshot, next_target_state(item.target_state, lost))])
    [found] = fresh_emulators.zendesk.state()["tickets"]
    assert retried == Synced(str(found["id"]), 9)
    assert len(worker_comments(found)) == 1


def test_tickets_for_interactions_without_one_are_created_in_one_job_carrying_log_and_fields(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    target = make_target(zendesk_attribute_fields=ATTRIBUTES)
    outcomes = target.sync([SyncItem(final_log(f"conv-{n}")) for n in range(3)])
    tickets = {t["external_id"]: t for t in fresh_emulators.zendesk.state()["tickets"]}
    assert [Synced(str(tickets[f"conv-{n}"]["id"]), 9) for n in range(3)] == outcomes
    for n in range(3):
        found = tickets[f"conv-{n}"]
        [comment] = [c for c in found["comments"] if "[interaction " in c["body"]]
        assert (comment["public"], comment["body"].splitlines()[-1]) == (False, marker(f"conv-{n}", 9))
        assert {360002: 1, 360003: 3.5, 360004: "gold"} == custom_values(found)
    # No sync state means unknown: one search by external_id for all three first.
    assert ["search", "create_many", "job_status"] == request_kinds(fresh_emulators)


def test_linked_and_new_tickets_go_out_as_two_jobs_polled_with_one_request(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    ticket_ids = seed_tickets(fresh_emulators, 2)
    target = make_target()
    batch = [SyncItem(final_log(f"conv-linked-{n}", related_to=on_ticket(t))) for n, t in enumerate(ticket_ids)]
    batch += [SyncItem(final_log(f"conv-new-{n}")) for n in range(2)]
    outcomes = target.sync(batch)
    assert all(isinstance(outcome, Synced) for outcome in outcomes), outcomes
    state = fresh_emulators.zendesk.state()["tickets"]
    commented = sorted(body.splitlines()[-1] for t in state for body in worker_comments(t))
    assert sorted(marker(item.snapshot.interaction_id, 9) for item in batch) == commented
    assert ["search", "comments", "comments", "update_many", "create_many", "job_statuses"] == request_kinds(
        fresh_emulators)


def test_a_single_new_ticket_is_one_create_with_an_idempotency_key_and_no_poll(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [outcome] = make_target().sync([SyncItem(final_log())])
    [found] = fresh_emulators.zendesk.state()["tickets"]
    assert Synced(str(found["id"]), 9) == outcome
    assert ["search", "create"] == request_kinds(fresh_emulators)


@pytest.mark.parametrize("fault", ["drop_after_apply", "timeout"])
def test_a_create_many_whose_answer_was_lost_creates_no_second_ticket(
    make_target: TargetFactory, fresh_emulators: Emulators, fault: str
) -> None:
    target = make_target()
    fresh_emulators.zendesk.inject(fault, method="POST", path="create_many", delay_s=4.0)
    batch = [SyncItem(final_log(f"conv-{n}")) for n in range(3)]
    lost = target.sync(batch)
    assert all(isinstance(o, Retry) and o.uncertain for o in lost), lost
    # The sync loop waits for a lost job to settle before the next attempt; the test waits for it here.
    assert wait_for(lambda: len(fresh_emulators.zendesk.state()["tickets"]) == 3, 15)
    retried = target.sync(after(batch, lost))
    tickets = {t["external_id"]: t for t in fresh_emulators.zendesk.state()["tickets"]}
    assert [Synced(str(tickets[f"conv-{n}"]["id"]), 9) for n in range(3)] == retried
    assert {f"conv-{n}": 1 for n in range(3)} == {k: len(worker_comments(t)) for k, t in tickets.items()}
    # A search, one create_many (the lost one; the timeout fault logs it only when its delay is
    # over), then a direct look-up by external_id and a marker check per ticket.
    answered = [r for r in fresh_emulators.zendesk.requests() if r["fault"] is None]
    assert ([], 7) == ([r for r in answered if r["method"] == "POST"], len(answered))
    assert 3 == sum(1 for r in answered if "external_id=" in str(r["path"]))


def test_a_429_on_create_many_writes_nothing_and_the_retry_creates_each_ticket_once(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    target = make_target()
    fresh_emulators.zendesk.inject("429", retry_after=7, method="POST", path="create_many")
    batch = [SyncItem(final_log(f"conv-{n}")) for n in range(3)]
    refused = target.sync(batch)
    assert [Retry(7.0, "HTTP 429")] * 3 == refused
    assert [] == fresh_emulators.zendesk.state()["tickets"]
    retried = target.sync(after(batch, refused))
    assert all(isinstance(o, Synced) for o in retried)
    assert ["conv-0", "conv-1", "conv-2"] == sorted(
        t["external_id"] for t in fresh_emulators.zendesk.state()["tickets"])


def test_a_job_that_does_not_finish_in_time_leaves_its_tickets_uncertain(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    fresh_emulators.zendesk.seed({"config": {"job_queue_s": 3600}})
    ticket_ids = seed_tickets(fresh_emulators, 3)
    target = make_target(zendesk_job_timeout_seconds=1.0)
    batch = [SyncItem(final_log(f"conv-{n}", related_to=on_ticket(t))) for n, t in enumerate(ticket_ids)]
    outcomes = target.sync(batch)
    assert [(True, str(t)) for t in ticket_ids] == [(o.uncertain, o.remote_id) for o in outcomes
                                                    if isinstance(o, Retry)]


def test_two_writes_of_one_kind_go_out_directly_rather_than_as_a_job_and_its_poll(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    outcomes = make_target().sync([SyncItem(final_log(f"conv-{n}")) for n in range(2)])
    assert all(isinstance(outcome, Synced) for outcome in outcomes)
    assert ["search", "create", "create"] == request_kinds(fresh_emulators)


def test_without_a_sync_state_found_tickets_and_posted_markers_are_not_written_again(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """The state of a first sync is lost: the second finds the created tickets by external_id (one
    search) and the markers on the linked ones (their comments), and writes nothing."""
    ticket_ids = seed_tickets(fresh_emulators, 2)
    batch = [SyncItem(final_log(f"conv-linked-{n}", related_to=on_ticket(t))) for n, t in enumerate(ticket_ids)]
    batch += [SyncItem(final_log(f"conv-new-{n}")) for n in range(3)]
    first = make_target().sync(batch)
    assert all(isinstance(outcome, Synced) for outcome in first)
    before = len(fresh_emulators.zendesk.requests())
    again = make_target().sync(batch)  # the same items, with no state
    assert first == again
    kinds = request_kinds(fresh_emulators)[before:]
    assert ["search"] + ["comments"] * 5 == kinds  # 2 linked + 3 found tickets, nothing written
    tickets = fresh_emulators.zendesk.state()["tickets"]
    assert sorted(marker(item.snapshot.interaction_id, 9) for item in batch) == sorted(
        body.splitlines()[-1] for t in tickets for body in worker_comments(t))
    assert 5 == len(tickets)  # the two seeded ones and the three created, none twice


def test_a_newer_version_is_posted_once_an_older_or_equal_one_never(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    on = on_ticket(ticket_id)
    make_target().sync([SyncItem(final_log("conv-v", version=9, related_to=on))])
    outcomes = make_target().sync([SyncItem(final_log("conv-v", version=8, related_to=on))])  # older, no state
    newer = make_target().sync([SyncItem(final_log("conv-v", version=10, related_to=on))])
    assert [Synced(str(ticket_id), 8), Synced(str(ticket_id), 10)] == outcomes + newer
    endings = [body.splitlines()[-1] for body in worker_comments(ticket(fresh_emulators, ticket_id))]
    assert [marker("conv-v", 9), marker("conv-v", 10)] == endings


def seed_closed_ticket(emulators: Emulators, requester_id: int = 20_777_001) -> int:
    emulators.zendesk.seed({"tickets": [{"subject": "Broken printer", "description": "It overheats.",
                                         "status": "closed", "requester_id": requester_id}]})
    return max(int(t["id"]) for t in emulators.zendesk.state()["tickets"])


def follow_ups_of(emulators: Emulators, closed_id: int) -> list[dict[str, Any]]:
    return [t for t in emulators.zendesk.state()["tickets"]
            if t["via"]["source"]["rel"] == "follow_up" and t["via"]["source"]["from"].get("ticket_id") == closed_id]


def test_a_closed_linked_ticket_gets_the_log_on_one_follow_up_for_its_requester(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """Zendesk refuses any update of a closed ticket: the log goes to a follow-up of it, once."""
    closed_id = seed_closed_ticket(fresh_emulators)
    item = SyncItem(final_log(related_to=on_ticket(closed_id)))
    [outcome] = make_target(zendesk_attribute_fields=ATTRIBUTES).sync([item])
    [follow_up] = follow_ups_of(fresh_emulators, closed_id)
    assert Synced(str(follow_up["id"]), 9) == outcome
    assert (follow_up["external_id"], follow_up["requester_id"]) == ("conv-42", 20_777_001)
    [comment] = worker_comments(ticket(fresh_emulators, follow_up["id"]))
    assert comment.startswith("Refund approved.\n\n") and comment.endswith("\n" + marker("conv-42", 9))
    assert custom_values(ticket(fresh_emulators, follow_up["id"])) == {360002: 1, 360003: 3.5, 360004: "gold"}
    closed = ticket(fresh_emulators, closed_id)
    assert ([], [follow_up["id"]]) == (worker_comments(closed), closed["followup_ids"])

    # the same final log again, its sync state lost (a replay, a Redis that restarted empty): found, not made again
    [again] = make_target().sync([item])
    assert Synced(str(follow_up["id"]), 9) == again
    assert [follow_up["id"]] == [t["id"] for t in follow_ups_of(fresh_emulators, closed_id)]
    assert 1 == len(worker_comments(ticket(fresh_emulators, follow_up["id"])))


def test_closed_tickets_in_an_update_many_job_get_follow_ups_and_the_open_ones_their_comment(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    open_ids = seed_tickets(fresh_emulators, 2)
    closed_ids = [seed_closed_ticket(fresh_emulators, requester_id=20_777_000 + n) for n in range(2)]
    batch = [SyncItem(final_log(f"conv-{t}", related_to=on_ticket(t))) for t in [*open_ids, *closed_ids]]
    outcomes = make_target().sync(batch)
    follow_ups = [follow_ups_of(fresh_emulators, closed_id) for closed_id in closed_ids]
    assert [1, 1] == [len(found) for found in follow_ups]
    expected = [*(str(t) for t in open_ids), *(str(found[0]["id"]) for found in follow_ups)]
    assert [Synced(remote_id, 9) for remote_id in expected] == outcomes
    for item, remote_id in zip(batch, expected, strict=True):
        [comment] = worker_comments(ticket(fresh_emulators, int(remote_id)))
        assert comment.endswith(marker(item.snapshot.interaction_id, 9))
    assert [20_777_000, 20_777_001] == [found[0]["requester_id"] for found in follow_ups]
    assert "update_many" in request_kinds(fresh_emulators)


def test_a_follow_up_whose_create_answer_was_lost_is_not_made_twice(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    closed_id = seed_closed_ticket(fresh_emulators)
    target = make_target()
    fresh_emulators.zendesk.inject("timeout", method="POST", path="/tickets.json", delay_s=4.0)
    item = SyncItem(final_log(related_to=on_ticket(closed_id)))
    [lost] = target.sync([item])
    assert isinstance(lost, Retry) and lost.uncertain
    [retried] = target.sync([SyncItem(item.snapshot, next_target_state(item.target_state, lost))])
    [follow_up] = follow_ups_of(fresh_emulators, closed_id)
    assert Synced(str(follow_up["id"]), 9) == retried
    assert 1 == len(worker_comments(ticket(fresh_emulators, follow_up["id"])))


def test_field_mode_writes_the_log_into_the_field_of_the_follow_up(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    closed_id = seed_closed_ticket(fresh_emulators)
    [outcome] = make_target(zendesk_mode="field", zendesk_log_field_id=360001).sync(
        [SyncItem(final_log(related_to=on_ticket(closed_id)))])
    [follow_up] = follow_ups_of(fresh_emulators, closed_id)
    assert Synced(str(follow_up["id"]), 9) == outcome
    log_text = custom_values(ticket(fresh_emulators, follow_up["id"]))[360001]
    assert "Refund approved." in log_text and log_text.endswith(marker("conv-42", 9))



def delete_tickets(emulators: Emulators, ticket_ids: list[int]) -> None:
    """Deleted in Zendesk (by an agent, say) after the interaction linked them."""
    target = build_zendesk(settings_for(emulators))
    try:
        for ticket_id in ticket_ids:
            target._client.tickets.delete(Ticket(id=ticket_id))
    finally:
        target.close()


def test_a_deleted_linked_ticket_gets_the_log_on_a_ticket_of_its_own_once(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    """Deleted since the agent linked it: no ticket to write to, as when none is linked (not a dead letter)."""
    ticket_ids = seed_tickets(fresh_emulators, 3)
    deleted = ticket_ids[:2]
    delete_tickets(fresh_emulators, deleted)
    target = make_target()
    # one without a sync state (its comments are read first: 404), two whose state says synced before (updated
    # in one job: a per-ticket RecordNotFound), one linked to a ticket that is still there
    batch = [SyncItem(final_log("conv-read", related_to=on_ticket(deleted[0])))]
    batch += [SyncItem(final_log(f"conv-job-{n}", related_to=on_ticket(t)), TargetState(remote_id=str(t)))
              for n, t in enumerate(deleted)]
    batch += [SyncItem(final_log("conv-kept", related_to=on_ticket(ticket_ids[2])), TargetState())]
    outcomes = target.sync(batch)
    made = {t["external_id"]: t for t in fresh_emulators.zendesk.state()["tickets"] if t["external_id"]}
    assert sorted(made) == ["conv-job-0", "conv-job-1", "conv-read"]
    assert [Synced(str(made[i.snapshot.interaction_id]["id"]), 9) for i in batch[:3]] == outcomes[:3]
    assert Synced(str(ticket_ids[2]), 9) == outcomes[3]
    for interaction_id, found in made.items():
        assert [marker(interaction_id, 9)] == [body.splitlines()[-1] for body in worker_comments(found)]
    again = make_target().sync([SyncItem(item.snapshot) for item in batch])  # replayed, no sync state
    assert outcomes == again
    assert 4 == len(fresh_emulators.zendesk.state()["tickets"])  # nothing made twice


def test_a_deleted_linked_ticket_is_skipped_when_missing_tickets_are(
    make_target: TargetFactory, fresh_emulators: Emulators
) -> None:
    [ticket_id] = seed_tickets(fresh_emulators, 1)
    delete_tickets(fresh_emulators, [ticket_id])
    [outcome] = make_target(zendesk_missing_ticket="skip").sync([SyncItem(final_log(related_to=on_ticket(ticket_id)))])
    assert Skipped("linked ticket deleted") == outcome
    assert [] == fresh_emulators.zendesk.state()["tickets"]
