"""What the Zendesk target asks before it writes, a batch at a time.

A missing sync state means "unknown", never "not created". So before a write:

- an item whose state the sync engine proved absent (`SyncItem.state_known_absent`: the store
  held everything ever written for it, `worker.sync.epoch`) is new: nothing is looked up or read;
- any other item with no linked and no stored ticket is looked up by `external_id` (= interaction id):
  items that were never marked in flight (no state at all: new, lost, expired, a replay) in one
  search per ≤ `SEARCH_IDS` ids (`type:ticket external_id:"a" external_id:"b" …`, repeated terms
  of one property are OR'ed), items marked uncertain (a write whose answer was lost moments ago,
  which search may not have indexed yet) with `GET tickets.json?external_id=` each;
- in comment mode, every ticket that may already carry this interaction's log (linked, found, or
  stored with an unknown or earlier outcome) has its comments read once per batch, and a comment
  whose marker names this interaction with this version or a newer one means "already posted".

Zendesk indexes a new ticket for search within minutes: a ticket created less than that before its
sync state was lost (and not marked uncertain) may not be found, and be created again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from adapters.base import SyncItem
from adapters.zendesk_render import linked_ticket_id

SEARCH_IDS = 100  # a search answers ≤ 100 results a page; one page per query in the usual case
SEARCH_QUERY_CHARS = 4_000  # the query travels in a GET URL
_MARKER_RE = re.compile(r"^\[interaction (?P<id>.+) · log v(?P<version>\d+)\]$")
_UNSEARCHABLE = re.compile(r'["\s\\]')  # cannot be written as one quoted search term


@dataclass(frozen=True)
class ExternalIdLookups:
    """Interaction ids to find by `external_id`: by search (batched) and one by one (consistent)."""

    searched: list[str]
    direct: list[str]


def needs_ticket_lookup(item: SyncItem) -> bool:
    return (linked_ticket_id(item.snapshot) is None and item.target_state.remote_id is None
            and item.needs_lookup)


def needs_marker_check(item: SyncItem) -> bool:
    """Unknown (no state, lost, uncertain) or an earlier version synced: the comment may be there.
    A state proved absent (never synced: `SyncItem.state_known_absent`) posts without reading."""
    return item.needs_lookup or item.target_state.synced_version > 0


def plan_external_ids(items: Iterable[SyncItem]) -> ExternalIdLookups:
    searched: dict[str, None] = {}
    direct: dict[str, None] = {}
    for item in items:
        if not (item.snapshot.finalized and needs_ticket_lookup(item)):
            continue
        interaction_id = item.snapshot.interaction_id
        uncertain = item.target_state.uncertain or _UNSEARCHABLE.search(interaction_id) is not None
        (direct if uncertain else searched)[interaction_id] = None
    return ExternalIdLookups(list(searched), list(direct))


def search_chunks(interaction_ids: Sequence[str], max_ids: int = SEARCH_IDS,
                  max_chars: int = SEARCH_QUERY_CHARS) -> list[list[str]]:
    """Consecutive chunks of ≤ `max_ids` ids whose `external_id:"…"` terms fit `max_chars`."""
    chunks: list[list[str]] = []
    current: list[str] = []
    chars = 0
    for interaction_id in interaction_ids:
        size = len(interaction_id) + len('external_id:"" ')
        if current and (len(current) >= max_ids or chars + size > max_chars):
            chunks.append(current)
            current, chars = [], 0
        current.append(interaction_id)
        chars += size
    if current:
        chunks.append(current)
    return chunks


def posted_versions(bodies: Iterable[str]) -> dict[str, int]:
    """Interaction id → the highest version any of these comments carries a marker for."""
    found: dict[str, int] = {}
    for body in bodies:
        for line in body.splitlines():
            match = _MARKER_RE.match(line.strip())
            if match:
                interaction_id, version = match.group("id"), int(match.group("version"))
                found[interaction_id] = max(version, found.get(interaction_id, 0))
    return found


def already_posted(posted: dict[str, int], interaction_id: str, version: int) -> bool:
    """This version, or a newer one, of this interaction's log is on the ticket already."""
    return posted.get(interaction_id, 0) >= version


def estimated_lookup_requests(items: Sequence[SyncItem], comment_mode: bool = True) -> int:
    """Searches, direct `external_id` reads and comment reads these items will cost (at most this
    many when nothing is found; a ticket found by `external_id` adds its comment read)."""
    plan = plan_external_ids(items)
    tickets: set[int] = set()
    for item in items:
        ticket = linked_ticket_id(item.snapshot)
        if ticket is None and item.target_state.remote_id is not None:
            ticket = int(item.target_state.remote_id)
        if comment_mode and ticket is not None and needs_marker_check(item):
            tickets.add(ticket)
    return len(search_chunks(plan.searched)) + len(plan.direct) + len(tickets)
