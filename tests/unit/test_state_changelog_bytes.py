"""The state changelog carries the bytes the store holds: the planner's encoding, not a second one."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from schemas.decode import decode_event
from tests.fakes import FakeProducer
from worker.core.batch import Record, TtlPolicy, plan_batch
from worker.core.fold import finalize, tombstone_of
from worker.core.state import InteractionLog, StoredLog, as_log
from worker.fold.recovery import HEADER_TTL_MS, StateChangelog
from worker.kafka.clients import DeliveryTracker
from worker.store.wire import decode_state, encode_state

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=86_400_000, open_log_ttl_ms=604_800_000)


def _records(*events: tuple[str, str, int]) -> list[Record]:
    values = [json.dumps({"specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind,
                          "subject": subject, "time": (T0 + timedelta(seconds=n)).isoformat(), "data": {}}).encode()
              for kind, subject, n in events]
    return [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(values)]


def _changelog() -> tuple[StateChangelog, FakeProducer]:
    producer = FakeProducer([])
    return StateChangelog(producer, "events.state", DeliveryTracker(), TTL), producer  # type: ignore[arg-type]


def test_a_planned_write_goes_to_the_changelog_with_the_bytes_the_store_gets(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = plan_batch(_records(("log.opened", "c1", 1), ("log.opened", "c2", 2)), {}, edit_window_s=120,
                      applied_ids_kept=256, ttl=TTL, now_ms=0)
    changelog, producer = _changelog()
    encode = InteractionLog.to_bytes

    def not_again(log: InteractionLog) -> bytes:
        raise AssertionError("the planner's bytes were in hand: no second encoding")

    monkeypatch.setattr(InteractionLog, "to_bytes", not_again)
    changelog.record_writes(plan.writes, set(), lambda _interaction_id: 0)
    monkeypatch.setattr(InteractionLog, "to_bytes", encode)

    stored = {w.interaction_id: encode_state(w.state, w.document)[0] for w in plan.writes}
    assert {p.key: p.value for p in producer.produced} == stored
    assert all(w.document is not None and w.document == w.state.to_bytes() for w in plan.writes)
    assert [(p.topic, p.headers) for p in producer.produced] == [
        ("events.state", {HEADER_TTL_MS: b"%d" % w.ttl_ms}) for w in plan.writes
    ]


def test_a_state_without_bytes_in_hand_is_encoded_for_the_changelog() -> None:
    (write,) = plan_batch(_records(("log.opened", "c1", 1)), {}, edit_window_s=120, applied_ids_kept=256,
                          ttl=TTL, now_ms=0).writes
    assert isinstance(write.state, InteractionLog | StoredLog)
    changelog, producer = _changelog()

    changelog.record([(3, "c1", write.state, None, None)], now_ms=0)

    (produced,) = producer.produced
    assert (produced.key, produced.value, produced.headers) == (
        "c1", write.state.to_bytes(), {HEADER_TTL_MS: b"%d" % TTL.ttl_ms(write.state, 0)})


def test_the_writes_fenced_out_are_left_out_and_a_tombstone_goes_as_one() -> None:
    plan = plan_batch(_records(("log.opened", "c1", 1), ("log.opened", "c2", 2), ("log.opened", "c3", 3)), {},
                      edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=0)
    c1, c2, c3 = plan.writes
    assert isinstance(c3.state, InteractionLog | StoredLog)
    ended = c3._replace(state=tombstone_of(finalize(as_log(c3.state))), document=None, ttl_ms=5_000)
    changelog, producer = _changelog()

    changelog.record_writes([c1, c2, ended], {"c2"}, {"c1": 4, "c3": 5}.__getitem__)

    assert [(p.key, p.partition, p.value, p.headers) for p in producer.produced] == [
        ("c1", 4, c1.document, {HEADER_TTL_MS: b"%d" % c1.ttl_ms}),
        ("c3", 5, ended.state.to_bytes(), {HEADER_TTL_MS: b"5000"}),
    ]


def test_a_changelog_entry_says_its_kind_by_its_document_and_an_older_entrys_header_still_counts() -> None:
    """The kind header went (one header less per produced entry); entries of earlier versions carry it."""
    plan = plan_batch(_records(("log.opened", "c1", 1)), {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL,
                      now_ms=0)
    (write,) = plan.writes
    assert isinstance(write.state, InteractionLog | StoredLog)
    tombstone = tombstone_of(finalize(as_log(write.state)))
    assert write.document is not None
    log = as_log(write.state)
    assert [decode_state(write.document, None), decode_state(tombstone.to_bytes(), None)] == [log, tombstone]
    assert [decode_state(write.document, b"l"), decode_state(tombstone.to_bytes(), b"t")] == [log, tombstone]
