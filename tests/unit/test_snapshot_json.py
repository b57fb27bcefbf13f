"""`snapshot_json` gives byte for byte what the `LogSnapshot` model's JSON gives."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.common import Customer, Direction, Media, RecordRef, RecordSystem, Trigger
from schemas.decode import Rejection, decode_event
from schemas.events import ConnectedData
from worker.core.fold import Accepted, finalize, fold, snapshot
from worker.core.snapshot_json import EncodedSnapshot, encoded_snapshot, snapshot_json
from worker.core.state import InteractionLog, Stamp, Transition
from worker.dev.generator import GeneratorMix, generate_histories

WINDOW_S = 120
MIX = GeneratorMix(duplicate_ratio=0.1, shuffle_within_interaction=True, late_edit_ratio=0.1,
                   zendesk_ratio=0.3, queue_ratio=0.5, outbound_ratio=0.4)


def _every_version(history: list[dict[str, object]]) -> list[InteractionLog]:
    """The log after each accepted event of the history, and its finalized form at the end."""
    logs: list[InteractionLog] = []
    state: InteractionLog | None = None
    for item in history:
        event = decode_event(json.dumps(item).encode())
        assert not isinstance(event, Rejection)
        result = fold(state, event, edit_window_s=WINDOW_S)
        if isinstance(result.outcome, Accepted):
            assert isinstance(result.log, InteractionLog)
            state = result.log
            logs.append(state)
    if state is not None:
        logs.append(finalize(state))
    return logs


def _logs(seed: int, count: int) -> list[InteractionLog]:
    start = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
    histories = generate_histories(count, seed=seed, start=start, rate_per_s=5, mix=MIX)
    return [log for history in histories for log in _every_version(history)]


def test_generated_logs_at_every_version_serialize_to_the_models_bytes_with_every_trigger() -> None:
    logs = _logs(seed=11, count=60)
    assert any(log.finalized for log in logs)
    mismatches = [
        (log.interaction_id, log.version, trigger)
        for log in logs for trigger in (None, *Trigger)
        if snapshot_json(log, trigger) != snapshot(log, trigger).to_json_bytes()
    ]
    assert [] == mismatches


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=0, max_value=10_000))
def test_any_seeds_histories_serialize_to_the_models_bytes(seed: int) -> None:
    for log in _logs(seed=seed, count=3):
        assert snapshot(log).to_json_bytes() == snapshot_json(log)


def test_an_encoded_snapshot_carries_the_fields_its_headers_need_beside_the_json() -> None:
    log = _logs(seed=3, count=1)[-1]
    expected = snapshot(log, Trigger.FINALIZED)
    assert EncodedSnapshot(log.interaction_id, log.version, Trigger.FINALIZED, True, expected.to_json_bytes()) \
        == encoded_snapshot(log, Trigger.FINALIZED)


def test_edge_values_serialize_to_the_models_bytes() -> None:
    data = ConnectedData(media=Media.CHAT, direction=Direction.OUTBOUND, customer=Customer(address=None, name=None),
                         name=RecordRef(system=RecordSystem.ZENDESK, type="User", id="9"))
    text = 'a\x00\x1f\x7f\u2028é"\\/ 😀'
    logs = [
        InteractionLog("plain", version=1),
        InteractionLog("edge", version=7, connect=((1, -1, 1), data), notes=(Stamp(1, 2, 3), text),
                       subject=(Stamp(1, 2, 3), None), edit_deadline_us=1_790_000_000_000_001,
                       transitions=(Transition(1_790_000_000_000_000, -1, 1, "C"),
                                    Transition(1_790_000_000_500_000, -1, 2, "D")),
                       attributes=(("k", Stamp(1, 2, 3), text), ("k", Stamp(1, 2, 4), "later"))),
    ]
    assert [snapshot(log).to_json_bytes() for log in logs] == [snapshot_json(log) for log in logs]
