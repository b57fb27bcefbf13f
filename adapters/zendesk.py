"""Zendesk target: the final log on the linked ticket, as a private comment or in a custom field.

The ticket is Related to (a Zendesk ticket), else the one stored for the interaction, else
(setting `zendesk_missing_ticket=create`) a new ticket for the requester with `external_id` =
interaction id, created already carrying the log; its requester is the Zendesk user in Name, else a
user made (or matched) from the customer's name and address. A missing sync state means "unknown", never
"not created" (`adapters.zendesk_lookup`): an item without a known ticket is looked up by
`external_id` first (batched search), and in comment mode the comments of every ticket that may
carry the log already are read once per batch; a comment whose marker names this interaction with
this version or a newer one means the log is there, and it is not posted again.
Writes go out batched (`adapters.zendesk_writes`): `update_many` and `create_many` jobs.
A 401, or a 403/404 that a read of the ticket fields repeats, is target-level: the target pauses
(`TargetUnavailableError`); the token file, when set, is read again before every batch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
import structlog
from zenpy import Zenpy
from zenpy.lib.exception import APIException, ZenpyException

from adapters.base import (
    BudgetLimits,
    PermanentSyncError,
    Retry,
    Skipped,
    Synced,
    SyncError,
    SyncItem,
    SyncOutcome,
    TargetTraits,
    TargetUnavailableError,
    outcome_for_error,
)
from adapters.http_session import RecordingSession
from adapters.zendesk_errors import translate_zenpy_error, zenpy_location
from adapters.zendesk_followup import refused_as_closed, ticket_gone
from adapters.zendesk_jobs import JobPacing, JobWatch
from adapters.zendesk_lookup import (
    already_posted,
    estimated_lookup_requests,
    needs_marker_check,
    plan_external_ids,
    posted_versions,
    search_chunks,
)
from adapters.zendesk_render import (
    TicketField,
    linked_ticket_id,
    parse_ticket_fields,
)
from adapters.zendesk_tickets import TicketPayloads
from adapters.zendesk_writes import MAX_JOB_TICKETS, TicketWriter, Write, estimated_requests
from schemas.snapshot import LogSnapshot

log = structlog.get_logger(__name__)

_Posted = dict[int, dict[str, int] | PermanentSyncError]


@dataclass(frozen=True)
class ZendeskOptions:
    mode: Literal["comment", "field"] = "comment"
    log_field_id: int | None = None
    attribute_fields: dict[str, int] | None = None
    missing_ticket: Literal["create", "skip"] = "create"
    job_poll_s: float = 0.5  # the shortest wait between two polls of a job
    job_timeout_s: float = 60.0
    job_seconds_per_item: float = 0.05  # first guess of a job's pace; learnt from the jobs seen
    linger_s: float = 0.0  # hold due final logs up to this long to fill a job
    budget: BudgetLimits | None = None


class ZendeskTarget:
    name = "zendesk"

    def __init__(
        self, *, url: str, email: str, token: str, session: RecordingSession, options: ZendeskOptions,
        token_file: str | None = None,
    ) -> None:
        subdomain, domain, forced_netloc = zenpy_location(url)
        if forced_netloc is not None:
            # zenpy reads its only host override from the environment at request time.
            os.environ["ZENPY_FORCE_NETLOC"] = forced_netloc
            os.environ["ZENPY_FORCE_SCHEME"] = urlsplit(url).scheme
        self._session = session
        self._options = options
        # A job applies in the background and can outlive a lost answer or a crash: settle that long.
        self.traits = TargetTraits(budget=options.budget, linger_s=options.linger_s,
                                   linger_items=MAX_JOB_TICKETS, settle_s=options.job_timeout_s)
        self._url = url.rstrip("/")
        self._email = email
        self._token_file = token_file
        self._client = Zenpy(
            subdomain=subdomain,
            domain=domain,
            email=email,
            token=token,
            session=session,
            timeout=session.timeout_s,  # zenpy passes its own timeout on every call
            disable_cache=True,
        )
        self._ticket_fields: dict[int, TicketField] | None = None
        field_mode = options.mode == "field" and options.log_field_id is not None
        self._payloads = TicketPayloads(log_field_id=options.log_field_id if field_mode else None,
                                        attribute_fields=dict(options.attribute_fields or {}),
                                        field_specs=self._ticket_field_specs)
        pacing = JobPacing(min_poll_s=options.job_poll_s, seconds_per_item=options.job_seconds_per_item)
        self._writer = TicketWriter(self._client, session, self._call,
                                    JobWatch(self._client, self._call, pacing, options.job_timeout_s))

    def wants(self, snapshot: LogSnapshot) -> bool:
        return snapshot.finalized

    def estimate_requests(self, items: Sequence[SyncItem]) -> int:
        """Look-ups (searches, comment reads), then writes as the writer groups them into jobs."""
        return estimated_requests(items) + estimated_lookup_requests(items, self._options.mode == "comment")

    def close(self) -> None:
        self._session.close()

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        try:
            self._reload_token()
        except TargetUnavailableError as exc:
            return [outcome_for_error(exc) for _ in batch]
        outcomes: list[SyncOutcome | None] = [None] * len(batch)
        try:
            found = self._find_tickets(batch)
            posted = self._posted_on(self._tickets_to_check(batch, found))
        except SyncError as exc:
            return [outcome_for_error(exc) if self.wants(item.snapshot) else Skipped("not finalized")
                    for item in batch]
        writes: list[Write] = []
        for index, item in enumerate(batch):
            try:
                prepared = self._prepare(index, item, found, posted)
            except PermanentSyncError as exc:
                outcomes[index] = outcome_for_error(exc)
                continue
            except SyncError as exc:
                self._stop(outcomes, index, exc)
                break
            if isinstance(prepared, Write):
                writes.append(prepared)
            else:
                outcomes[index] = prepared
        for index, outcome in self._writer.write(writes).items():
            outcomes[index] = outcome
        closed = {write.index: int(write.ticket.id) for write in writes
                  if not write.create and refused_as_closed(outcomes[write.index])}
        gone = [index for index, outcome in enumerate(outcomes) if ticket_gone(outcome)]
        for index, outcome in self._elsewhere(batch, closed, gone).items() if closed or gone else ():
            outcomes[index] = outcome
        return [outcome or Retry(None, "not attempted") for outcome in outcomes]

    @staticmethod
    def _stop(outcomes: list[SyncOutcome | None], index: int, exc: SyncError) -> None:
        """A transient error stops the batch: the items after it were not tried."""
        outcomes[index] = outcome_for_error(exc)
        for later in range(index + 1, len(outcomes)):
            outcomes[later] = Retry(getattr(exc, "retry_after_s", None), f"not sent: {exc}")

    def _prepare(self, index: int, item: SyncItem, found: dict[str, int], posted: _Posted) -> SyncOutcome | Write:
        """The outcome when nothing (more) is to be written, else the write to send."""
        snapshot = item.snapshot
        if not self.wants(snapshot):
            return Skipped("not finalized")
        ticket_id = self._ticket_of(item, found)
        if ticket_id is None:
            if self._options.missing_ticket == "skip":
                return Skipped("no linked ticket")
            return self._payloads.new_ticket(index, snapshot)
        on_ticket = posted.get(ticket_id)
        if isinstance(on_ticket, PermanentSyncError):
            raise on_ticket
        if on_ticket is not None and already_posted(on_ticket, snapshot.interaction_id, snapshot.version):
            return Synced(remote_id=str(ticket_id), version=snapshot.version)
        return Write(index, self._payloads.update(ticket_id, snapshot), snapshot.version, create=False)

    def _elsewhere(self, batch: Sequence[SyncItem], closed: dict[int, int], gone: list[int]) -> dict[int, SyncOutcome]:
        """The logs whose ticket refused them (`adapters.zendesk_followup`): `closed` (index → the closed ticket)
        on a follow-up of it, `gone` (a deleted ticket) on a ticket of their own as when none is linked; the ticket
        made for them before when there is one."""
        outcomes: dict[int, SyncOutcome] = {}
        if gone and self._options.missing_ticket == "skip":
            log.warning("zendesk.ticket_deleted", interaction_ids=[batch[i].snapshot.interaction_id for i in gone][:10],
                        count=len(gone), missing_ticket="skip")
            outcomes.update(dict.fromkeys(gone, Skipped("linked ticket deleted")))
            gone = []
        indexes = [*closed, *gone]
        try:
            made = self._open_tickets_by_external_id([batch[index].snapshot.interaction_id for index in indexes])
            posted = self._posted_on(sorted(set(made.values()))) if self._options.mode == "comment" else {}
            closed_ids = sorted(set(closed.values()))
            closed_tickets = self._call(lambda: list(self._client.tickets(ids=closed_ids))) if closed_ids else []
            sources = {int(ticket.id): ticket for ticket in closed_tickets}
        except SyncError as exc:
            outcomes.update({index: outcome_for_error(exc) for index in indexes})
            return outcomes
        writes: list[Write] = []
        for index in indexes:
            snapshot = batch[index].snapshot
            made_before = made.get(snapshot.interaction_id)
            if made_before is None:
                closed_id = closed.get(index)
                requester_id = getattr(sources.get(closed_id or 0), "requester_id", None)  # the closed ticket's
                writes.append(self._payloads.new_ticket(index, snapshot, follow_up_of=closed_id,
                                               requester_id=None if requester_id is None else int(requester_id)))
                continue
            on_ticket = posted.get(made_before)
            if isinstance(on_ticket, PermanentSyncError):
                outcomes[index] = outcome_for_error(on_ticket)
            elif on_ticket is not None and already_posted(on_ticket, snapshot.interaction_id, snapshot.version):
                outcomes[index] = Synced(remote_id=str(made_before), version=snapshot.version)
            else:
                update = self._payloads.update(made_before, snapshot)
                writes.append(Write(index, update, snapshot.version, create=False))
        if writes:
            log.info("zendesk.ticket_elsewhere", closed_tickets=closed_ids[:10], deleted_tickets=len(gone),
                     writes=len(writes))
        outcomes.update(self._writer.write(writes))
        return outcomes

    def _open_tickets_by_external_id(self, interaction_ids: Sequence[str]) -> dict[str, int]:
        """Interaction id → the oldest ticket not closed with it as `external_id` (read one by one, as the
        search index may not hold a ticket made moments ago)."""
        found: dict[str, int] = {}
        for interaction_id in dict.fromkeys(interaction_ids):
            tickets = self._call(lambda key=interaction_id: list(self._client.tickets(external_id=key)))
            ids = [int(ticket.id) for ticket in tickets if getattr(ticket, "external_id", None) == interaction_id
                   and getattr(ticket, "status", None) != "closed"]
            if ids:
                found[interaction_id] = min(ids)
        return found

    def _reload_token(self) -> None:
        """The token file is read before every batch: a rotated secret is picked up without a restart."""
        if self._token_file is None:
            return
        try:
            token = Path(self._token_file).read_text().strip()
        except OSError as exc:
            raise TargetUnavailableError("TOKEN_FILE", f"cannot read the API token file: {exc.strerror}") from exc
        self._session.auth = (f"{self._email}/token", token)

    def _call(self, operation: Any, *args: Any) -> Any:
        try:
            return operation(*args)
        except SyncError:
            raise
        except (APIException, ZenpyException, requests.RequestException) as exc:
            error = translate_zenpy_error(exc)
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status in (403, 404) and self._refused_everywhere():
                error = TargetUnavailableError(f"HTTP_{status}", str(error))
            raise error from exc

    def _refused_everywhere(self) -> bool:
        """A 403 or 404 that a plain read of the ticket fields repeats is about the account, the user
        or the subdomain (API access off, an unknown subdomain), not about a ticket."""
        try:
            probe = self._session.get(f"{self._url}/api/v2/ticket_fields.json")
        except requests.RequestException:
            return False
        return probe.status_code in (401, 403, 404)

    @staticmethod
    def _ticket_of(item: SyncItem, found: dict[str, int]) -> int | None:
        """Related to, else the stored ticket, else the one found by `external_id`."""
        linked = linked_ticket_id(item.snapshot)
        if linked is not None:
            return linked
        if item.target_state.remote_id is not None:
            return int(item.target_state.remote_id)
        return found.get(item.snapshot.interaction_id)

    def _find_tickets(self, batch: Sequence[SyncItem]) -> dict[str, int]:
        """Interaction id → its ticket, for the items without one known (`adapters.zendesk_lookup`)."""
        plan = plan_external_ids(batch)
        tickets: list[Any] = []
        for chunk in search_chunks(plan.searched):
            tickets += self._call(lambda ids=chunk: list(self._client.search(type="ticket", external_id=ids)))
        for interaction_id in plan.direct:
            tickets += self._call(lambda key=interaction_id: list(self._client.tickets(external_id=key)))
        wanted = set(plan.searched) | set(plan.direct)
        found: dict[str, int] = {}
        for ticket in tickets:
            external_id = getattr(ticket, "external_id", None)
            if external_id in wanted:
                if external_id in found:
                    log.warning("zendesk.duplicate_tickets", interaction_id=external_id)
                found[external_id] = min(int(ticket.id), found.get(external_id, int(ticket.id)))
        return found

    def _tickets_to_check(self, batch: Sequence[SyncItem], found: dict[str, int]) -> list[int]:
        """Tickets that may carry the log of one of the items already (comment mode only)."""
        if self._options.mode != "comment":
            return []
        tickets = {
            ticket_id
            for item in batch
            if self.wants(item.snapshot) and needs_marker_check(item)
            and (ticket_id := self._ticket_of(item, found)) is not None
        }
        return sorted(tickets)

    def _posted_on(self, ticket_ids: Sequence[int]) -> _Posted:
        """Per ticket: interaction id → the newest log version its comments carry a marker for
        (or the permanent error reading them, e.g. a deleted ticket, for its items alone)."""
        posted: _Posted = {}
        for ticket_id in ticket_ids:
            try:
                comments = self._call(lambda tid=ticket_id: list(self._client.tickets.comments(ticket=tid)))
            except PermanentSyncError as exc:
                posted[ticket_id] = exc
                continue
            posted[ticket_id] = posted_versions(str(getattr(comment, "body", "") or "") for comment in comments)
        return posted

    def _ticket_field_specs(self) -> dict[int, TicketField]:
        if self._ticket_fields is None:
            self._ticket_fields = parse_ticket_fields(self._call(lambda: list(self._client.ticket_fields())))
        return self._ticket_fields
