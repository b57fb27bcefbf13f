"""One target's part of a sync batch: budget, call, store the outcome, retry what is not done.

A target's items are done when they are Synced or Skipped, or Failed and dead-lettered. Retry
outcomes are tried again after `compute_backoff` (a Retry-After is a floor), only those items,
until done or until the batch deadline passes (shutdown or an over-long batch): then the runner
reports "not done" and the stage stores no offsets, so the batch is read again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

import structlog

from adapters.base import (
    Failed,
    Retry,
    Skipped,
    Synced,
    SyncItem,
    SyncOutcome,
    Target,
    compute_backoff,
    next_target_state,
)
from worker import metrics
from worker.budget import ApiBudget, Grant, admit, estimate_requests
from worker.sync_batch import Pending
from worker.sync_state import StateUpdate, SyncStateStore

log = structlog.get_logger("ilog.sync")

_BUDGET_POLL_S = 1.0

DeadLetter = Callable[[Pending, str, Failed], None]


class BatchDeadline:
    """When a batch gives up: `batch_limit_s` after it started, or `drain_s` after stop was seen."""

    def __init__(self, stop_is_set: Callable[[], bool], drain_s: float, batch_limit_s: float) -> None:
        self._stop_is_set = stop_is_set
        self._drain_s = drain_s
        self._limit = time.monotonic() + batch_limit_s
        self._stop_seen: float | None = None

    def remaining_s(self) -> float:
        if self._stop_is_set() and self._stop_seen is None:
            self._stop_seen = time.monotonic()
            self._limit = min(self._limit, self._stop_seen + self._drain_s)
        return self._limit - time.monotonic()

    def passed(self) -> bool:
        return self.remaining_s() <= 0

    def sleep(self, seconds: float) -> None:
        """Sleep up to `seconds`, waking early when the deadline passes (stop shortens it)."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0 and not self.passed():
            time.sleep(min(left, 0.1, max(self.remaining_s(), 0.0)))


@dataclass
class _Work:
    entry: Pending
    item: SyncItem


@dataclass
class TargetRunner:
    target: Target
    states: SyncStateStore
    budget: ApiBudget
    dead_letter: DeadLetter
    reserve_fraction: float = 0.1
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    settle_s: float = 0.0  # how long a write whose answer was lost may take to land (async jobs)
    paused_until: float = 0.0  # monotonic; set when the target said its budget is exhausted
    _attempt: int = field(default=0, init=False)

    @property
    def name(self) -> str:
        return self.target.name

    def run(self, due: Sequence[tuple[Pending, SyncItem]], deadline: BatchDeadline) -> bool:
        """True when every item is done (synced, skipped or dead-lettered)."""
        todo = {entry.snapshot.interaction_id: _Work(entry, item) for entry, item in due}
        self._attempt = 0
        if any(item.target_state.uncertain for _, item in due):
            self._settle()
        while todo:
            if deadline.passed():
                log.warning("sync batch abandoned", target=self.name, pending=len(todo))
                return False
            if (pause_s := self.paused_until - time.monotonic()) > 0:
                deadline.sleep(pause_s)
                continue
            sent = self._admitted([work.item for work in todo.values()])
            if not sent:
                deadline.sleep(_BUDGET_POLL_S)
                continue
            self._mark_in_flight(sent)
            outcomes = self._call(sent)
            retry = self._apply([todo[item.snapshot.interaction_id] for item in sent], outcomes, todo)
            if retry is not None:
                self._attempt += 1
                deadline.sleep(compute_backoff(self._attempt, retry.retry_after_s,
                                               base_s=self.backoff_base_s, cap_s=self.backoff_cap_s))
            else:
                self._attempt = 0
        return True

    def _admitted(self, items: Sequence[SyncItem]) -> list[SyncItem]:
        limits = self.budget.limits.get(self.name)
        sent = admit(self.name, items, self.budget.peek(self.name), limits, self.reserve_fraction)
        if not sent:
            return []
        grant = self.budget.take(self.name, estimate_requests(self.name, sent))
        self._report_budget(grant)
        return sent if grant.granted else []

    def _settle(self) -> None:
        """A write whose answer was lost (or a crash mid-call) may still land, e.g. a queued Zendesk
        job: the check-before-writing-again only sees it after it landed, so wait for that first."""
        self.paused_until = max(self.paused_until, time.monotonic() + self.settle_s)

    def _mark_in_flight(self, items: Sequence[SyncItem]) -> None:
        """Stored as uncertain before the call, so a crash mid-call makes the next owner look first.

        The adapter still gets the state as it was: in the normal path no look-up is needed, and
        the outcome's state (stored right after) replaces the mark.
        """
        self.states.save([
            StateUpdate(item.snapshot.interaction_id, self.name, replace(item.target_state, uncertain=True))
            for item in items if not item.target_state.uncertain
        ])

    def _report_budget(self, grant: Grant) -> None:
        if self.name in self.budget.limits:
            metrics.API_BUDGET_LEFT.labels(self.name, "minute").set(grant.left_minute)
            metrics.API_BUDGET_LEFT.labels(self.name, "day").set(grant.left_day)

    def _call(self, items: Sequence[SyncItem]) -> list[SyncOutcome]:
        try:
            outcomes = self.target.sync(items)
        except Exception as exc:  # an adapter bug must not lose the batch: count, log, retry
            log.exception("target raised", target=self.name, items=len(items))
            return [Retry(None, f"{type(exc).__name__}: {exc}") for _ in items]
        if len(outcomes) != len(items):
            log.error("target answered the wrong number of outcomes", target=self.name)
            return [Retry(None, "outcome count mismatch") for _ in items]
        return outcomes

    def _apply(self, works: Sequence[_Work], outcomes: Sequence[SyncOutcome], todo: dict[str, _Work]) -> Retry | None:
        """Store states, dead-letter failures, drop done items; the strongest Retry seen, if any."""
        updates: list[StateUpdate] = []
        strongest: Retry | None = None
        for work, outcome in zip(works, outcomes, strict=True):
            snap = work.item.snapshot
            state = next_target_state(work.item.target_state, outcome)
            updates.append(StateUpdate(snap.interaction_id, self.name, state))  # also clears the mark
            self._count(work, outcome)
            if isinstance(outcome, Retry):
                todo[snap.interaction_id] = _Work(work.entry, replace(work.item, target_state=state))
                strongest = _stronger_retry(strongest, outcome)
                continue
            if isinstance(outcome, Failed):
                self.dead_letter(work.entry, self.name, outcome)
            del todo[snap.interaction_id]
        self.states.save(updates)
        if any(isinstance(o, Retry) and o.uncertain for o in outcomes):
            self._settle()
        if strongest is not None and strongest.budget_exhausted:
            pause_s = strongest.retry_after_s or self.backoff_cap_s
            self.paused_until = time.monotonic() + pause_s
            log.warning("target budget exhausted; pausing", target=self.name, pause_s=pause_s)
        return strongest

    def _count(self, work: _Work, outcome: SyncOutcome) -> None:
        snap = work.item.snapshot
        kind = type(outcome).__name__.lower()
        metrics.UPSERTS.labels(self.name, kind).inc()
        fields: dict[str, object] = {
            "interaction_id": snap.interaction_id, "target": self.name, "version": snap.version,
            "trigger": snap.trigger.value, "outcome": kind,
        }
        if isinstance(outcome, Synced):
            timestamp_ms = work.entry.record.timestamp_ms
            if timestamp_ms is not None:
                metrics.SYNC_LATENCY.labels(self.name).observe(max(0.0, time.time() - timestamp_ms / 1000))
            log.info("synced", remote_id=outcome.remote_id, **fields)
        elif isinstance(outcome, Skipped):
            log.info("synced", reason=outcome.reason, **fields)
        elif isinstance(outcome, Retry):
            log.warning("sync retry", error=outcome.error, uncertain=outcome.uncertain,
                        retry_after_s=outcome.retry_after_s, **fields)
        else:
            log.error("sync failed; dead-lettered", code=outcome.code, **fields)


def _stronger_retry(seen: Retry | None, new: Retry) -> Retry:
    """The retry that asks for the longest wait (a budget pause beats a plain back-off)."""
    if seen is None:
        return new
    if new.budget_exhausted != seen.budget_exhausted:
        return new if new.budget_exhausted else seen
    return new if (new.retry_after_s or 0) > (seen.retry_after_s or 0) else seen
