"""Which Tasks to look up before a create, and the SOQL that finds them, a batch at a time.

A missing sync state means "unknown", never "not created" (the state may be lost, expired, or
belong to another replay): every item without a stored Task Id is looked up by `CallObject`
before anything is created (unless the sync engine proved the state absent: `SyncItem.needs_lookup`),
with `SELECT Id, CallObject, IsClosed FROM Task WHERE CallObject IN
(...)`, at most `LOOKUP_IDS_PER_QUERY` ids and `LOOKUP_LIST_CHARS` characters of list a query (the query
travels in a GET URL, which Salesforce caps at 16,384 bytes). A Task found closed holds a final
log: a snapshot that is not final (a replay of older versions) does not reopen it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from adapters.base import SyncItem

LOOKUP_IDS_PER_QUERY = 200
LOOKUP_LIST_CHARS = 8_000  # before URL encoding; leaves room for encoding and the rest of the URL


def soql_quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def ids_to_look_up(items: Sequence[SyncItem], due: Iterable[int]) -> list[str]:
    """Interaction ids (each once, in batch order) of the due items with no Task Id known."""
    wanted: dict[str, None] = {}
    for index in due:
        item = items[index]
        if item.target_state.remote_id is None and item.needs_lookup:
            wanted[item.snapshot.interaction_id] = None
    return list(wanted)


def chunk_ids(
    interaction_ids: Sequence[str], max_ids: int = LOOKUP_IDS_PER_QUERY, max_chars: int = LOOKUP_LIST_CHARS
) -> list[list[str]]:
    """Consecutive chunks of ≤ `max_ids` ids whose quoted list fits `max_chars` (an id longer than
    that alone still gets a query of its own)."""
    chunks: list[list[str]] = []
    current: list[str] = []
    chars = 0
    for interaction_id in interaction_ids:
        size = len(soql_quote(interaction_id)) + 2  # ", "
        if current and (len(current) >= max_ids or chars + size > max_chars):
            chunks.append(current)
            current, chars = [], 0
        current.append(interaction_id)
        chars += size
    if current:
        chunks.append(current)
    return chunks


def lookup_soql(interaction_ids: Sequence[str]) -> str:
    quoted = ", ".join(soql_quote(interaction_id) for interaction_id in interaction_ids)
    return f"SELECT Id, CallObject, IsClosed FROM Task WHERE CallObject IN ({quoted})"


@dataclass(frozen=True)
class FoundTask:
    """A Task that already carries an interaction id; `closed` when it holds a final log."""

    task_id: str
    closed: bool


def tasks_by_call_object(records: Iterable[Mapping[str, Any]]) -> tuple[dict[str, FoundTask], dict[str, int]]:
    """CallObject → its Task (the smallest Id when several carry one), and how many carried each id
    more than once (duplicates made before look-ups existed; reported, never multiplied)."""
    found: dict[str, list[FoundTask]] = {}
    for record in records:
        call_object, task_id = record.get("CallObject"), record.get("Id")
        if call_object is not None and task_id is not None:
            task = FoundTask(str(task_id), bool(record.get("IsClosed")))
            found.setdefault(str(call_object), []).append(task)
    chosen = {call_object: min(tasks, key=lambda t: t.task_id) for call_object, tasks in found.items()}
    duplicates = {call_object: len(tasks) for call_object, tasks in found.items() if len(tasks) > 1}
    return chosen, duplicates


def estimated_requests(items: Sequence[SyncItem], collection_limit: int = 200) -> int:
    """Requests `SalesforceTarget.sync` makes for these items: the look-up queries, then sObject
    Collections updates (Task Id known) and creates, ≤ `collection_limit` records a request (a
    looked-up item is counted with the creates). Login and describe are not counted."""
    lookups = chunk_ids(ids_to_look_up(items, range(len(items))))
    known = sum(1 for item in items if item.target_state.remote_id is not None)
    return len(lookups) + -(-known // collection_limit) + -(-(len(items) - known) // collection_limit)
