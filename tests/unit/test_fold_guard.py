"""An event a rule of the fold raises on stops only itself: dead-lettered `invalid` with the error, the log as it
was before it, every other event applied (the fold stage's planner and `ilog fold` alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.decode import decode_event
from schemas.events import RejectReason
from schemas.fast import AnyEvent
from worker.core import fold as fold_module
from worker.core import native
from worker.core.batch import Record, TtlPolicy, plan_batch
from worker.core.fold import FoldResult
from worker.core.state import InteractionLog, Tombstone
from worker.ops.offline import OfflineFold

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=86_400_000, open_log_ttl_ms=604_800_000)
EVENTS = [  # (id, type, subject, data)
    ("e1", "interaction.connected", "c1", {"media": "voice", "direction": "inbound"}),
    ("e2", "log.updated", "c1", {"notes": "the rules fail on this one"}),
    ("e3", "interaction.held", "c1", {}),
    ("e4", "log.opened", "c2", {}),
]


def _lines() -> list[bytes]:
    return [json.dumps({"specversion": "1.0", "id": event_id, "source": "/t", "type": kind, "subject": subject,
                        "time": (T0 + timedelta(seconds=n)).isoformat(), "data": data}).encode()
            for n, (event_id, kind, subject, data) in enumerate(EVENTS)]


@pytest.fixture
def failing_on_e2(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The rules raise on event e2 (as a bug would); the Python alone folds, as it does for what the compiled
    fold leaves to it."""
    rules = fold_module.fold

    def fold(state: InteractionLog | Tombstone | None, event: AnyEvent, **options: Any) -> FoldResult:
        if event.id == "e2":
            raise RuntimeError("boom")
        return rules(state, event, **options)

    monkeypatch.setattr(fold_module, "fold", fold)
    with native.python_only():
        yield


@pytest.mark.usefixtures("failing_on_e2")
def test_the_planner_dead_letters_the_event_the_rules_raise_on_and_applies_the_rest() -> None:
    records = [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(_lines())]

    plan = plan_batch(records, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=0)

    ((record, rejection),) = plan.rejections
    assert (record.offset, rejection.event_id, rejection.subject, rejection.reason) == (1, "e2", "c1",
                                                                                       RejectReason.INVALID)
    assert rejection.message.startswith("log.updated: the worker failed to fold this event (RuntimeError: boom)")
    logs = {w.interaction_id: w.state for w in plan.writes}
    c1 = logs["c1"]
    assert isinstance(c1, InteractionLog)
    assert (c1.version, c1.applied_ids, c1.notes) == (2, ("e1", "e3"), None)
    assert set(logs) == {"c1", "c2"}


@pytest.mark.usefixtures("failing_on_e2")
def test_ilog_fold_rejects_it_the_same_way() -> None:
    offline = OfflineFold(edit_window_s=120)

    offline.apply_lines(enumerate(_lines(), start=1))

    ((line_number, rejection),) = offline.rejections
    assert (line_number, rejection.event_id, rejection.reason) == (2, "e2", RejectReason.INVALID)
    c1 = offline.logs["c1"]
    assert isinstance(c1, InteractionLog) and c1.applied_ids == ("e1", "e3")


def test_without_a_failing_rule_nothing_is_rejected() -> None:
    offline = OfflineFold(edit_window_s=120)
    offline.apply_lines(enumerate(_lines(), start=1))
    assert offline.rejections == []
    c1 = offline.logs["c1"]
    assert isinstance(c1, InteractionLog) and c1.applied_ids == ("e1", "e2", "e3")
