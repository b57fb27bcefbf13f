"""A linked ticket that is closed: the log goes to a follow-up ticket instead; one that was deleted: to a ticket
of its own, as when no ticket is linked.

Zendesk refuses every change to a closed ticket (422 RecordInvalid, "Status: closed prevents ticket update",
also as a per-ticket result of an `update_many` job); a closed ticket cannot be reopened. What it offers
instead is a follow-up: a new ticket created with `via_followup_source_id` = the closed ticket, which the
agent sees linked to it ("Creating a follow-up ticket" in Zendesk's API documentation). The Zendesk target
writes the log there, as it writes a ticket it creates for an interaction without one: `external_id` =
interaction id, the log in the first comment (or the field), the mapped fields, the marker line. The
requester is the closed ticket's.

A ticket that is gone (deleted: 404 RecordNotFound on its update or on the read of its comments) is treated as no
ticket at all: with `ILOG_ZENDESK_MISSING_TICKET=create` (the default) the log gets a ticket of its own, as an
interaction without a linked ticket does; with `skip` it is skipped, with a warning, instead of dead-lettered.

Idempotent as every create of the target: before creating, the follow-up is looked for by `external_id`
(`GET tickets.json?external_id=`, which does not wait for the search index), and in comment mode its
comments are read for the marker, so a retry, a crash after the create or a replay finds the follow-up made
before and writes nothing twice. These reads (one per interaction, the closed tickets in one `show_many`, the
follow-up's comments) come on top of the requests the batch was granted from the API budget: the budget is
taken before a call, and which linked tickets are closed is known only from Zendesk's answer.
"""

from __future__ import annotations

from adapters.base import Failed, SyncOutcome

CLOSED_REFUSAL = "closed prevents ticket update"
"""The words of Zendesk's refusal (`details.status[].description`: "Status: closed prevents ticket update")."""


def refused_as_closed(outcome: SyncOutcome | None) -> bool:
    """The write failed for good because its ticket is closed (a direct `PUT` or an `update_many` result)."""
    return isinstance(outcome, Failed) and CLOSED_REFUSAL in outcome.message.lower()


def ticket_gone(outcome: SyncOutcome | None) -> bool:
    """The ticket written to (or read for the marker) does not exist: deleted since it was linked or made."""
    return isinstance(outcome, Failed) and outcome.code == "RecordNotFound"
