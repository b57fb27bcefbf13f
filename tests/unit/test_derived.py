"""What a log keeps in its `Derived` never changes what it serializes to.

The snapshot JSON is compared with the model's JSON of `snapshot()`, which derives every visible field
from the facts afresh (what `snapshot_json` gave before it kept encoded parts), over generated histories:
at every version, with the fold's and a coalesced trigger, in the order the stage meets them, for logs
read back from their stored bytes, and for versions that branch from one log (the planner folds a batch
a second time from the same loaded states when a change cannot be encoded). The stored bytes are
compared with those of the same log without its `Derived`.
"""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import Trigger
from schemas.decode import Rejection, decode_event
from schemas.events import Event
from tests.unit.test_fold_rules import connected, ev, ref
from worker.core import native
from worker.core.bounds import ENCODE_ERRORS
from worker.core.fold import Accepted, finalize, fold
from worker.core.snapshot import snapshot
from worker.core.snapshot_json import _Parts, snapshot_json
from worker.core.state import Derived, InteractionLog, Stamp, Tombstone, Transition, evolve_log, to_us
from worker.dev.generator import GeneratorMix, generate_histories

WINDOW_S = 120
MIX = GeneratorMix(duplicate_ratio=0.1, shuffle_within_interaction=True, late_edit_ratio=0.1,
                   zendesk_ratio=0.3, queue_ratio=0.5, outbound_ratio=0.4)
START = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)


def _reference_json(log: InteractionLog, trigger: Trigger | None = None) -> bytes:
    """The snapshot as the model gives it, every field derived afresh from the facts (`snapshot`)."""
    return snapshot(replace(log, derived=None), trigger).to_json_bytes()


def _fold_history(history: list[dict[str, Any]], on_version: Any) -> InteractionLog | None:
    """Fold the history; `on_version(log, trigger)` right after each accepted event, as the stage encodes."""
    state: InteractionLog | None = None
    for item in history:
        event = decode_event(json.dumps(item).encode())
        assert not isinstance(event, Rejection)
        result = fold(state, event, edit_window_s=WINDOW_S)
        if isinstance(result.outcome, Accepted):
            assert isinstance(result.log, InteractionLog)
            state = result.log
            on_version(state, result.outcome.trigger)
    return state


def _histories(seed: int, count: int) -> list[list[dict[str, Any]]]:
    return generate_histories(count, seed=seed, start=START, rate_per_s=5, mix=MIX)


def test_snapshots_equal_the_previous_derivation_at_every_version_as_the_stage_meets_them() -> None:
    mismatches: list[tuple[str, int]] = []
    versions = [0]

    def check(log: InteractionLog, trigger: Trigger) -> None:
        versions[0] += 1
        for chosen in (trigger, Trigger.UPDATED):  # the fold's trigger, and a batch's coalesced one
            if snapshot_json(log, chosen) != _reference_json(log, chosen):
                mismatches.append((log.interaction_id, log.version))

    for history in _histories(seed=21, count=100):
        last = _fold_history(history, check)
        if last is not None:
            check(finalize(last), Trigger.FINALIZED)
    assert versions[0] > 1000
    assert [] == mismatches


@settings(max_examples=30, deadline=None)
@given(st.integers(min_value=0, max_value=100_000))
def test_any_seeds_snapshots_equal_the_previous_derivation(seed: int) -> None:
    pairs: list[tuple[bytes, bytes]] = []
    for history in _histories(seed=seed, count=3):
        _fold_history(history, lambda log, trigger: pairs.append((snapshot_json(log, trigger),
                                                                  _reference_json(log, trigger))))
    assert [reference for _new, reference in pairs] == [new for new, _reference in pairs]


def test_versions_branching_from_one_log_each_serialize_as_their_own_facts() -> None:
    """Successors of one log share its `Derived`; asking them in turn never serves one's parts to another."""
    histories = _histories(seed=4, count=30)
    checked = 0
    for history in histories:
        logs: list[InteractionLog] = []
        _fold_history(history, lambda log, _trigger, into=logs: into.append(log))
        events = [decode_event(json.dumps(item).encode()) for item in history]
        for base, later in pairwise(logs):
            branches = [fold(base, event, edit_window_s=WINDOW_S).log for event in events
                        if not isinstance(event, Rejection)]
            branches = [b for b in branches if isinstance(b, InteractionLog) and b is not base]
            for log in [*branches, base, later, *reversed(branches)]:
                assert isinstance(log, InteractionLog)
                assert _reference_json(log) == snapshot_json(log)
                assert replace(log, derived=None).to_bytes() == log.to_bytes()
                checked += 1
    assert checked > 1000


def test_a_log_read_back_from_its_bytes_serializes_as_before_and_hands_its_parts_on() -> None:
    for history in _histories(seed=8, count=20):
        stored: list[InteractionLog] = []
        _fold_history(history, lambda log, _trigger, into=stored: into.append(log))
        for log in stored:
            read = InteractionLog.from_bytes(log.to_bytes())
            assert read.derived is None
            assert (log.to_bytes(), snapshot_json(log)) == (read.to_bytes(), snapshot_json(read))
            assert _reference_json(read) == snapshot_json(read)


def _versions(events: list[Event]) -> list[InteractionLog]:
    """Each version after an event, snapshot and stored bytes taken at once, as the stage does."""
    logs: list[InteractionLog] = []
    state: InteractionLog | Tombstone | None = None
    for event in events:
        state = fold(state, event, edit_window_s=WINDOW_S).log
        assert isinstance(state, InteractionLog)
        assert _reference_json(state) == snapshot_json(state)
        assert replace(state, derived=None).to_bytes() == state.to_bytes()
        logs.append(state)
    return logs


def test_a_late_disconnect_takes_the_records_viewed_after_it_out_of_name_and_related_to() -> None:
    logs = _versions([
        connected("10:00:00"),
        ev("record.viewed", "10:01:00", {"record": ref("Case", "500B")}),
        ev("record.viewed", "10:05:00", {"record": ref("Case", "500A")}),
        ev("record.viewed", "10:06:00", {"record": ref("Contact", "003A")}),
        ev("interaction.disconnected", "10:03:00"),  # arrives last; the views after it no longer count
    ])
    before, after = json.loads(snapshot_json(logs[-2])), json.loads(snapshot_json(logs[-1]))
    assert (before["related_to"]["id"], before["name"]["id"]) == ("500A", "003A")
    assert (after["related_to"]["id"], after["name"]) == ("500B", None)
    assert ([c["id"] for c in after["related_candidates"]], after["name_candidates"]) == (["500B"], [])


def test_an_earlier_connect_arriving_late_moves_the_window_and_the_timeline() -> None:
    logs = _versions([
        ev("record.viewed", "10:00:30", {"record": ref("Case", "500C")}),
        ev("interaction.held", "10:01:00"),
        connected("10:02:00", queue="Support"),
        ev("log.updated", "10:02:30", {"notes": "queue notes"}),
        ev("interaction.wrapup", "10:02:40", {"code": "Resolved", "note": "wrap"}),
        connected("10:00:00", queue="Billing"),  # the first connect by event time wins
        ev("interaction.resumed", "10:03:00"),
        ev("interaction.disconnected", "10:04:00"),
        ev("interaction.connected", "10:05:00", {"media": "chat", "direction": "outbound"}),  # ignored
    ])
    last = json.loads(snapshot_json(logs[-1]))
    assert (last["queue"], last["related_to"]["id"], last["wrapup_note"], last["ignored_reconnects"]) \
        == ("Billing", "500C", "queue notes", 1)
    assert json.loads(snapshot_json(logs[2]))["related_to"] is None  # viewed before the (then) connect


def test_a_snapshot_that_cannot_be_encoded_leaves_the_next_ones_right() -> None:
    base = _versions([connected("10:00:00"), ev("record.viewed", "10:05:00", {"record": ref("Case", "500A")})])[-1]
    broken = evolve_log(base, base.version + 1, Trigger.UPDATED, base.applied_ids, base.last_event_us,
                        {"notes": (Stamp(-1, 1, base.version + 1), "lone \ud800 surrogate"),
                         "transitions": (*base.transitions, Transition(to_us(datetime(2026, 11, 27, 10, 3, tzinfo=UTC)),
                                                                       -1, base.version + 1, "D"))})
    with pytest.raises(ENCODE_ERRORS):
        snapshot_json(broken)
    later = fold(base, ev("interaction.disconnected", "10:03:00"), edit_window_s=WINDOW_S).log
    assert isinstance(later, InteractionLog)
    assert _reference_json(later) == snapshot_json(later)
    assert json.loads(snapshot_json(later))["related_to"] is None  # viewed after the disconnect


def test_what_a_log_keeps_encoded_takes_the_size_of_its_json_not_of_a_write_buffer() -> None:
    """orjson's results keep their whole write buffer; ~20,000 open logs would hold ~12 KiB each for nothing.
    The Python's snapshot parts: the compiled core's snapshot keeps nothing beside the log."""
    with native.python_only():
        log = _versions([connected("10:00:00"), ev("record.viewed", "10:01:00", {"record": ref("Case", "500B")}),
                         ev("interaction.attributes", "10:02:00", {"attributes": {"tier": "gold"}}),
                         ev("interaction.held", "10:03:00")])[-1]
        copies = [replace(log, derived=None) for _ in range(50)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for copy in copies:
                copy.to_bytes()
                snapshot_json(copy)
            kept_bytes = (tracemalloc.get_traced_memory()[0] - before) / len(copies)
        finally:
            tracemalloc.stop()
        assert log.derived is not None
        kept: list[tuple[object, str]] = [(log.derived, name) for name in Derived.__slots__]
        kept += [(log.derived.snapshot, name) for name in _Parts.__slots__]
        json_bytes: int = sum(len(getattr(holder, name)) for holder, name in kept if name.endswith("_json"))
        assert json_bytes < kept_bytes < json_bytes + 2_000  # the JSON and the objects around it, no 4 KiB buffers
