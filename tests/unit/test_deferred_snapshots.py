"""Snapshots written on the compiled core's thread (`plan_batch(..., defer_snapshots=True)`, `settle_snapshots`):
the same plan as written at once, the bound that lets a snapshot be left for later, and the fall-backs."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from schemas.common import Trigger
from schemas.decode import Rejection, decode_event
from tests.unit.test_native_snapshot import _versions, core, histories
from worker.core import native
from worker.core.batch import (
    DEFER_AT_LEAST,
    BatchPlan,
    DeferredSnapshots,
    Record,
    TtlPolicy,
    plan_batch,
    settle_snapshots,
)
from worker.core.bounds import SNAPSHOT_OVER_STATE_BYTES, snapshot_surely_fits
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, StoredLog, as_log

pytestmark = [pytest.mark.unit, pytest.mark.usefixtures("compiled_core")]  # the compiled core's thread is under test

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)
CONNECTED = {"media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "a-1",
             "customer": {"address": "+4930123", "name": "Ada \"Example\"\n"}}


def _event(kind: str, subject: str, n: int, seconds: float, data: dict[str, Any] | None = None) -> bytes:
    return json.dumps({
        "specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind, "subject": subject,
        "time": (T0 + timedelta(seconds=seconds)).isoformat(), "sequence": n, "data": data or {},
    }).encode()


def _records(interactions: int) -> list[Record]:
    values = []
    for i in range(interactions):
        subject = f"conv-{i}"
        values += [_event("interaction.connected", subject, 1, i, CONNECTED),
                   _event("record.viewed", subject, 2, i + 1, {"record": {"system": "salesforce", "type": "Case",
                                                                          "id": f"500{i}"}}),
                   _event("log.updated", subject, 3, i + 2, {"notes": f"note {i} é😀"})]
    values.append(_event("interaction.held", "conv-0", 4, 5))  # a later event of the first interaction
    return [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(values)]


def _plan(records: list[Record], *, defer: bool, max_snapshot_bytes: int | None = 900_000) -> BatchPlan:
    return plan_batch(records, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=0,
                      max_snapshot_bytes=max_snapshot_bytes, defer_snapshots=defer)


def _payloads(plan: BatchPlan) -> list[tuple[str, int, Trigger, bytes]]:
    return [(s.interaction_id, s.version, s.trigger, s.payload) for _, s in plan.snapshots]


def test_a_batch_written_on_the_thread_settles_to_the_plan_written_at_once() -> None:
    core()  # the compiled core is installed
    records = _records(DEFER_AT_LEAST + 6)
    at_once = _plan(records, defer=False)
    later = _plan(records, defer=True)
    assert at_once.deferred is None
    assert later.deferred is not None and len(later.deferred.entries) == DEFER_AT_LEAST + 6
    assert all(s.payload == b"" for _, s in later.snapshots)  # nothing to read before settling
    assert [w.document for w in later.writes] == [w.document for w in at_once.writes]
    assert settle_snapshots(later) is later and later.deferred is None
    assert _payloads(later) == _payloads(at_once)
    with native.python_only():
        assert [snapshot_json(as_log(w.state), s.trigger)
                for w, (_, s) in zip(later.writes, later.snapshots, strict=True)
                if isinstance(w.state, InteractionLog | StoredLog)] == [p for *_, p in _payloads(later)]
    assert settle_snapshots(later) is later and _payloads(later) == _payloads(at_once)  # settled once


def test_a_short_batch_and_the_python_alone_write_at_once() -> None:
    records = _records(DEFER_AT_LEAST - 1)
    assert _plan(records, defer=True).deferred is None
    assert _payloads(_plan(records, defer=True)) == _payloads(_plan(records, defer=False))
    with native.python_only():
        plan = _plan(_records(DEFER_AT_LEAST + 1), defer=True)
    assert plan.deferred is None and all(s.payload for _, s in plan.snapshots)


def test_a_snapshot_that_might_not_fit_is_written_and_checked_at_once() -> None:
    records = _records(DEFER_AT_LEAST + 1)
    documents = [w.document for w in _plan(records, defer=False).writes]
    assert all(d is not None for d in documents)
    largest = max(len(d) for d in documents if d is not None)
    tight = 2 * largest + SNAPSHOT_OVER_STATE_BYTES  # below the sure bound of the largest, above its snapshot
    plan = _plan(records, defer=True, max_snapshot_bytes=tight)
    assert plan.deferred is not None
    assert len(plan.deferred.entries) == len([d for d in documents if d is not None
                                             and snapshot_surely_fits(d, tight)]) < len(documents)
    settle_snapshots(plan)
    assert _payloads(plan) == _payloads(_plan(records, defer=False, max_snapshot_bytes=tight))


def test_what_the_thread_leaves_to_the_log_is_written_from_it() -> None:
    job = core().snapshots_from_states([(b'{"k":"log"}', "updated"), (b"not json", "created")])
    assert job.wait() == [None, None]
    with pytest.raises(RuntimeError, match="waited for already"):
        job.wait()
    plan = _plan(_records(2), defer=False)
    expected = _payloads(plan)
    logs = [(index, w.state, s.trigger) for index, (w, (_, s)) in enumerate(zip(plan.writes, plan.snapshots,
                                                                              strict=True))]
    plan.snapshots = [(p, s._replace(payload=b"")) for p, s in plan.snapshots]

    class Declines:
        def wait(self) -> list[bytes | None]:
            return [None] * len(logs)

    entries = [(index, log, trigger) for index, log, trigger in logs if isinstance(log, InteractionLog | StoredLog)]
    plan.deferred = DeferredSnapshots(Declines(), entries)
    assert _payloads(settle_snapshots(plan)) == expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_a_snapshot_is_at_most_twice_its_document_and_the_bound(events: list[Any]) -> None:
    for log in _versions(events):
        with native.python_only():
            document = log.to_bytes()
            for trigger in Trigger:
                assert len(snapshot_json(log, trigger)) <= 2 * len(document) + SNAPSHOT_OVER_STATE_BYTES


def test_the_bound_holds_for_the_longest_escaped_texts() -> None:
    worst = "\x01" * 255  # 6 bytes each, escaped
    subject = worst[:250]  # its event ids are the subject and a number: within 255 characters
    connected = dict(CONNECTED, customer={"name": worst}, queue=worst, agent_id=worst)
    values = [_event("interaction.connected", subject, 1, 0, connected),
              _event("log.updated", subject, 2, 1, {"notes": worst * 40}),
              _event("interaction.wrapup", subject, 3, 2, {"code": worst, "note": worst}),
              _event("interaction.disconnected", subject, 4, 3)]
    for index in range(5):
        values.append(_event("record.viewed", subject, 10 + index, 1, {
            "record": {"system": "custom", "type": worst[:80], "id": worst[:254] + str(index)}}))
    events = [decode_event(value) for value in values]
    assert not [event for event in events if isinstance(event, Rejection)]
    logs = _versions(events)
    assert len(logs) == len(values) + 1
    for log in logs:
        with native.python_only():
            document = log.to_bytes()
            assert max(len(snapshot_json(log, trigger)) for trigger in Trigger) \
                <= 2 * len(document) + SNAPSHOT_OVER_STATE_BYTES
