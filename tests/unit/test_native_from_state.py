"""The compiled core's `snapshot_from_state` (`native/src/from_state.rs`): the snapshot read off a log's stored
document gives the Python's bytes, and any document but the ones `to_bytes` writes is left to the log (None).

The differential tests over generated and drawn histories are in `test_native_snapshot.py` (every version,
every trigger, both paths); here the refusals, one edit of a real document each, and the stage's use of it.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import orjson
import pytest

from schemas.common import Customer, Direction, Media, RecordRef, Trigger
from schemas.events import ConnectedData
from tests.unit.test_native_snapshot import core
from worker.core import native
from worker.core.snapshot_json import snapshot_json, snapshot_json_of
from worker.core.state import InteractionLog, Stamp, Tombstone, Transition

pytestmark = pytest.mark.unit

T0 = 1_790_000_000_000_000
CONTACT = RecordRef.model_validate({"system": "salesforce", "type": "Contact", "id": "003A"})
CASE = RecordRef.model_validate({"system": "salesforce", "type": "Case", "id": "500A"})


def _log(notes: str = "called back", customer_name: str | None = "Ada Example") -> InteractionLog:
    data = ConnectedData(media=Media.VOICE, direction=Direction.INBOUND, queue="Support",
                         customer=Customer(address="+4930123", name=customer_name), related_to=CASE)
    return InteractionLog(
        interaction_id="conv-1", version=7, trigger=Trigger.STATE_CHANGED, edit_deadline_us=T0 + 200_000_000,
        last_event_us=T0 + 80_000_000, applied_ids=("e1", "e2"),
        transitions=(Transition(T0, 1, 1, "C"), Transition(T0 + 30_000_000, 2, 2, "H"),
                     Transition(T0 + 45_500_000, 3, 3, "R"), Transition(T0 + 80_000_000, 4, 4, "D")),
        connect=((T0, 1, 1), data), views=((Stamp(5, T0 + 10_000_000, 5), CONTACT),),
        notes=(Stamp(6, T0 + 12_000_000, 6), notes), wrapup=(Stamp(7, T0 + 81_000_000, 7), "Resolved", None),
        attributes=(("tier", Stamp(8, T0 + 1, 8), "gold"), ("tier", Stamp(9, T0 + 2, 9), "platinum")),
    )


def _python(log: InteractionLog, trigger: Trigger) -> bytes:
    with native.python_only():
        return snapshot_json(log, trigger)


def _document(log: InteractionLog) -> bytes:
    with native.python_only():
        return log.to_bytes()


def test_a_document_gives_the_pythons_snapshot_with_every_trigger_and_escapes_kept() -> None:
    log = _log(notes='line\n"quoted" \\ \x01 \u2028 é 😀', customer_name="Zoë \x1f")
    document = _document(log)
    assert b"\\u0001" in document and b"\\u001f" in document  # the escapes orjson writes for control characters
    for trigger in Trigger:
        assert core().snapshot_from_state(document, trigger) == _python(log, trigger)
    assert core().snapshot_from_state(document) == _python(log, log.trigger)  # no trigger: the document's


EDITS: list[tuple[str, bytes, bytes]] = [
    ("white space", b'"v":7', b'"v": 7'),
    ("a float", b'"v":7', b'"v":7.0'),
    ("an exponent", b'"v":7', b'"v":7e0'),
    ("a leading zero", b'"v":7', b'"v":07'),
    ("past 64 bits", b'"v":7', b'"v":123456789012345678901'),
    ("version 0", b'"v":7', b'"v":0'),
    ("another kind", b'"k":"log"', b'"k":"tomb"'),
    ("an unknown key", b'"v":7', b'"v":7,"zz":1'),
    ("finalized other than 1", b'"v":7', b'"v":7,"f":0'),
    ("an unknown connect field", b'"media":"voice"', b'"media":"voice","fax":"1"'),
    ("an unknown customer field", b'"address":', b'"phone":"1","address":'),
    ("an unknown media", b'"media":"voice"', b'"media":"fax"'),
    ("an unknown direction", b'"direction":"inbound"', b'"direction":"sideways"'),
    ("a ref with a fourth field", b'"id":"500A"', b'"id":"500A","x":"y"'),
    ("a stamp of two", b'[5,', b'['),
    ("an escaped slash", b'called back', b'called\\/back'),
    ("an escaped letter", b'called back', b'c\\u0061lled back'),
    ("upper-case hex", b'called back', b'called\\u001Fback'),
    ("a short escape as hex", b'called back', b'called\\u000aback'),
    ("a raw control character", b'called back', b'called\x01back'),
    ("an unknown escape", b'called back', b'called\\qback'),
    ("true", b'"f":1', b'"f":true'),
]


@pytest.mark.parametrize(("what", "before", "after"), EDITS, ids=[what for what, _, _ in EDITS])
def test_anything_but_what_to_bytes_writes_is_left_to_the_log(what: str, before: bytes, after: bytes) -> None:
    log = _log()
    document = _document(log)
    if what == "true":
        document = _document(dataclasses.replace(log, finalized=True))
    assert before in document, what
    edited = document.replace(before, after, 1)
    assert core().snapshot_from_state(edited, Trigger.UPDATED) is None


@pytest.mark.parametrize("document", [
    b"", b"{", b"[]", b"null", b'{"k":"log"}', b'{"k":"log","i":"x","v":1,"g":"updated","l":0,"a":[]} ',
    b"\xff", b'{"k":"log","i":"x","v":1,"g":"updated","l":0,"a":[],"t":' + b"[" * 12 + b"]" * 12 + b"}",
])
def test_broken_documents_are_left_to_the_log(document: bytes) -> None:
    assert core().snapshot_from_state(document, Trigger.UPDATED) is None


def test_a_tombstones_bytes_are_left_to_the_log() -> None:
    tombstone = Tombstone("conv-1", 9, datetime.fromtimestamp(T0 / 1e6, UTC), ("e1",))
    assert core().snapshot_from_state(tombstone.to_bytes(), Trigger.FINALIZED) is None


def test_the_smallest_document_names_the_interaction_by_its_id() -> None:
    log = InteractionLog(interaction_id="conv-\x02", version=1, applied_ids=("e1",))
    document = _document(log)
    assert orjson.loads(document) == {"k": "log", "i": "conv-\x02", "v": 1, "g": "created", "l": 0, "a": ["e1"]}
    assert core().snapshot_from_state(document, Trigger.CREATED) == _python(log, Trigger.CREATED)


def test_the_stage_reads_the_snapshot_off_the_document_and_falls_back_to_the_log(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    log = _log()
    document = _document(log)
    expected = _python(log, Trigger.STATE_CHANGED)
    assert snapshot_json_of(log, document, Trigger.STATE_CHANGED) == expected
    asked: list[bytes] = []

    def declines(raw: bytes, trigger: object = None) -> None:
        asked.append(raw)

    monkeypatch.setattr(native, "CORE", core())
    monkeypatch.setattr(core(), "snapshot_from_state", declines, raising=False)
    assert snapshot_json_of(log, document, Trigger.STATE_CHANGED) == expected  # written from the log instead
    assert asked == [document]
    with native.python_only():
        assert snapshot_json_of(log, b"not a document", Trigger.STATE_CHANGED) == expected  # the Python alone
