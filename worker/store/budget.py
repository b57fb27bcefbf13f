"""The shared per-target API budget: fixed-window counters in Redis, one per minute and one per day.

Every replica takes tokens from the same keys (`worker.store.keys.budget_key`) before it calls a target,
one token per HTTP request the target expects to make (`Target.estimate_requests`); the limits
are the target's own (`TargetTraits.budget`). When less than `reserve_fraction` of
a window is left, only finalized snapshots are admitted: the final log is what an agent and a
report need, intermediate states can wait for the next window.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from adapters.base import BudgetLimits, SyncItem
from worker.errors import StoreError
from worker.store import keys
from worker.store.cluster import REDIS_ERRORS, RedisClient, riding_out

MINUTE_MS = 60_000
DAY_MS = 86_400_000

# KEYS[1] minute counter, KEYS[2] day counter (strings; TTL = the window's length, set on first use)
# ARGV[1] tokens to take (0 = only look), ARGV[2] minute limit, ARGV[3] day limit,
# ARGV[4] minute window ms, ARGV[5] day window ms
# Returns {granted 0|1, left in the minute, left in the day, ms until the blocking window resets}.
_TAKE_SCRIPT = """
local tokens = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local windows = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local used = {}
local wait_ms = 0
local granted = 1
for i = 1, 2 do
  used[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tokens > 0 and used[i] + tokens > limits[i] then
    granted = 0
    local ttl = redis.call('PTTL', KEYS[i])
    if ttl < 0 then ttl = windows[i] end
    if ttl > wait_ms then wait_ms = ttl end
  end
end
if granted == 1 and tokens > 0 then
  for i = 1, 2 do
    used[i] = redis.call('INCRBY', KEYS[i], tokens)
    if redis.call('PTTL', KEYS[i]) < 0 then redis.call('PEXPIRE', KEYS[i], windows[i]) end
  end
end
return {granted, limits[1] - used[1], limits[2] - used[2], wait_ms}
"""


@dataclass(frozen=True)
class Grant:
    granted: bool
    left_minute: int
    left_day: int
    wait_s: float  # when refused: until the window that refused resets

    @property
    def left(self) -> int:
        return max(0, min(self.left_minute, self.left_day))

    def is_low(self, limits: BudgetLimits, reserve_fraction: float) -> bool:
        return (self.left_minute < limits.per_minute * reserve_fraction
                or self.left_day < limits.per_day * reserve_fraction)


UNLIMITED = Grant(granted=True, left_minute=1 << 30, left_day=1 << 30, wait_s=0.0)


class Budget(Protocol):
    """The budget port: `ApiBudget` (Redis, shared by every replica) and `MemoryBudget` (one process)."""

    limits: dict[str, BudgetLimits]

    def take(self, target: str, tokens: int) -> Grant: ...
    def peek(self, target: str) -> Grant: ...


class ApiBudget:
    """Token counters per target; a target without limits is never refused."""

    def __init__(self, client: RedisClient, prefix: str, limits: dict[str, BudgetLimits]) -> None:
        self._client = client
        self._prefix = prefix
        self.limits = dict(limits)
        self._take = client.register_script(_TAKE_SCRIPT)

    def take(self, target: str, tokens: int) -> Grant:
        limits = self.limits.get(target)
        if limits is None:
            return UNLIMITED
        try:
            granted, left_minute, left_day, wait_ms = riding_out(lambda: self._take(
                keys=[keys.budget_key(self._prefix, target, "minute"), keys.budget_key(self._prefix, target, "day")],
                args=[max(0, tokens), limits.per_minute, limits.per_day, MINUTE_MS, DAY_MS],
            ))
        except REDIS_ERRORS as exc:
            raise StoreError(f"API budget of {target} unreadable: {exc}") from exc
        return Grant(bool(granted), int(left_minute), int(left_day), int(wait_ms) / 1000)

    def peek(self, target: str) -> Grant:
        return self.take(target, 0)


def _monotonic_ms() -> int:
    return int(time.monotonic() * 1000)


class MemoryBudget:
    """The in-memory twin of `ApiBudget`: the same fixed windows, counted in this process on `clock_ms`."""

    def __init__(self, limits: dict[str, BudgetLimits], clock_ms: Callable[[], int] = _monotonic_ms) -> None:
        self.limits = dict(limits)
        self._clock_ms = clock_ms
        self._windows: dict[tuple[str, int], tuple[int, int]] = {}  # (target, window ms) → (used, ends at ms)

    def take(self, target: str, tokens: int) -> Grant:
        limits = self.limits.get(target)
        if limits is None:
            return UNLIMITED
        now_ms, tokens = self._clock_ms(), max(0, tokens)
        spans = ((MINUTE_MS, limits.per_minute), (DAY_MS, limits.per_day))
        used = [self._window(target, span_ms, now_ms) for span_ms, _ in spans]
        refused = [ends_ms - now_ms for (count, ends_ms), (_, limit) in zip(used, spans, strict=True)
                   if tokens > 0 and count + tokens > limit]
        if tokens > 0 and not refused:
            used = [(count + tokens, ends_ms) for count, ends_ms in used]
            for (span_ms, _), window in zip(spans, used, strict=True):
                self._windows[(target, span_ms)] = window
        return Grant(not refused, limits.per_minute - used[0][0], limits.per_day - used[1][0],
                     max(refused, default=0) / 1000)

    def peek(self, target: str) -> Grant:
        return self.take(target, 0)

    def _window(self, target: str, span_ms: int, now_ms: int) -> tuple[int, int]:
        """(used, ends at ms); a window starts with its first grant, as the Redis key's TTL does."""
        count, ends_ms = self._windows.get((target, span_ms), (0, now_ms + span_ms))
        return (0, now_ms + span_ms) if ends_ms <= now_ms else (count, ends_ms)


Estimate = Callable[[Sequence[SyncItem]], int]
"""Requests a target will make for these items (`Target.estimate_requests`)."""


def admit(
    estimate: Estimate, items: Sequence[SyncItem], grant: Grant, limits: BudgetLimits | None, reserve_fraction: float
) -> list[SyncItem]:
    """The items to send now: finalized first; only those when the budget is low; as many as fit."""
    ordered = sorted(items, key=lambda item: not item.snapshot.finalized)
    if limits is not None and grant.is_low(limits, reserve_fraction):
        ordered = [item for item in ordered if item.snapshot.finalized]
    count = len(ordered)
    while count > 0 and estimate(ordered[:count]) > grant.left:
        count //= 2
    return ordered[:count]
