"""A target that refused us as a whole (credentials, permission on every call, unreachable) is paused.

Its records wait in its queue and their offsets stay (the offsets ledger holds back what a target is
not done with); the target tries again after an exponential, jittered wait up to a ceiling, and
resumes by itself on the first call the target answers. Optionally, after `max_pause_s` the waiting
records are dead-lettered with the reason instead of waiting longer.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapters.base import Failed, Retry, Synced, SyncOutcome, compute_backoff


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
