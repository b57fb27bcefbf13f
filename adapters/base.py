"""The one protocol every sync target implements, its outcomes and its error tree.

The sync loop calls `Target.sync` with a batch of items (the latest snapshot per interaction and
what the store remembers about it for this target) and gets one outcome per item, in order. It
stores `next_target_state(item.target_state, outcome)` per interaction and target; that is how an
uncertain call (timeout, dropped connection) makes the next call look the record up first.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from schemas.snapshot import LogSnapshot


@dataclass(frozen=True)
class TargetState:
    """What the store remembers per interaction and target."""

    remote_id: str | None = None
    synced_version: int = 0
    uncertain: bool = False

    @property
    def needs_lookup(self) -> bool:
        """Look at the target before writing: an earlier write may have landed without us learning
        its id, and a missing state means "unknown", never "not created" (it may have been lost,
        expired, or belong to another run over the same records)."""
        return self.uncertain or self.remote_id is None


@dataclass(frozen=True)
class SyncItem:
    """`state_known_absent`: the sync engine proved the missing state means "never synced to this
    target" (the store held everything ever written for the interaction: `worker.sync.epoch`);
    the adapter then creates without looking first. False (the default) keeps "unknown"."""

    snapshot: LogSnapshot
    target_state: TargetState = TargetState()
    state_known_absent: bool = False
    traceparent: str | None = None
    """The W3C trace context of the event that made the snapshot; a target may pass it on (the webhook does)."""

    @property
    def needs_lookup(self) -> bool:
        """Look at the target before writing, unless the state is provably absent (never synced)."""
        if self.state_known_absent and self.target_state == TargetState():
            return False
        return self.target_state.needs_lookup


@dataclass(frozen=True)
class Synced:
    """The target holds this version; `remote_id` is what to store (Task Id, ticket id, receiver id)."""

    remote_id: str | None
    version: int


@dataclass(frozen=True)
class Skipped:
    """Nothing to do for this target (trigger not wanted, no ticket and creation disabled, ...)."""

    reason: str


@dataclass(frozen=True)
class Retry:
    """Transient: try again after `retry_after_s` (None: the loop's own back-off).

    `uncertain` means the write may have been applied; `remote_id` is set when part of the work
    is known to have landed (a ticket created before its comment failed). `target_unavailable`
    (an error code) says the target as a whole refused or could not be reached: the loop pauses
    the target instead of retrying or dead-lettering the record.
    """

    retry_after_s: float | None
    error: str
    uncertain: bool = False
    budget_exhausted: bool = False
    remote_id: str | None = None
    target_unavailable: str | None = None  # the target's error code when the whole target refused us


@dataclass(frozen=True)
class Failed:
    """Permanent: the record goes to the DLQ with the target's own error code."""

    code: str
    message: str


SyncOutcome = Synced | Skipped | Retry | Failed


@dataclass(frozen=True)
class BudgetLimits:
    """A target's API allowance, shared by every replica: requests per minute and per day."""

    per_minute: int
    per_day: int


@dataclass(frozen=True)
class TargetTraits:
    """What the sync engine plans a target's calls around; the defaults suit a target that writes
    each item with one request as soon as it is due."""

    budget: BudgetLimits | None = None  # None: never refused
    linger_s: float = 0.0  # hold due work up to this long to fill a call ...
    linger_items: int = 1  # ... unless this many items are waiting
    final_linger_s: float = 0.0  # at least this long for work whose trigger is finalized (nobody waits on it)
    settle_s: float = 0.0  # how long a write whose answer was lost may take to land (background jobs)
    concurrent_calls: int = 1  # calls in flight at once, each on interactions of its own
    side_call_items: int = 1  # records waiting before a call starts beside one under way


class Target(Protocol):
    name: str
    traits: TargetTraits

    def wants(self, snapshot: LogSnapshot) -> bool:
        """The trigger filter of DESIGN.md ("Sync triggers per target")."""
        ...

    def estimate_requests(self, items: Sequence[SyncItem]) -> int:
        """HTTP requests `sync(items)` will likely make (look-ups included): what the API budget charges."""
        ...

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        """One outcome per item, same order. Never raises for a per-record problem."""
        ...

    def close(self) -> None: ...


class IlogError(Exception):
    """Root of every error this software raises on purpose; the worker's leaves are in `worker.errors`."""


class SyncError(IlogError):
    """A target call failed."""


class RetryableSyncError(SyncError):
    """Transient; `uncertain` when the request may have been applied (timeout, dropped connection)."""

    def __init__(self, message: str, retry_after_s: float | None = None, *, uncertain: bool = False) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        self.uncertain = uncertain


class BudgetExhausted(RetryableSyncError):  # noqa: N818 - the name the sync loop and docs use
    """The target's API budget is spent (Salesforce REQUEST_LIMIT_EXCEEDED): pause, then retry."""


class TargetUnavailableError(SyncError):
    """The target as a whole refused us or cannot be reached; says nothing about the records.

    Credentials refused (Salesforce `invalid_client`/`invalid_grant`, a 401 right after a new login,
    a Zendesk 401), permission missing on every call (a 403 the API root repeats), the instance
    unknown (a 404 the API root repeats), DNS or TLS failing. `code` is the target's own code.
    """

    def __init__(self, code: str, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s


class PermanentSyncError(SyncError):
    """Retrying cannot help; `code` is the target's own error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def outcome_for_error(exc: SyncError, remote_id: str | None = None) -> SyncOutcome:
    """The outcome every item of a failed request gets."""
    if isinstance(exc, TargetUnavailableError):
        return Retry(retry_after_s=exc.retry_after_s, error=str(exc), remote_id=remote_id,
                     target_unavailable=exc.code)
    if isinstance(exc, RetryableSyncError):
        return Retry(
            retry_after_s=exc.retry_after_s,
            error=str(exc),
            uncertain=exc.uncertain,
            budget_exhausted=isinstance(exc, BudgetExhausted),
            remote_id=remote_id,
        )
    if isinstance(exc, PermanentSyncError):
        return Failed(code=exc.code, message=exc.message)
    return Failed(code="ERROR", message=str(exc))


def next_target_state(state: TargetState, outcome: SyncOutcome) -> TargetState:
    """What the sync loop stores after an outcome (Failed and Skipped leave the state as it was)."""
    if isinstance(outcome, Synced):
        return TargetState(remote_id=outcome.remote_id, synced_version=outcome.version, uncertain=False)
    if isinstance(outcome, Retry):
        remote_id = outcome.remote_id or state.remote_id
        return replace(state, remote_id=remote_id, uncertain=state.uncertain or outcome.uncertain)
    return state


def compute_backoff(
    attempt: int,
    retry_after_s: float | None = None,
    *,
    base_s: float = 0.5,
    cap_s: float = 60.0,
    jitter: float | None = None,
) -> float:
    """Seconds to wait before retry number `attempt` (1-based).

    Exponential with equal jitter, capped; a server's Retry-After is a floor that is always
    honoured (plus up to `base_s` of jitter so replicas do not return in lockstep).
    """
    fraction = random.random() if jitter is None else jitter
    if retry_after_s is not None and retry_after_s > 0:
        return retry_after_s + fraction * base_s
    exponential_s = min(cap_s, base_s * 2.0 ** max(0, attempt - 1))
    return exponential_s / 2 + fraction * exponential_s / 2


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
