"""Zendesk `update_many`: one background job for several tickets, polled until it reports per-ticket results."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from zenpy import Zenpy
from zenpy.lib.api_objects import Ticket

from adapters.base import Failed, Retry, RetryableSyncError, Synced, SyncOutcome

_FINISHED = frozenset({"completed", "failed", "killed"})
# Per-ticket update limits report as job results, not as HTTP 429.
_RETRYABLE_ERRORS = frozenset({"TooManyRequests"})


def _read(result: Any, key: str) -> Any:
    return result.get(key) if isinstance(result, Mapping) else getattr(result, key, None)


@dataclass(frozen=True)
class JobResults:
    """Per-ticket results of a finished job."""

    by_ticket: dict[int, Any]

    @classmethod
    def parse(cls, results: Sequence[Any] | None) -> JobResults:
        return cls({int(_read(result, "id")): result for result in results or [] if _read(result, "id")})

    def outcome(self, ticket_id: int, version: int) -> SyncOutcome:
        result = self.by_ticket.get(ticket_id)
        if result is None:
            missing = "job finished without a result for the ticket"
            return Retry(None, missing, uncertain=True, remote_id=str(ticket_id))
        failed = _read(result, "success") is False or _read(result, "error") or _read(result, "errors")
        if not failed:
            return Synced(remote_id=str(ticket_id), version=version)
        code = _read(result, "error") or "TicketUpdateFailed"
        details = _read(result, "details") or _read(result, "errors") or ""
        if code in _RETRYABLE_ERRORS:
            return Retry(None, f"{code}: {details}", remote_id=str(ticket_id))
        return Failed(code=str(code), message=str(details))


def run_update_many(
    client: Zenpy,
    due: Sequence[tuple[int, Ticket]],
    call: Callable[..., Any],
    poll_s: float,
    timeout_s: float,
) -> JobResults:
    """Submit the tickets, poll the job; a job that does not finish leaves the writes uncertain."""
    job = call(client.tickets.update, [ticket for _, ticket in due])
    deadline_s = time.monotonic() + timeout_s
    while str(job.status) not in _FINISHED:
        if time.monotonic() > deadline_s:
            raise RetryableSyncError(f"update_many job {job.id} still {job.status}", uncertain=True)
        time.sleep(poll_s)
        job = call(partial(client.job_status, id=job.id))
    if job.status != "completed":
        raise RetryableSyncError(f"update_many job {job.id} {job.status}", uncertain=True)
    return JobResults.parse(job.results)
