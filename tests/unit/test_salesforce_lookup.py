"""Salesforce look-up planning (pure): which items are looked up, how ids are chunked, what is chosen."""

from __future__ import annotations

import pytest

from adapters.base import SyncItem, TargetState
from adapters.salesforce_lookup import (
    LOOKUP_IDS_PER_QUERY,
    FoundTask,
    chunk_ids,
    estimated_requests,
    ids_to_look_up,
    lookup_soql,
    tasks_by_call_object,
)
from schemas.snapshot import LogSnapshot


def item(interaction_id: str, state: TargetState | None = None) -> SyncItem:
    snapshot = LogSnapshot.model_validate({"interaction_id": interaction_id, "version": 2, "trigger": "created"})
    return SyncItem(snapshot, state or TargetState())


@pytest.mark.parametrize(
    ("state", "looked_up"),
    [
        (TargetState(), True),  # never seen, lost, expired or a replay: unknown
        (TargetState(synced_version=4), True),  # synced once, its Task Id lost
        (TargetState(uncertain=True), True),  # a create whose answer was lost
        (TargetState("00T1", 3), False),  # the Task Id is known: update it
        (TargetState("00T1", 3, uncertain=True), False),  # known Id, uncertain update: still that Task
    ],
)
def test_an_item_is_looked_up_unless_its_task_id_is_known(state: TargetState, looked_up: bool) -> None:
    assert (["conv-1"] if looked_up else []) == ids_to_look_up([item("conv-1", state)], [0])


def test_a_state_known_absent_is_created_without_a_look_up_and_counted_as_a_create() -> None:
    snapshot = LogSnapshot.model_validate({"interaction_id": "new", "version": 2, "trigger": "created"})
    items = [SyncItem(snapshot, state_known_absent=True), item("unknown"),
             SyncItem(snapshot.model_copy(update={"interaction_id": "marked"}), TargetState(uncertain=True),
                      state_known_absent=True)]  # a stored mark is no absence
    assert (["unknown", "marked"], 2) == (ids_to_look_up(items, [0, 1, 2]), estimated_requests(items))


def test_only_due_items_are_looked_up_each_id_once_in_batch_order() -> None:
    items = [item("b"), item("a"), item("skipped"), item("b"), item("known", TargetState("00T9", 1))]
    assert ["b", "a"] == ids_to_look_up(items, [0, 1, 3, 4])


def test_ids_are_chunked_by_200_a_query() -> None:
    ids = [f"conv-{n}" for n in range(401)]
    chunks = chunk_ids(ids)
    assert [200, 200, 1] == [len(chunk) for chunk in chunks]
    assert ids == [interaction_id for chunk in chunks for interaction_id in chunk]
    assert LOOKUP_IDS_PER_QUERY == 200


def test_long_ids_are_chunked_by_the_length_of_the_list() -> None:
    ids = ["x" * 255 for _ in range(100)]
    chunks = chunk_ids(ids, max_chars=8_000)
    assert [30, 30, 30, 10] == [len(chunk) for chunk in chunks]  # 259 characters an id with quotes and ", "
    assert [["y" * 9_000]] == chunk_ids(["y" * 9_000], max_chars=8_000)  # alone, it still gets its query


def test_no_ids_no_query() -> None:
    assert [] == chunk_ids([])


def test_the_look_up_query_quotes_every_id() -> None:
    assert ("SELECT Id, CallObject, IsClosed FROM Task WHERE CallObject IN ('conv-1', 'it\\'s', 'back\\\\slash')"
            == lookup_soql(["conv-1", "it's", "back\\slash"]))


def test_found_tasks_map_to_their_interaction_and_duplicates_are_reported() -> None:
    records: list[dict[str, object]] = [
        {"attributes": {"type": "Task"}, "Id": "00T3", "CallObject": "conv-1", "IsClosed": False},
        {"attributes": {"type": "Task"}, "Id": "00T2", "CallObject": "conv-1", "IsClosed": True},
        {"attributes": {"type": "Task"}, "Id": "00T5", "CallObject": "conv-2", "IsClosed": False},
        {"attributes": {"type": "Task"}, "Id": "00T6", "CallObject": None, "IsClosed": False},
    ]
    expected = {"conv-1": FoundTask("00T2", closed=True), "conv-2": FoundTask("00T5", closed=False)}
    assert (expected, {"conv-1": 2}) == tasks_by_call_object(records)


def test_the_estimate_counts_look_ups_updates_and_creates() -> None:
    unknown = [item(f"c{n}") for n in range(250)]
    known = [item(f"k{n}", TargetState(f"00T{n}", 1)) for n in range(10)]
    assert 2 + 1 + 2 == estimated_requests(unknown + known)
    assert 1 == estimated_requests(known)
    assert 0 == estimated_requests([])
