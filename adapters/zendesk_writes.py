"""Zendesk ticket writes of one sync batch in as few requests as the API allows.

Updates of linked tickets go out in `update_many` jobs, tickets for interactions without one in
`create_many` jobs (≤ 100 tickets a job, each created already carrying the private comment,
`external_id` = interaction id and the mapped fields); all running jobs are polled with one
request. A kind with a single ticket is written directly (a `PUT`, or a `POST` with an
`Idempotency-Key`), which answers at once and needs no poll.

Submitting a job that is answered 429/503 wrote nothing; one whose answer was lost, a job that
failed or did not finish in time, or a result missing from it leave the tickets uncertain, and
the next attempt looks for them by `external_id` (creates) or for the version marker (updates).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from zenpy import Zenpy
from zenpy.lib.api_objects import Ticket

from adapters.base import (
    RetryableSyncError,
    Synced,
    SyncError,
    SyncItem,
    SyncOutcome,
    TargetUnavailableError,
    outcome_for_error,
)
from adapters.http_session import RecordingSession
from adapters.zendesk_jobs import JobResults, JobWatch, job_failure
from adapters.zendesk_render import linked_ticket_id

MAX_JOB_TICKETS = 100  # create_many / update_many answer 400 TooManyValues above this


@dataclass(frozen=True)
class Write:
    """One ticket to send for the item at `index` of the batch."""

    index: int
    ticket: Ticket
    version: int
    create: bool
    idempotency_key: str = ""


@dataclass
class _Unit:
    """One request's worth of writes: a single call, or a job."""

    writes: list[Write]
    create: bool
    job: Any = None

    @property
    def is_job(self) -> bool:
        return len(self.writes) > 1


def plan_units(writes: Sequence[Write]) -> tuple[list[_Unit], list[Write]]:
    """Jobs and single calls for the writes, and the repeats (a ticket updated twice) for later."""
    seen_ids: set[int] = set()
    updates: list[Write] = []
    repeats: list[Write] = []
    for write in writes:
        if write.create:
            continue
        target = repeats if int(write.ticket.id) in seen_ids else updates
        seen_ids.add(int(write.ticket.id))
        target.append(write)
    creates = [write for write in writes if write.create]
    groups = ((False, updates), (True, creates))
    # n writes of a kind cost n direct calls, or one job; all jobs share the polls (at least one).
    # Jobs pay off when they save at least two requests together; a tie goes to direct calls,
    # which answer at once.
    saved = sum(len(group) - 1 for _, group in groups if len(group) > 1)
    units = [_Unit(chunk, create) for create, group in groups for chunk in _chunks(group, as_job=saved >= 2)]
    return units, repeats


def estimated_requests(items: Sequence[SyncItem]) -> int:
    """Write requests `TicketWriter.write` makes for these items (submits or direct calls, one
    poll), counting every item without a known ticket as a create; look-ups are counted by
    `adapters.zendesk_lookup.estimated_lookup_requests`."""
    updates = creates = 0
    for item in items:
        known = linked_ticket_id(item.snapshot) is not None or item.target_state.remote_id is not None
        updates += known
        creates += not known
    if sum(n - 1 for n in (updates, creates) if n > 1) < 2:
        return updates + creates  # direct calls, as plan_units decides
    return math.ceil(updates / MAX_JOB_TICKETS) + math.ceil(creates / MAX_JOB_TICKETS) + 1


def _chunks(writes: list[Write], as_job: bool) -> list[list[Write]]:
    if not as_job:
        return [[write] for write in writes]
    return [writes[start:start + MAX_JOB_TICKETS] for start in range(0, len(writes), MAX_JOB_TICKETS)]


@dataclass
class TicketWriter:
    client: Zenpy
    session: RecordingSession
    call: Callable[..., Any]
    watch: JobWatch

    def write(self, writes: Sequence[Write]) -> dict[int, SyncOutcome]:
        """An outcome for every write, by batch index."""
        outcomes: dict[int, SyncOutcome] = {}
        units, repeats = plan_units(writes)
        # Jobs first: they run on Zendesk's side while the single calls are made.
        ordered = sorted(units, key=lambda unit: not unit.is_job)
        for position, unit in enumerate(ordered):
            try:
                self._start(unit, outcomes)
            except SyncError as exc:
                self._fail(unit, exc, outcomes)
                if isinstance(exc, RetryableSyncError | TargetUnavailableError):
                    for later in ordered[position + 1:]:
                        self._fail(later, RetryableSyncError(f"not sent: {exc}", exc.retry_after_s), outcomes)
                    break
        self._collect([unit for unit in ordered if unit.job is not None], outcomes)
        for write in repeats:
            unit = _Unit([write], create=False)
            try:
                self._start(unit, outcomes)
            except SyncError as exc:
                self._fail(unit, exc, outcomes)
        return outcomes

    def _start(self, unit: _Unit, outcomes: dict[int, SyncOutcome]) -> None:
        if unit.is_job:
            tickets = [write.ticket for write in unit.writes]
            operation = self.client.tickets.create if unit.create else self.client.tickets.update
            unit.job = self.call(operation, tickets)
            return
        [write] = unit.writes
        if write.create:
            outcomes[write.index] = Synced(remote_id=str(self._create_one(write)), version=write.version)
            return
        self.call(self.client.tickets.update, write.ticket)
        outcomes[write.index] = Synced(remote_id=str(write.ticket.id), version=write.version)

    def _create_one(self, write: Write) -> int:
        self.session.headers["Idempotency-Key"] = write.idempotency_key
        try:
            audit = self.call(self.client.tickets.create, write.ticket)
        finally:
            self.session.headers.pop("Idempotency-Key", None)
        return int(audit.ticket.id)

    @staticmethod
    def _fail(unit: _Unit, exc: SyncError, outcomes: dict[int, SyncOutcome]) -> None:
        for write in unit.writes:
            remote_id = None if write.create else str(write.ticket.id)
            outcomes[write.index] = outcome_for_error(exc, remote_id=remote_id)

    def _collect(self, units: list[_Unit], outcomes: dict[int, SyncOutcome]) -> None:
        if not units:
            return
        final = self.watch.finish([unit.job for unit in units])
        for unit in units:
            job = final[str(unit.job.id)]
            failure = job_failure(job)
            if failure is not None:
                self._fail(unit, failure, outcomes)
                continue
            results = JobResults.parse(job.results)
            for position, write in enumerate(unit.writes):
                outcomes[write.index] = (results.created(position, write.version) if unit.create
                                         else results.outcome(int(write.ticket.id), write.version))


