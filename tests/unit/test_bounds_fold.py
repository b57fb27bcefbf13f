"""Bounds the fold applies: event time against the wall clock, attributes per interaction, tombstone duplicates."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.decode import decode_event
from schemas.events import Event, Rejection, RejectReason
from worker.core.batch import Record, TtlPolicy, plan_batch
from worker.core.fold import Accepted, Duplicate, Rejected, finalize, fold, tombstone_of
from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import Stored
from worker.ops.offline import OfflineFold
from worker.store.wire import decode_state, encode_state

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
NOW_MS = int(T0.timestamp() * 1000)
SKEW_MS = 300_000
TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)


def raw(kind: str, n: int, at: datetime, data: dict[str, Any] | None = None, subject: str = "c1") -> bytes:
    return json.dumps({"specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind,
                       "subject": subject, "time": at.isoformat(), "data": data or {}}).encode()


def event(kind: str, n: int, at: datetime, data: dict[str, Any] | None = None, subject: str = "c1") -> Event:
    decoded = decode_event(raw(kind, n, at, data, subject))
    assert not isinstance(decoded, Rejection)
    return decoded


def records(*values: bytes) -> list[Record]:
    return [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(values)]


def plan(values: list[bytes], loaded: dict[str, Stored] | None = None) -> Any:
    return plan_batch(records(*values), loaded or {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL,
                      now_ms=NOW_MS, max_skew_ms=SKEW_MS)


@pytest.mark.parametrize(("ahead", "rejected"), [
    (timedelta(0), False), (timedelta(milliseconds=SKEW_MS), False),
    (timedelta(milliseconds=SKEW_MS, microseconds=999), False),  # whole milliseconds ahead count, as `future_time`'s
    (timedelta(milliseconds=SKEW_MS + 1), True), (timedelta(days=365 * 73), True),
])
def test_an_event_timed_more_than_the_skew_ahead_of_the_wall_clock_is_future_time(
    ahead: timedelta, rejected: bool,
) -> None:
    result = plan([raw("log.opened", 1, T0 + ahead)])
    if rejected:
        assert [(r.reason, r.event_id) for _, r in result.rejections] == [(RejectReason.FUTURE_TIME, "c1-1")]
        assert (result.writes, result.snapshots) == ([], [])
    else:
        assert (result.rejections, [s.interaction_id for _, s in result.snapshots]) == ([], ["c1"])


def test_a_future_event_does_not_advance_the_partition_clock() -> None:
    result = plan([raw("log.opened", 1, T0 - timedelta(seconds=5)),
                   raw("log.opened", 2, datetime(2099, 1, 1, tzinfo=UTC), subject="c2")])
    assert result.max_event_time == {0: T0 - timedelta(seconds=5)}
    (_record, rejection), = result.rejections
    assert rejection == Rejection(
        "c2-2", "c2", RejectReason.FUTURE_TIME,
        "time: 2099-01-01T00:00:00Z is 2275135200 s ahead of the worker's clock (2026-11-27T10:00:00Z); "
        "at most 300 s allowed")


def test_without_a_skew_bound_plan_batch_folds_future_events_as_before() -> None:
    result = plan_batch(records(raw("log.opened", 1, datetime(2099, 1, 1, tzinfo=UTC))), {}, edit_window_s=120,
                        applied_ids_kept=256, ttl=TTL, now_ms=NOW_MS)
    assert result.rejections == [] and len(result.writes) == 1


REPLAYED_MS = NOW_MS + 2 * 86_400_000  # a replay's wall clock, two days after the events were sent


@pytest.mark.parametrize(("ahead", "stamp_ms", "message_clock", "rejected"), [
    (timedelta(hours=1), NOW_MS, True, True),  # rejected live, when it came: rejected replayed
    (timedelta(milliseconds=SKEW_MS), NOW_MS, True, False),
    (timedelta(milliseconds=SKEW_MS + 1), NOW_MS, True, True),
    (timedelta(hours=1), None, True, False),  # no timestamp: the replay's own wall clock, as before
    (timedelta(hours=1), NOW_MS, False, False),  # live: the wall clock alone
], ids=["hour-ahead", "at-the-skew", "past-the-skew", "no-timestamp", "live"])
def test_a_replay_judges_future_time_against_the_message_timestamp_not_its_own_wall_clock(
    ahead: timedelta, stamp_ms: int | None, message_clock: bool, rejected: bool,
) -> None:
    value = raw("log.opened", 1, T0 + ahead)
    result = plan_batch([Record("events", 0, 0, value, [], decode_event(value), stamp_ms)], {}, edit_window_s=120,
                        applied_ids_kept=256, ttl=TTL, now_ms=REPLAYED_MS, max_skew_ms=SKEW_MS,
                        message_clock=message_clock)
    assert ([RejectReason.FUTURE_TIME] if rejected else []) == [r.reason for _, r in result.rejections]
    assert ({} if rejected else {0: T0 + ahead}) == result.max_event_time


def test_a_replayed_batch_judges_each_event_against_its_own_message_timestamp() -> None:
    """One batch of records whose timestamps lie hours apart: each event is judged against its own message's."""
    hour, past_skew = timedelta(hours=1), timedelta(milliseconds=SKEW_MS + 1)
    items = [(1, T0 + past_skew, NOW_MS), (2, T0 + 2 * hour, NOW_MS + 7_200_000),
             (3, T0 + 2 * hour + past_skew, NOW_MS + 7_200_000), (4, T0 + hour, None)]
    batch = [Record("events", 0, n, value, [], decode_event(value), stamp_ms)
             for n, at, stamp_ms in items for value in [raw("log.opened", n, at, subject=f"c{n}")]]
    result = plan_batch(batch, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=REPLAYED_MS,
                        max_skew_ms=SKEW_MS, message_clock=True)
    assert [(r.event_id, r.reason) for _, r in result.rejections] == [
        ("c1-1", RejectReason.FUTURE_TIME), ("c3-3", RejectReason.FUTURE_TIME)]
    assert sorted(s.interaction_id for _, s in result.snapshots) == ["c2", "c4"]


def test_a_replayed_future_time_names_the_message_timestamp_it_was_judged_against() -> None:
    value = raw("log.opened", 1, T0 + timedelta(hours=1))
    result = plan_batch([Record("events", 0, 0, value, [], decode_event(value), NOW_MS)], {}, edit_window_s=120,
                        applied_ids_kept=256, ttl=TTL, now_ms=REPLAYED_MS, max_skew_ms=SKEW_MS, message_clock=True)
    assert [Rejection("c1-1", "c1", RejectReason.FUTURE_TIME,
                      "time: 2026-11-27T11:00:00Z is 3600 s ahead of its Kafka message's timestamp "
                      "(2026-11-27T10:00:00Z); at most 300 s allowed")] == [r for _, r in result.rejections]


def test_offline_fold_rejects_future_events_against_its_own_wall_clock() -> None:
    offline = OfflineFold(120, now_ms=NOW_MS, max_skew_ms=SKEW_MS)
    offline.apply_lines([(1, raw("log.opened", 1, T0)), (2, raw("log.opened", 2, T0 + timedelta(hours=1)))])
    assert [(line, r.reason) for line, r in offline.rejections] == [(2, RejectReason.FUTURE_TIME)]
    assert list(offline.logs) == ["c1"]


def attributes(count: int, prefix: str) -> dict[str, Any]:
    return {"attributes": {f"{prefix}{i}": "v" for i in range(count)}}


@pytest.mark.parametrize(("first", "second", "keys_after", "rejected"), [
    (60, attributes(40, "b"), 100, False),
    (60, attributes(41, "b"), 101, True),
    (100, attributes(100, "a"), 100, False),  # the same keys again, new values
    (100, attributes(1, "b"), 101, True),
], ids=["exactly-100", "101", "same-keys-at-100", "one-new-key-at-100"])
def test_attributes_per_interaction_are_bounded_at_100_keys(
    first: int, second: dict[str, Any], keys_after: int, rejected: bool,
) -> None:
    before = fold(None, event("interaction.attributes", 1, T0, attributes(first, "a")), edit_window_s=120).log
    assert isinstance(before, InteractionLog)
    result = fold(before, event("interaction.attributes", 2, T0, second), edit_window_s=120)
    if rejected:
        assert result.log is before
        assert result.outcome == Rejected(Rejection(
            "c1-2", "c1", RejectReason.TOO_LARGE,
            f"data.attributes: the interaction would hold {keys_after} attribute keys, at most 100 allowed"))
    else:
        assert isinstance(result.outcome, Accepted) and isinstance(result.log, InteractionLog)
        assert len(result.log.attributes) == keys_after


def closed_log() -> InteractionLog:
    log: InteractionLog | Tombstone | None = None
    for n, kind in enumerate(("interaction.connected", "log.opened", "interaction.disconnected"), start=1):
        data = {"media": "voice", "direction": "inbound"} if kind == "interaction.connected" else {}
        log = fold(log, event(kind, n, T0 + timedelta(seconds=n), data), edit_window_s=120).log
    assert isinstance(log, InteractionLog)
    return finalize(log)


def test_an_applied_event_read_again_after_finalization_is_a_duplicate_any_other_is_window_closed() -> None:
    tombstone = tombstone_of(closed_log())
    assert tombstone.applied_ids == ("c1-1", "c1-2", "c1-3")
    again = fold(tombstone, event("log.opened", 2, T0 + timedelta(seconds=2)), edit_window_s=120)
    assert (again.log, again.outcome) == (tombstone, Duplicate())
    late = fold(tombstone, event("log.opened", 9, T0 + timedelta(seconds=9)), edit_window_s=120)
    assert isinstance(late.outcome, Rejected) and late.outcome.rejection.reason is RejectReason.WINDOW_CLOSED


def test_a_reread_batch_against_a_tombstone_is_duplicates_with_no_dead_letters_and_no_writes() -> None:
    tombstone = tombstone_of(closed_log())
    values = [raw("interaction.connected", 1, T0 + timedelta(seconds=1), {"media": "voice", "direction": "inbound"}),
              raw("log.opened", 2, T0 + timedelta(seconds=2))]
    result = plan(values, {"c1": Stored(4, tombstone)})
    assert (result.rejections, result.writes, result.snapshots, result.duplicates) == ([], [], [], 2)


def test_a_tombstone_keeps_its_ids_through_its_bytes_and_old_tombstones_still_read() -> None:
    tombstone = tombstone_of(closed_log())
    assert decode_state(*encode_state(tombstone)) == tombstone
    old = Tombstone("c1", 4, T0)
    assert old.to_bytes() == b'{"k":"tomb","i":"c1","v":4,"at":%d}' % (NOW_MS * 1000)
    assert decode_state(*encode_state(old)) == old
