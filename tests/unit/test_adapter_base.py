"""Outcomes, the stored target state and back-off: the contract between adapters and the sync loop."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from adapters.base import (
    BudgetExhausted,
    Failed,
    PermanentSyncError,
    Retry,
    RetryableSyncError,
    Skipped,
    Synced,
    SyncOutcome,
    TargetState,
    compute_backoff,
    next_target_state,
    outcome_for_error,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("state", "needs_lookup"),
    [
        (TargetState(), True),  # no state: unknown, never "not created"
        (TargetState(remote_id="00T1", synced_version=3), False),
        (TargetState(remote_id=None, synced_version=2), True),
        (TargetState(remote_id=None, synced_version=0, uncertain=True), True),
        (TargetState(remote_id="00T1", synced_version=3, uncertain=True), True),
    ],
)
def test_lookup_is_needed_unless_the_remote_id_is_known_for_sure(state: TargetState, needs_lookup: bool) -> None:
    assert state.needs_lookup is needs_lookup


@pytest.mark.parametrize(
    ("state", "outcome", "expected"),
    [
        (TargetState(), Synced("00T1", 4), TargetState("00T1", 4, False)),
        (TargetState("00T1", 2, True), Synced("00T1", 5), TargetState("00T1", 5, False)),
        (TargetState(), Retry(3.0, "timeout", uncertain=True), TargetState(None, 0, True)),
        (TargetState(None, 0, True), Retry(None, "503"), TargetState(None, 0, True)),
        (TargetState(), Retry(None, "comment timed out", uncertain=True, remote_id="77"), TargetState("77", 0, True)),
        (TargetState("00T1", 2), Failed("STRING_TOO_LONG", "Subject"), TargetState("00T1", 2)),
        (TargetState("00T1", 2), Skipped("trigger updated"), TargetState("00T1", 2)),
    ],
)
def test_next_state_keeps_uncertainty_until_a_sync_succeeds(
    state: TargetState, outcome: SyncOutcome, expected: TargetState
) -> None:
    assert next_target_state(state, outcome) == expected


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RetryableSyncError("HTTP 503", 2.0), Retry(2.0, "HTTP 503")),
        (RetryableSyncError("timeout", uncertain=True), Retry(None, "timeout", uncertain=True)),
        (BudgetExhausted("REQUEST_LIMIT_EXCEEDED", 60.0), Retry(60.0, "REQUEST_LIMIT_EXCEEDED", budget_exhausted=True)),
        (PermanentSyncError("STRING_TOO_LONG", "Subject"), Failed("STRING_TOO_LONG", "Subject")),
    ],
)
def test_errors_become_outcomes(error: RetryableSyncError | PermanentSyncError, expected: SyncOutcome) -> None:
    assert outcome_for_error(error) == expected


def test_budget_exhausted_is_a_retryable_error() -> None:
    assert issubclass(BudgetExhausted, RetryableSyncError)


@pytest.mark.parametrize(
    ("attempt", "retry_after_s", "jitter", "expected_s"),
    [
        (1, None, 0.0, 0.25),
        (1, None, 1.0, 0.5),
        (2, None, 0.0, 0.5),
        (4, None, 1.0, 4.0),
        (20, None, 1.0, 60.0),
        (20, None, 0.0, 30.0),
        (1, 7.0, 0.0, 7.0),
        (9, 7.0, 1.0, 7.5),
        (1, 0.0, 0.0, 0.25),
    ],
)
def test_backoff_is_exponential_capped_and_honours_retry_after(
    attempt: int, retry_after_s: float | None, jitter: float, expected_s: float
) -> None:
    assert compute_backoff(attempt, retry_after_s, jitter=jitter) == pytest.approx(expected_s)


def test_backoff_without_given_jitter_stays_within_bounds() -> None:
    delays = [compute_backoff(3) for _ in range(200)]
    assert all(1.0 <= delay <= 2.0 for delay in delays)


NOW = datetime(2026, 11, 27, 10, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("5", 5.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("Fri, 27 Nov 2026 10:00:30 GMT", 30.0),
        ("Fri, 27 Nov 2026 09:00:00 GMT", 0.0),
        ("soon", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now=NOW) == expected
