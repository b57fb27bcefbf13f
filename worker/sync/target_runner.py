"""One target's thread: take batches from its queue, budget, call, store the outcome, retry what is not done.

Each target advances on its own: a slow or failing target holds back only its own queue (and the
offsets of the records it has not finished), never another target's calls. Work is done when it
is Synced or Skipped (or already synced: the stored version is read again right before each call,
so re-consumed or replayed snapshots make no call), or Failed and dead-lettered; only then are its
records reported done. Retry outcomes go back to the queue and the target waits
`compute_backoff` (a Retry-After is a floor) before its next call; a target that said its budget
is exhausted pauses. A target that refused us as a whole (`Retry.target_unavailable`: credentials
refused, unreachable) is paused (`worker.sync.pause`): its records go back to the queue, nothing
is dead-lettered, one log line per wait, `ilog_target_paused{target}` is 1, and the next batch
after the wait is the probe; the first call the target answers resumes it. Past `max_pause_s`
(when set) the waiting records are dead-lettered with the reason, one probe per wait continuing.
On shutdown the queue is worked off until the drain deadline; what is left
is not reported done, so its offsets are not stored and the next owner reads it again.

Calls in flight at once (`concurrent_calls`, a target trait): a target that answers slowly (a CRM a
few hundred milliseconds away) would otherwise cap a replica at one call's worth of records per round
trip. Each call holds its own interactions (the queue never hands out an interaction in flight, so
writes per interaction stay in order); a call beside one under way starts only once
`side_call_items` records wait (it would otherwise split what one call carries into more requests
against the API budget); and while the target is paused or backing off, one call at a time is the probe.

Lingering (target traits): a call may wait `linger_s` from when its oldest work was queued, or
`final_linger_s` if longer when every waiting work is a finalized log, to carry more, unless
`linger_items` wait; closing works off the queue without lingering.
"""

from __future__ import annotations

import threading
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
    TargetState,
    TargetUnavailableError,
    compute_backoff,
    next_target_state,
)
from worker.runtime import metrics
from worker.runtime.logs import trace_fields
from worker.store.budget import Budget, Grant, admit
from worker.store.sync_state import BatchRead, StateUpdate, SyncStateStore
from worker.sync.batch import Pending
from worker.sync.epoch import AbsenceRule, Evidence, first_event_ms, state_known_absent
from worker.sync.offsets import Position
from worker.sync.pause import PauseControl, TargetPause, refusal
from worker.sync.queue import Work, WorkQueue

log = structlog.get_logger("ilog.sync")

_BUDGET_POLL_S = 1.0
_IDLE_WAKE_S = 1.0

DeadLetter = Callable[[Pending, str, Failed], None]
Done = Callable[[Sequence[Position]], None]


def _nothing_done(_positions: Sequence[Position]) -> None:
    return None


RAISES_BEFORE_DEAD_LETTER = 3
"""Unexpected adapter errors one record may cause before it is dead-lettered (see `TargetRunner._raised`)."""


def _never() -> bool:
    return False


@dataclass
class TargetRunner:
    target: Target
    states: SyncStateStore
    budget: Budget
    dead_letter: DeadLetter
    on_done: Done = _nothing_done
    reserve_fraction: float = 0.1
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0
    settle_s: float = 0.0  # how long a write whose answer was lost may take to land (async jobs)
    linger_s: float = 0.0  # hold waiting work up to this long to fill a batch
    linger_items: int = 100  # ... unless this many are waiting
    final_linger_s: float = 0.0  # at least this long for waiting work whose trigger is finalized
    max_call_items: int = 1000
    paused_until: float = 0.0  # monotonic; budget exhausted, back-off after a retry, settling
    pause_base_s: float = 1.0  # a paused target: first wait ...
    pause_ceiling_s: float = 300.0  # ... doubling up to this
    max_pause_s: float | None = None  # dead-letter the waiting records once paused this long
    absence: AbsenceRule | None = None  # when a missing state means "never synced"; None: never trusted
    keep_models: Callable[[], bool] = _never  # the queue keeps decoded snapshots while this says so
    concurrent_calls: int = 1  # calls in flight at once, each on interactions of its own
    side_call_items: int = 1  # records that must wait before a call starts beside one under way
    pauses: PauseControl = field(init=False)
    failure: BaseException | None = field(default=None, init=False)
    queue: WorkQueue = field(init=False)
    _attempt: int = field(default=0, init=False)
    _answered_s: float = field(default=0.0, init=False)  # monotonic: the last call the target answered
    _hurry: bool = field(default=False, init=False)
    _budget_low: bool = field(default=False, init=False)  # as of the last admission: take final snapshots first
    _deadline_s: float | None = field(default=None, init=False)
    _calls: int = field(default=0, init=False)  # calls under way; changed under `queue.changed`
    _serving: int = field(default=0, init=False)  # threads still serving; changed under `queue.changed`
    _threads: list[threading.Thread] = field(default_factory=list, init=False)
    _mind: threading.Lock = field(default_factory=threading.Lock, init=False)  # pause and back-off bookkeeping

    def __post_init__(self) -> None:
        self.queue = WorkQueue(self.target.wants, self.keep_models)
        self.pauses = PauseControl(self.target.name, self.pause_base_s, self.pause_ceiling_s, self.max_pause_s)

    @property
    def name(self) -> str:
        return self.target.name

    # -- lifecycle ------------------------------------------------------------------------------
    def start(self) -> None:
        count = max(1, self.concurrent_calls)
        self._serving = count
        self._threads = [
            threading.Thread(target=self._serve, name=f"sync-{self.name}" + (f"-{n}" if n else ""), daemon=True)
            for n in range(count)
        ]
        for thread in self._threads:
            thread.start()

    def close_by(self, deadline_s: float) -> None:
        """Work off the queue without lingering; stop at `deadline_s` (monotonic) whatever is left."""
        with self.queue.changed:
            self._hurry = True
            self._deadline_s = deadline_s
            self.queue.changed.notify_all()

    def join(self, timeout_s: float) -> bool:
        """True when every thread ended (a call under way past the deadline keeps its thread alive)."""
        until_s = time.monotonic() + max(0.0, timeout_s)
        for thread in self._threads:
            thread.join(max(0.0, until_s - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)

    @property
    def pause(self) -> TargetPause | None:
        return self.pauses.pause

    def pause_status(self) -> str | None:
        """For /readyz: why this target is paused and when it tries again; None when it is not."""
        return self.pauses.status(time.monotonic())

    def _serve(self) -> None:
        try:
            while (batch := self._next_batch()) is not None:
                try:
                    self._sync(batch)
                finally:
                    with self.queue.changed:
                        self._calls -= 1
                        self.queue.changed.notify_all()
        except BaseException as exc:  # surfaced by the stage loop, which stops the worker
            log.exception("target thread failed", target=self.name)
            self.failure = exc
        finally:
            with self.queue.changed:
                self._serving -= 1
                last = self._serving == 0
            left = len(self.queue)
            if last and left:
                log.warning("sync work abandoned", target=self.name, pending=left)

    def _next_batch(self) -> list[Work] | None:
        """The next batch to call with, once it is due; None when closing and done (or out of time)."""
        changed = self.queue.changed
        with changed:
            while True:
                now = time.monotonic()
                if self._deadline_s is not None and now >= self._deadline_s:
                    return None
                if self._hurry and self.queue.empty():
                    return None
                wait_s = 0.0 if self._letting_go(now) else self.paused_until - now
                if wait_s <= 0 and self._may_call():
                    ready_in_s = self.queue.ready_in_s(self.linger_s, self.linger_items, self._hurry,
                                                         self.final_linger_s)
                    if ready_in_s == 0:
                        self._calls += 1
                        return self.queue.take(self.max_call_items, finals_first=self._budget_low)
                    wait_s = _IDLE_WAKE_S if ready_in_s is None else ready_in_s
                elif wait_s <= 0:
                    wait_s = _IDLE_WAKE_S  # woken when a call ends or work arrives
                if self._deadline_s is not None:
                    wait_s = min(wait_s, self._deadline_s - now)
                changed.wait(max(wait_s, 0.001))

    def _may_call(self) -> bool:
        """Under `queue.changed`: whether one more call may start now (see the module docstring)."""
        if self._calls == 0:
            return True
        if self._calls >= self.concurrent_calls or self.pause is not None or self._attempt:
            return False
        return self.queue.takeable_at_least(self.side_call_items)

    # -- one call -------------------------------------------------------------------------------
    def _letting_go(self, now_s: float) -> bool:
        """Paused past `max_pause_s` and between two probes: waiting records are dead-lettered at once."""
        return now_s < self.paused_until and self.pauses.expired(now_s) is not None

    def _sync(self, batch: list[Work]) -> None:
        due = self._still_due(batch)
        if not due or self._let_go(due) or self._settling(due):
            return
        sent = self._admitted([item for _, item in due])
        sent_ids = {item.snapshot.interaction_id for item in sent}
        self.queue.give_back([work for work, _ in due if work.interaction_id not in sent_ids])
        if not sent:
            with self._mind:
                self.paused_until = max(self.paused_until, time.monotonic() + _BUDGET_POLL_S)
            return
        works = {work.interaction_id: work for work, _ in due}
        self._mark_in_flight(sent)
        called = [works[item.snapshot.interaction_id] for item in sent]
        outcomes, error = self._call(sent)
        if outcomes is None:
            outcomes = self._raised(called, error)
        elif any(isinstance(outcome, (Synced, Skipped, Failed)) for outcome in outcomes):
            with self._mind:
                self._answered_s = time.monotonic()
        self._apply(called, sent, outcomes)

    def _still_due(self, batch: list[Work]) -> list[tuple[Work, SyncItem]]:
        """Each item with its state as stored now; those already synced are done without a call.
        The same read brings the sync epoch, which says whether a missing state is "never synced"."""
        now_ms = int(time.time() * 1000)
        read = self.states.read_batch((work.interaction_id for work in batch), self.name, now_ms)
        due: list[tuple[Work, SyncItem]] = []
        for work in batch:
            state = read.states.get(work.interaction_id, TargetState())
            if state.synced_version >= work.entry.snapshot.version:
                self.on_done(self.queue.finish(work, done=True))
            else:
                absent = self._known_absent(work, read, now_ms)
                due.append((work, SyncItem(work.entry.snapshot, state, state_known_absent=absent,
                                           traceparent=work.entry.record.traceparent)))
        return due

    def _known_absent(self, work: Work, read: BatchRead, now_ms: int) -> bool:
        if self.absence is None or work.interaction_id not in read.held_without_state:
            return False
        evidence = Evidence(read.epoch_ms, first_event_ms(work.entry.snapshot), now_ms, log_held=True)
        return state_known_absent(evidence, self.absence)

    def _let_go(self, due: list[tuple[Work, SyncItem]]) -> bool:
        """Dead-letter the batch without a call while the pause is over its limit (until the next probe)."""
        now = time.monotonic()
        letter = self.pauses.expired(now)
        if letter is None or now >= self.paused_until:
            return False
        for work, _ in due:
            metrics.UPSERTS.labels(self.name, "failed").inc()
            self.dead_letter(work.entry, self.name, letter)
            self.on_done(self.queue.finish(work, done=True))
        log.error("target paused too long; waiting records dead-lettered", target=self.name,
                  code=letter.code, records=len(due))
        return True

    def _settling(self, due: list[tuple[Work, SyncItem]]) -> bool:
        """A write whose answer was lost (or a crash mid-call) may still land, e.g. a queued
        background job: the check-before-writing-again only sees it after it landed, so wait for that first."""
        unsettled = [work for work, item in due if item.target_state.uncertain and not work.settled]
        for work in unsettled:
            work.settled = True
        if not unsettled or self.settle_s <= 0:
            return False
        with self._mind:
            self._settle()
        self.queue.give_back([work for work, _ in due])
        return True

    def _settle(self) -> None:
        """Under `_mind`."""
        self.paused_until = max(self.paused_until, time.monotonic() + self.settle_s)

    def _admitted(self, items: Sequence[SyncItem]) -> list[SyncItem]:
        limits = self.budget.limits.get(self.name)
        estimate = self.target.estimate_requests
        left = self.budget.peek(self.name)
        # while it is low only final snapshots are admitted: the next batches are taken finals first
        self._budget_low = limits is not None and left.is_low(limits, self.reserve_fraction)
        sent = admit(estimate, items, left, limits, self.reserve_fraction)
        if not sent:
            return []
        grant = self.budget.take(self.name, estimate(sent))
        self._report_budget(grant)
        return sent if grant.granted else []

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

    def _call(self, items: Sequence[SyncItem]) -> tuple[list[SyncOutcome] | None, str]:
        """The outcomes; None and the error when the adapter raised an unexpected error (`_raised` decides)."""
        try:
            outcomes = self.target.sync(items)
        except TargetUnavailableError as exc:  # not caught inside the adapter: what was sent is unknown
            return [Retry(exc.retry_after_s, str(exc), uncertain=True, target_unavailable=exc.code)
                    for _ in items], ""
        except Exception as exc:  # an adapter bug must not lose the work, nor stop the target for the others
            log.exception("target raised", target=self.name, items=len(items))
            return None, f"{type(exc).__name__}: {exc}"
        if len(outcomes) != len(items):
            log.error("target answered the wrong number of outcomes", target=self.name)
            return [Retry(None, "outcome count mismatch") for _ in items], ""
        return outcomes, ""

    def _raised(self, works: Sequence[Work], error: str) -> list[SyncOutcome]:
        """The call raised an unexpected error. What it sent is unknown (uncertain: the next try looks
        first). Its works go in ever smaller calls and to the back of the queue (`WorkQueue.take`,
        `give_back`), so a record that makes the adapter raise stops only itself: it is dead-lettered
        (`ADAPTER_ERROR`; `ilog dlq replay` resends it once the adapter is fixed) when it raised
        `RAISES_BEFORE_DEAD_LETTER` times, the last one alone in its call, and the target answered other
        calls since its first raise. Otherwise the error may be the target's: tried again, as before."""
        now = time.monotonic()
        outcomes: list[SyncOutcome] = []
        for work in works:
            work.raised += 1
            if work.first_raised_s is None:
                work.first_raised_s = now
            if (len(works) == 1 and work.raised >= RAISES_BEFORE_DEAD_LETTER
                    and self._answered_s > work.first_raised_s):
                outcomes.append(Failed("ADAPTER_ERROR", f"the {self.name} adapter raised {error}"))
            else:
                outcomes.append(Retry(None, error, uncertain=True))
        return outcomes

    def _apply(self, works: Sequence[Work], items: Sequence[SyncItem], answers: Sequence[SyncOutcome]) -> None:
        """Store states and dead-letter failures first; only then are the records reported done."""
        refused = refusal(list(answers))
        with self._mind:
            outcomes = self.pauses.expire(list(answers), time.monotonic()) if refused is not None else list(answers)
        updates: list[StateUpdate] = []
        strongest: Retry | None = None
        for work, item, outcome in zip(works, items, outcomes, strict=True):
            state = next_target_state(item.target_state, outcome)
            updates.append(StateUpdate(item.snapshot.interaction_id, self.name, state))  # also clears the mark
            self._count(work, outcome)
            if isinstance(outcome, Retry):
                strongest = _stronger_retry(strongest, outcome)
                # `_after` waits the settle time for an uncertain write now: the retry need not wait again
                work.settled = work.settled or outcome.uncertain
            elif isinstance(outcome, Failed):
                self.dead_letter(work.entry, self.name, outcome)
        self.states.save(updates)
        for work, outcome in zip(works, outcomes, strict=True):
            if not isinstance(outcome, Retry):
                self.on_done(self.queue.finish(work, done=True))
        self.queue.give_back([work for work, outcome in zip(works, outcomes, strict=True)
                              if isinstance(outcome, Retry)])
        queued = len(self.queue)
        with self._mind:
            if refused is not None:
                next_try_s = self.pauses.refused(refused, time.monotonic(), queued)
                self.paused_until = max(self.paused_until, next_try_s)
            else:
                self.pauses.answered(outcomes, time.monotonic())
            self._after(strongest, outcomes)

    def _after(self, strongest: Retry | None, outcomes: Sequence[SyncOutcome]) -> None:
        """Under `_mind`: back off after a retry (a Retry-After is a floor), pause when the budget is exhausted."""
        if any(isinstance(o, Retry) and o.uncertain for o in outcomes):
            self._settle()
        if self.pause is not None:
            return  # the pause schedule decides when to try again
        if strongest is None:
            self._attempt = 0
            return
        self._attempt += 1
        now = time.monotonic()
        if strongest.budget_exhausted:
            pause_s = strongest.retry_after_s or self.backoff_cap_s
            self.paused_until = max(self.paused_until, now + pause_s)
            log.warning("target budget exhausted; pausing", target=self.name, pause_s=pause_s)
        backoff_s = compute_backoff(self._attempt, strongest.retry_after_s,
                                    base_s=self.backoff_base_s, cap_s=self.backoff_cap_s)
        self.paused_until = max(self.paused_until, now + backoff_s)

    def _count(self, work: Work, outcome: SyncOutcome) -> None:
        snap = work.entry.snapshot
        paused = isinstance(outcome, Retry) and outcome.target_unavailable is not None
        kind = "paused" if paused else type(outcome).__name__.lower()
        metrics.UPSERTS.labels(self.name, kind).inc()
        fields: dict[str, object] = {
            "interaction_id": snap.interaction_id, "target": self.name, "version": snap.version,
            "trigger": snap.trigger.value, "outcome": kind, **trace_fields(work.entry.record.traceparent),
        }
        if isinstance(outcome, Synced):
            timestamp_ms = work.entry.record.timestamp_ms
            if timestamp_ms is not None:
                metrics.SYNC_LATENCY.labels(self.name).observe(max(0.0, time.time() - timestamp_ms / 1000))
            log.info("synced", remote_id=outcome.remote_id, **fields)
        elif isinstance(outcome, Skipped):
            log.info("synced", reason=outcome.reason, **fields)
        elif isinstance(outcome, Retry) and outcome.target_unavailable is not None:
            return  # the target is paused: one line per wait (`PauseControl.refused`), not one per record
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
