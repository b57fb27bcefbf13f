"""Zendesk bulk jobs (`update_many`, `create_many`): submitted, then polled together until they report.

A job is a background task: the submit answers `queued` with a job id, and only a later
`GET job_statuses/{id}` (or `job_statuses/show_many?ids=` for several) says what each ticket got.
Every poll is an API request, so polls are paced by the job itself: the first after the time the
last jobs took per ticket, later ones after what the job's own `progress` says is left (Zendesk
sends no Retry-After for jobs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from zenpy import Zenpy

from adapters.base import (
    Failed,
    PermanentSyncError,
    Retry,
    RetryableSyncError,
    Synced,
    SyncOutcome,
    TargetUnavailableError,
)

_FINISHED = frozenset({"completed", "failed", "killed"})
# Per-ticket update limits report as job results, not as HTTP 429.
_RETRYABLE_ERRORS = frozenset({"TooManyRequests"})
_MIN_SECONDS_PER_ITEM = 0.001


def _read(result: Any, key: str) -> Any:
    return result.get(key) if isinstance(result, Mapping) else getattr(result, key, None)


def _result_outcome(result: Any, remote_id: int | None, version: int, missing: str) -> SyncOutcome:
    if result is None:
        return Retry(None, missing, uncertain=True, remote_id=None if remote_id is None else str(remote_id))
    failed = _read(result, "success") is False or _read(result, "error") or _read(result, "errors")
    ticket_id = _read(result, "id")
    if not failed and ticket_id is not None:
        return Synced(remote_id=str(ticket_id), version=version)
    code = str(_read(result, "error") or "TicketWriteFailed")
    details = _read(result, "details") or _read(result, "errors") or ""
    if code in _RETRYABLE_ERRORS:
        return Retry(None, f"{code}: {details}", remote_id=None if remote_id is None else str(remote_id))
    return Failed(code=code, message=str(details))


@dataclass(frozen=True)
class JobResults:
    """Per-ticket results of a finished job: `update_many` by ticket id, `create_many` by request index."""

    by_ticket: dict[int, Any]
    by_index: dict[int, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, results: Sequence[Any] | None) -> JobResults:
        rows = list(results or [])
        by_ticket = {int(_read(row, "id")): row for row in rows if _read(row, "id")}
        by_index = {int(_read(row, "index")): row for row in rows if _read(row, "index") is not None}
        return cls(by_ticket, by_index)

    def outcome(self, ticket_id: int, version: int) -> SyncOutcome:
        """The outcome of an update of `ticket_id`."""
        return _result_outcome(self.by_ticket.get(ticket_id), ticket_id, version,
                               "job finished without a result for the ticket")

    def created(self, index: int, version: int) -> SyncOutcome:
        """The outcome of the create at position `index` of the request."""
        return _result_outcome(self.by_index.get(index), None, version,
                               "job finished without a result for the ticket")


@dataclass
class JobPacing:
    """When to look at running jobs; learns the seconds a ticket takes from the jobs it saw finish."""

    min_poll_s: float
    seconds_per_item: float = 0.05
    queue_s: float = 0.5

    def first_delay_s(self, totals: Sequence[int]) -> float:
        return max(self.min_poll_s, self.queue_s + self.seconds_per_item * max(totals, default=0))

    def next_delay_s(self, elapsed_s: float, job: Any) -> float:
        """What the job's progress says is left; without progress (still queued), half again."""
        progress, total = int(_read(job, "progress") or 0), int(_read(job, "total") or 0)
        if 0 < progress < total:
            return max(self.min_poll_s, elapsed_s / progress * (total - progress))
        return max(self.min_poll_s, elapsed_s / 2)

    def learn(self, elapsed_s: float, total: int, polls: int) -> None:
        if total <= 0:
            return
        observed = max(0.0, elapsed_s - self.queue_s) / total
        if polls <= 1:
            # Done before the first look: long enough, perhaps too long; try a little sooner.
            observed = min(observed, self.seconds_per_item) * 0.9
        self.seconds_per_item = max(_MIN_SECONDS_PER_ITEM, observed)


@dataclass
class JobWatch:
    """Polls submitted jobs (one request for all of them) until each finished or the time is up."""

    client: Zenpy
    call: Callable[..., Any]
    pacing: JobPacing
    timeout_s: float

    def finish(self, jobs: Sequence[Any]) -> dict[str, Any]:
        """Each job's last seen status by id; a job not finished in time keeps its last status."""
        seen = {str(job.id): job for job in jobs}
        started_s = time.monotonic()
        deadline_s = started_s + self.timeout_s
        delay_s = self.pacing.first_delay_s([int(_read(job, "total") or 0) for job in jobs])
        polls = 0
        while running := [job_id for job_id, job in seen.items() if str(job.status) not in _FINISHED]:
            left_s = deadline_s - time.monotonic()
            if left_s <= 0:
                break
            time.sleep(min(delay_s, left_s))
            polls += 1
            try:
                seen.update(self._poll(running))
            except RetryableSyncError as exc:
                delay_s = max(self.pacing.min_poll_s, exc.retry_after_s or delay_s)
                continue
            except (PermanentSyncError, TargetUnavailableError):
                break  # e.g. the job is unknown or the token refused: its writes stay uncertain
            elapsed_s = time.monotonic() - started_s
            for job_id in running:
                job = seen[job_id]
                if str(job.status) in _FINISHED:
                    self.pacing.learn(elapsed_s, int(_read(job, "total") or 0), polls)
            still = [seen[job_id] for job_id in running if str(seen[job_id].status) not in _FINISHED]
            delay_s = max((self.pacing.next_delay_s(elapsed_s, job) for job in still), default=0.0)
        return seen

    def _poll(self, job_ids: Sequence[str]) -> dict[str, Any]:
        if len(job_ids) == 1:
            job = self.call(partial(self.client.job_status, id=job_ids[0]))
            return {str(job.id): job}
        found = self.call(partial(self.client.job_status, ids=list(job_ids)))
        return {str(job.id): job for job in found["job_statuses"]}


def job_failure(job: Any) -> RetryableSyncError | None:
    """None for a completed job; otherwise why its writes are uncertain."""
    status = str(job.status)
    if status == "completed":
        return None
    return RetryableSyncError(f"job {job.id} {status}", uncertain=True)
