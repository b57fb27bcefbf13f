"""When a missing sync state is trusted as "never synced" (`worker.sync.epoch.state_known_absent`)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.snapshot import LogSnapshot
from worker.sync.epoch import AbsenceRule, Evidence, first_event_ms, state_known_absent

RULE = AbsenceRule(margin_ms=60_000, state_ttl_ms=86_400_000)
T = 1_800_000_000_000  # the interaction's first event
HOUR_MS = 3_600_000


@pytest.mark.parametrize(
    ("epoch_ms", "first_ms", "now_ms", "log_held", "trusted"),
    [
        (T - HOUR_MS, T, T + 5_000, True, True),  # live traffic: epoch long before, young, hash held
        (T - 60_000, T, T + 5_000, True, True),  # epoch exactly one margin before
        (T - 59_999, T, T + 5_000, True, False),  # inside the margin: clock skew could hide a write
        (T + 1_000, T, T + 5_000, True, False),  # epoch after the first event (Redis lost its data)
        (T - HOUR_MS, T, T + 86_400_000 - 60_001, True, True),  # just younger than TTL - margin
        (T - HOUR_MS, T, T + 86_400_000 - 60_000, True, False),  # old enough to have expired
        (T - HOUR_MS, T, T + 7 * 86_400_000, True, False),  # a replay of last week
        (None, T, T + 5_000, True, False),  # no epoch known
        (T - HOUR_MS, None, T + 5_000, True, False),  # no connected_at: unknown
        (T - HOUR_MS, T, T + 5_000, False, False),  # the hash was deleted or expired on its own
    ],
)
def test_absence_is_trusted_only_when_the_store_held_everything(
    epoch_ms: int | None, first_ms: int | None, now_ms: int, log_held: bool, trusted: bool,
) -> None:
    assert trusted is state_known_absent(Evidence(epoch_ms, first_ms, now_ms, log_held), RULE)


def test_a_ttl_shorter_than_the_margin_trusts_nothing() -> None:
    rule = AbsenceRule(margin_ms=60_000, state_ttl_ms=30_000)
    assert not state_known_absent(Evidence(T - HOUR_MS, T, T, True), rule)


def test_the_first_event_is_connected_at_and_none_without_it() -> None:
    connected = datetime(2027, 1, 15, 8, 0, 0, 250_000, tzinfo=UTC)
    snap = LogSnapshot.model_validate({"interaction_id": "c", "version": 1, "trigger": "finalized"})
    assert (None, int(connected.timestamp() * 1000)) == (
        first_event_ms(snap), first_event_ms(snap.model_copy(update={"connected_at": connected})))
