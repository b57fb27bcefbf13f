"""InteractionLog and Tombstone bytes: exact round trips, compact enough for Redis."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from schemas.log import InteractionLog, Tombstone, from_us, state_from_bytes, to_us
from tests.unit.test_fold_rules import connected, ev, ref, run

REDIS_OVERHEAD_BYTES = 200  # key, hash-tag, TTL and dict entry, generously
TYPICAL_OPEN_LOG_LIMIT_BYTES = 2048


def _typical_open_call() -> InteractionLog:
    events = [connected("10:00:00", seq=1, name=ref("Contact", "0035g00000AbCdE"), queue="Support")]
    clocks = ["10:00:20", "10:00:40", "10:01:00", "10:01:30", "10:02:00"]
    for seq, clock in enumerate(clocks, start=2):
        events.append(ev("record.viewed", clock, {"record": ref("Case", f"5005g00000XyZ{seq}")}, seq=seq,
                         event_id=f"3f2b8c1e-6a0d-4a59-9d43-1c5e8b7f00{seq:02d}"))
    events += [ev("interaction.held", "10:02:30", seq=8), ev("interaction.resumed", "10:03:00", seq=9),
               ev("log.updated", "10:03:30", {"notes": "Customer asked for a refund of the last invoice; "
                                                        "agreed to call back on Monday."}, seq=10),
               ev("interaction.attributes", "10:03:40", {"attributes": {"tier": "gold", "lang": "de"}}, seq=11)]
    log, _ = run(events)
    assert isinstance(log, InteractionLog)
    return log


def test_log_round_trips_through_bytes() -> None:
    log = _typical_open_call()
    assert InteractionLog.from_bytes(log.to_bytes()) == log
    assert state_from_bytes(log.to_bytes()) == log


def test_typical_open_interaction_fits_in_two_kilobytes_with_redis_overhead() -> None:
    assert len(_typical_open_call().to_bytes()) + REDIS_OVERHEAD_BYTES <= TYPICAL_OPEN_LOG_LIMIT_BYTES


def test_tombstone_round_trips_and_is_small() -> None:
    tombstone = Tombstone("conv-42", 9, datetime(2026, 11, 27, 10, 7, tzinfo=UTC))
    raw = tombstone.to_bytes()
    assert Tombstone.from_bytes(raw) == tombstone and state_from_bytes(raw) == tombstone
    assert len(raw) < 80


@pytest.mark.parametrize("raw", [b"{}", b'{"k":"tomb"}', b'{"k":"log","i":"x"}', b"[]"])
def test_corrupt_state_bytes_raise_value_error(raw: bytes) -> None:
    with pytest.raises(ValueError):
        state_from_bytes(raw)


def test_microsecond_conversion_is_exact() -> None:
    moment = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert from_us(to_us(moment)) == moment
