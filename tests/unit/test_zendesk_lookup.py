"""Zendesk look-up planning and the marker comparison (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.base import SyncItem, TargetState
from adapters.zendesk_lookup import (
    ExternalIdLookups,
    already_posted,
    estimated_lookup_requests,
    needs_marker_check,
    plan_external_ids,
    posted_versions,
    search_chunks,
)
from adapters.zendesk_render import marker, render_comment
from schemas.snapshot import LogSnapshot


def item(interaction_id: str, *, linked: int | None = None, final: bool = True,
         state: TargetState | None = None) -> SyncItem:
    values: dict[str, Any] = {"interaction_id": interaction_id, "version": 7, "finalized": final,
                              "trigger": "finalized" if final else "updated"}
    if linked is not None:
        values["related_to"] = {"system": "zendesk", "type": "ticket", "id": str(linked)}
    return SyncItem(LogSnapshot.model_validate(values), state or TargetState())


def test_items_without_a_known_ticket_are_looked_up_by_external_id_searched_unless_uncertain() -> None:
    items = [
        item("new"),  # no state: unknown → search
        item("lost", state=TargetState(synced_version=3)),  # synced once, ticket id lost → search
        item("in-flight", state=TargetState(uncertain=True)),  # just written, maybe not indexed → direct
        item("linked", linked=500),  # the ticket is known
        item("stored", state=TargetState("501", 7)),  # the ticket is known
        item("open", final=False),  # not for Zendesk yet
        item("new"),  # once
        item('has "quotes"'),  # cannot be one quoted search term → direct
    ]
    assert ExternalIdLookups(searched=["new", "lost"], direct=["in-flight", 'has "quotes"']) == plan_external_ids(items)


def test_an_item_known_absent_is_neither_searched_nor_read_for_markers() -> None:
    new = item("new")
    known_new = SyncItem(new.snapshot, state_known_absent=True)
    on_ticket = SyncItem(item("on-ticket", linked=500).snapshot, state_known_absent=True)
    assert ExternalIdLookups(searched=[], direct=[]) == plan_external_ids([known_new, on_ticket])
    assert (0, 2) == (estimated_lookup_requests([known_new, on_ticket]),
                      estimated_lookup_requests([new, item("on-ticket", linked=500)]))


def test_searches_take_100_ids_and_a_bounded_query() -> None:
    ids = [f"conv-{n}" for n in range(250)]
    assert [100, 100, 50] == [len(chunk) for chunk in search_chunks(ids)]
    long_ids = ["x" * 255 for _ in range(40)]
    assert [14, 14, 12] == [len(chunk) for chunk in search_chunks(long_ids, max_chars=4_000)]
    assert [] == search_chunks([])


@pytest.mark.parametrize(
    ("state", "known_absent", "checked"),
    [
        (TargetState(), False, True),  # unknown
        (TargetState(), True, False),  # provably never synced: nothing can be on the ticket
        (TargetState(uncertain=True), False, True),
        (TargetState(uncertain=True), True, True),  # a stored mark is no absence
        (TargetState("500", 0, uncertain=True), False, True),
        (TargetState("500", 3), False, True),  # an earlier version is on the ticket: this one may be too
        (TargetState("500", 0), False, False),  # stored ticket, nothing synced, nothing in flight
    ],
)
def test_which_states_need_the_marker_check(state: TargetState, known_absent: bool, checked: bool) -> None:
    log = LogSnapshot.model_validate({"interaction_id": "conv-42", "version": 7, "trigger": "finalized"})
    assert checked is needs_marker_check(SyncItem(log, state, state_known_absent=known_absent))


def test_posted_versions_reads_the_markers_of_the_worker_comments_only() -> None:
    log = LogSnapshot.model_validate({"interaction_id": "conv-42", "version": 7, "trigger": "finalized"})
    bodies = [
        render_comment(log),
        f"Agent note quoting {marker('conv-9', 99)} inside a sentence",  # not a marker line
        f"older\n\n{marker('conv-42', 5)}",
        f"{marker('conv-43', 2)}\n",
        "[interaction conv-44 · log vX]",  # malformed
        "",
    ]
    assert {"conv-42": 7, "conv-43": 2} == posted_versions(bodies)


@pytest.mark.parametrize(
    ("posted", "version", "expected"),
    [
        ({"conv-42": 7}, 7, True),  # this version is there
        ({"conv-42": 9}, 7, True),  # a newer one is there: never post an older log after it
        ({"conv-42": 6}, 7, False),  # an older one: post this one
        ({"conv-43": 7}, 7, False),  # another interaction's log
        ({}, 1, False),
    ],
)
def test_a_log_is_posted_again_only_when_no_marker_names_this_or_a_newer_version(
    posted: dict[str, int], version: int, expected: bool
) -> None:
    assert expected is already_posted(posted, "conv-42", version)


def test_an_interaction_id_with_spaces_and_brackets_round_trips_through_its_marker() -> None:
    odd = "conv [a] · b"
    assert {odd: 3} == posted_versions([marker(odd, 3)])
