"""InteractionLog and Tombstone bytes: exact round trips, compact enough for Redis."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.common import RecordRef, RecordSystem
from tests.unit.test_fold_rules import connected, ev, ref, run
from tests.unit.test_snapshot_json import _logs
from worker.core.state import (
    InteractionLog,
    Stamp,
    Tombstone,
    Transition,
    evolve_log,
    from_us,
    to_us,
)
from worker.store.wire import decode_state, encode_state

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
    assert decode_state(*encode_state(log)) == log


def test_stored_facts_read_back_as_named_tuples() -> None:
    log = InteractionLog.from_bytes(_typical_open_call().to_bytes())
    assert [("C", 1), ("H", 8), ("R", 9)] == [(t.kind, t.sequence) for t in log.transitions]
    assert {Transition} == {type(t) for t in log.transitions}
    assert {Stamp} == {type(stamp) for stamp, _ in log.views}
    assert log.notes is not None and Stamp(10, log.notes[0].time_us, log.notes[0].arrival) == log.notes[0]


def test_typical_open_interaction_fits_in_two_kilobytes_with_redis_overhead() -> None:
    assert len(_typical_open_call().to_bytes()) + REDIS_OVERHEAD_BYTES <= TYPICAL_OPEN_LOG_LIMIT_BYTES


def test_tombstone_round_trips_and_is_small() -> None:
    tombstone = Tombstone("conv-42", 9, datetime(2026, 11, 27, 10, 7, tzinfo=UTC))
    raw = tombstone.to_bytes()
    assert Tombstone.from_bytes(raw) == tombstone and decode_state(*encode_state(tombstone)) == tombstone
    assert len(raw) < 80


@pytest.mark.parametrize(("raw", "kind"), [(b"{}", "log"), (b"{}", "tomb"), (b'{"k":"tomb"}', "tomb"),
                                           (b'{"k":"log","i":"x"}', "log"), (b"[]", "log"), (b'{"k":"log"}', "tomb")])
def test_corrupt_state_bytes_raise_value_error(raw: bytes, kind: str) -> None:
    with pytest.raises(ValueError):
        decode_state(raw, kind)


def test_microsecond_conversion_is_exact() -> None:
    moment = datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC)
    assert from_us(to_us(moment)) == moment


def _reference_document(log: InteractionLog) -> bytes:
    """The stored document written the plain way: every value dumped afresh, enums by `.value`."""
    def ref_out(r: RecordRef | None) -> list[str] | None:
        return None if r is None else [r.system.value, r.type, r.id]

    document: dict[str, Any] = {"k": "log", "i": log.interaction_id, "v": log.version,
                                "g": log.trigger.value, "l": log.last_event_us, "a": list(log.applied_ids)}
    optional: dict[str, Any] = {
        "f": 1 if log.finalized else None, "e": log.edit_deadline_us, "t": log.transitions or None,
        "c": None if log.connect is None else [log.connect[0],
                                                log.connect[1].model_dump(mode="json", exclude_none=True)],
        "w": [[stamp, ref_out(r)] for stamp, r in log.views] or None, "n": log.notes, "s": log.subject,
        "nm": None if log.name_choice is None else [log.name_choice[0], ref_out(log.name_choice[1])],
        "rt": None if log.related_choice is None else [log.related_choice[0], ref_out(log.related_choice[1])],
        "u": log.wrapup, "at": log.attributes or None,
    }
    document.update((key, value) for key, value in optional.items() if value is not None)
    return json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()


def test_stored_bytes_equal_the_plain_document_at_every_version() -> None:
    logs = _logs(seed=5, count=40)  # successive versions share their connect data
    assert len(logs) > 200
    first = [log.to_bytes() for log in logs]
    again = [log.to_bytes() for log in logs]
    reference = [_reference_document(log) for log in logs]
    assert reference == first == again
    assert all(InteractionLog.from_bytes(raw) == log for raw, log in zip(first, logs, strict=True))


def test_a_log_with_a_new_view_stores_it_beside_the_old_ones() -> None:
    log = _typical_open_call()
    before = log.to_bytes()
    later = evolve_log(log, log.version + 1, log.trigger, log.applied_ids, log.last_event_us,
                       {"views": (*log.views, ((99, 1, 99), RecordRef(system=RecordSystem.SALESFORCE,
                                                                        type="Case", id="new")))})
    assert before == log.to_bytes()
    assert b'["salesforce","Case","new"]' in later.to_bytes()
    assert _reference_document(later) == later.to_bytes()


@pytest.mark.parametrize(("stored", "expected"), [
    ({"name": ["salesforce", "Case", "500A"]}, (None, ("salesforce", "Case", "500A"))),
    ({"related_to": ["salesforce", "Contact", "003A"]}, (("salesforce", "Contact", "003A"), None)),
    ({"name": ["salesforce", "Case", "500A"], "related_to": ["salesforce", "Contact", "003A"]},
     (("salesforce", "Contact", "003A"), ("salesforce", "Case", "500A"))),
    ({"name": ["salesforce", "Account", "001A"], "related_to": ["salesforce", "Case", "500A"]},
     (None, ("salesforce", "Account", "001A"))),
])
def test_a_state_stored_with_a_ref_in_the_wrong_field_reads_with_it_in_its_own(
    stored: dict[str, list[str]], expected: tuple[tuple[str, str, str] | None, tuple[str, str, str] | None],
) -> None:
    """Decode now refuses a Case as Name (CONTRACT.md: Name takes Contact and Lead); a log stored before that
    still loads, each ref in the field it belongs to (the first of two for one field)."""
    document = json.loads(_typical_open_call().to_bytes())
    refs = {field: dict(zip(("system", "type", "id"), value, strict=True)) for field, value in stored.items()}
    document["c"][1] = {**{key: value for key, value in document["c"][1].items() if key not in ("name", "related_to")},
                        **refs}
    log = InteractionLog.from_bytes(json.dumps(document).encode())
    assert log.connect is not None
    data = log.connect[1]
    got = tuple(None if ref is None else (ref.system.value, ref.type, ref.id) for ref in (data.name, data.related_to))
    assert expected == got
