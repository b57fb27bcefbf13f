"""A target that refused us as a whole (credentials, permission on every call, unreachable) is paused.

Its records wait in its queue and their offsets stay (the offsets ledger holds back what a target is
not done with); the target tries again after an exponential, jittered wait up to a ceiling, and
resumes by itself on the first call the target answers. Optionally, after `max_pause_s` the waiting
records are dead-lettered with the reason instead of waiting longer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import structlog

from adapters.base import Failed, Retry, Synced, SyncOutcome, compute_backoff
from worker.runtime import metrics

log = structlog.get_logger("ilog.sync")


@dataclass
class TargetPause:
    """Why and since when a target is paused; times are monotonic seconds unless named `_wall`."""

    code: str
    error: str
    since_s: float
    since_wall_s: float
    attempts: int = 0
    next_try_s: float = 0.0

    def paused_for_s(self, now_s: float) -> float:
        return max(0.0, now_s - self.since_s)

    def over(self, max_pause_s: float | None, now_s: float) -> bool:
        """Paused longer than allowed (None: no limit)."""
        return max_pause_s is not None and self.paused_for_s(now_s) >= max_pause_s

    def describe(self, target: str, now_s: float) -> str:
        """One line for /readyz: target, error code, for how long, next try (never a secret)."""
        return (f"target {target} paused for {self.paused_for_s(now_s):.0f} s: {self.code} ({self.error}); "
                f"next try in {max(0.0, self.next_try_s - now_s):.0f} s")


def pause_wait_s(
    attempt: int, retry_after_s: float | None, *, base_s: float, ceiling_s: float, jitter: float | None = None
) -> float:
    """The wait before try number `attempt + 1` of a paused target: doubling from `base_s`, capped at
    `ceiling_s`, equal jitter (half fixed, half random) so replicas do not return in lockstep."""
    return compute_backoff(attempt, retry_after_s, base_s=base_s, cap_s=ceiling_s, jitter=jitter)


def refusal(outcomes: list[SyncOutcome]) -> Retry | None:
    """The first outcome saying the target as a whole refused us, if any."""
    for outcome in outcomes:
        if isinstance(outcome, Retry) and outcome.target_unavailable is not None:
            return outcome
    return None


def answered(outcomes: list[SyncOutcome]) -> bool:
    """The target answered a call about records (a record-level result, or a plain transient error);
    a Skipped item needed no call, so it says nothing."""
    return any(isinstance(o, Synced | Failed) or (isinstance(o, Retry) and o.target_unavailable is None)
               for o in outcomes)


def expired_letter(target: str, pause: TargetPause, now_s: float, max_pause_s: float) -> Failed:
    """What a record waiting on a target paused for longer than `max_pause_s` is dead-lettered with."""
    return Failed(
        code=pause.code,
        message=(f"target {target} paused for {pause.paused_for_s(now_s):.0f} s, longer than "
                 f"ILOG_{target.upper()}_MAX_PAUSE_SECONDS={max_pause_s:g}: {pause.error}"),
    )


@dataclass
class PauseControl:
    """One target's pause: entered on a refusal, one log line and one schedule step per wait, left on
    the first answer; past `max_pause_s` the refused records are dead-lettered instead of waiting."""

    target: str
    base_s: float = 1.0
    ceiling_s: float = 300.0
    max_pause_s: float | None = None
    pause: TargetPause | None = None

    def __post_init__(self) -> None:
        metrics.TARGET_PAUSED.labels(self.target).set(0)

    def status(self, now_s: float) -> str | None:
        pause = self.pause
        return None if pause is None else pause.describe(self.target, now_s)

    def expired(self, now_s: float) -> Failed | None:
        """The dead letter for a waiting record once the pause is over its limit; None before."""
        pause, limit = self.pause, self.max_pause_s
        if pause is None or limit is None or not pause.over(limit, now_s):
            return None
        return expired_letter(self.target, pause, now_s, limit)

    def expire(self, outcomes: list[SyncOutcome], now_s: float) -> list[SyncOutcome]:
        """Past the limit, the records the target refused are dead-lettered with the reason."""
        letter = self.expired(now_s)
        if letter is None:
            return outcomes
        return [letter if isinstance(o, Retry) and o.target_unavailable is not None else o for o in outcomes]

    def refused(self, refused: Retry, now_s: float, queued: int) -> float:
        """Pause (or stay paused); the monotonic time of the next try. One log line per wait."""
        code = refused.target_unavailable or "UNAVAILABLE"
        if self.pause is None:
            self.pause = TargetPause(code, refused.error, since_s=now_s, since_wall_s=time.time())
        pause = self.pause
        if now_s < pause.next_try_s:  # a call that was under way beside the one that paused us: same wait
            return pause.next_try_s
        pause.code, pause.error = code, refused.error
        pause.attempts += 1
        wait_s = pause_wait_s(pause.attempts, refused.retry_after_s, base_s=self.base_s, ceiling_s=self.ceiling_s)
        pause.next_try_s = now_s + wait_s
        metrics.TARGET_PAUSED.labels(self.target).set(1)
        log.warning("target paused", target=self.target, code=code, error=refused.error, attempt=pause.attempts,
                    paused_for_s=round(pause.paused_for_s(now_s), 1), next_try_in_s=round(wait_s, 1),
                    queued=queued)
        return pause.next_try_s

    def answered(self, outcomes: list[SyncOutcome], now_s: float) -> None:
        """The target answered about records: a pause ends here."""
        pause = self.pause
        if pause is None or not answered(outcomes):
            return
        self.pause = None
        metrics.TARGET_PAUSED.labels(self.target).set(0)
        log.info("target resumed", target=self.target, code=pause.code, attempts=pause.attempts,
                 paused_for_s=round(pause.paused_for_s(now_s), 1))
