"""The compiled `state_bytes` writes the stored bytes `InteractionLog.to_bytes()` gives (`native/src/state.rs`).

The Python (`_log_document` through orjson) is the specification. Compared at every version of generated
histories (the stage's generator, and hypothesis histories with full connect data: customer, name,
related_to), for finalized versions and logs read back from their bytes, for logs built field by field
from arbitrary text and 64-bit integers, and for hand-made edge cases. What the compiled core leaves to the
Python (a lone surrogate, an integer past 64 bits, a type the fold never stores) gives None there, and
`to_bytes()` then gives what the Python gives.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.common import Customer, Direction, Media, RecordRef, RecordSystem, Trigger
from schemas.decode import decode_event
from schemas.events import ConnectedData, Event, Rejection
from tests.unit.test_fold_properties import BASE_S, REFS, _after_call, _decode, _document, _during_call, histories
from worker.core import native
from worker.core.fold import finalize, fold
from worker.core.state import InteractionLog, Stamp, Tombstone, Transition
from worker.dev.generator import GeneratorMix, generate_histories

pytestmark = pytest.mark.unit

WINDOW_S = 120
START = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
I64_MIN, I64_MAX = -(2**63), 2**63 - 1


def core() -> native.Core:
    installed = native.installed()
    if installed is None:
        if os.environ.get("ILOG_NATIVE_CORE", "").lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false: the Python alone is under test")
        pytest.fail("the compiled core (ilog_native) is not installed: run `make install`")
    return installed


def python_bytes(log: InteractionLog) -> bytes:
    with native.python_only():
        return log.to_bytes()


def assert_same_bytes(log: InteractionLog) -> None:
    expected = python_bytes(log)
    assert core().state_bytes(log) == expected
    assert log.to_bytes() == expected  # through the switch, compiled or not


def versions(events: list[Event]) -> list[InteractionLog]:
    """Each version the fold makes of the events, in arrival order, and the finalized last one."""
    logs: list[InteractionLog] = []
    state: InteractionLog | Tombstone | None = None
    for event in events:
        state = fold(state, event, edit_window_s=WINDOW_S).log
        if isinstance(state, InteractionLog) and (not logs or state is not logs[-1]):
            logs.append(state)
    if logs:
        logs.append(finalize(logs[-1]))
    return logs


def _generated_events(history: list[dict[str, Any]]) -> list[Event]:
    events = [decode_event(json.dumps(item).encode()) for item in history]
    return [event for event in events if not isinstance(event, Rejection)]


@pytest.mark.parametrize(("seed", "mix"), [
    (1, GeneratorMix()),
    (2, GeneratorMix(duplicate_ratio=0.1, shuffle_within_interaction=True, late_edit_ratio=0.1,
                     zendesk_ratio=0.3, queue_ratio=0.5, outbound_ratio=0.4)),
    (3, GeneratorMix(shuffle_within_interaction=True, zendesk_ratio=0.8, queue_ratio=1.0)),
])
def test_every_version_of_generated_histories_is_written_as_the_python_writes_it(seed: int, mix: GeneratorMix) -> None:
    compared = 0
    for history in generate_histories(120, seed=seed, start=START, rate_per_s=5, mix=mix):
        for log in versions(_generated_events(history)):
            assert_same_bytes(log)
            read = InteractionLog.from_bytes(python_bytes(log))  # no `Derived`, connect data validated anew
            assert read.derived is None
            assert core().state_bytes(read) == python_bytes(read)
            compared += 1
    assert compared > 1000


_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "\x00\x01\x1f\x7f", '"quoted" \\ back\\slash', "tab\tnew\nline\rcr\x08\x0c", "é ñ ü ß", "😀👍🏽",
     "\u2028\u2029", "日本語"])
_SHORT = st.text(st.characters(codec="utf-8"), min_size=1, max_size=12)
_NAME_REF = st.sampled_from([REFS[0], REFS[1], {"system": "zendesk", "type": "user", "id": "u1"}])
_RELATED_REF = st.sampled_from(REFS[2:]) | st.builds(
    lambda system, record_type, record_id: {"system": system, "type": record_type, "id": record_id},
    st.sampled_from(["salesforce", "custom"]), st.sampled_from(["Case", "Account", "ticket"]), _SHORT)


@st.composite
def connect_data(draw: st.DrawFn) -> dict[str, Any]:
    """`interaction.connected` data with every optional field present, absent or null."""
    data: dict[str, Any] = {"media": draw(st.sampled_from(["voice", "callback", "chat", "email", "message"])),
                            "direction": draw(st.sampled_from(["inbound", "outbound"]))}
    optional = {
        "queue": st.none() | _TEXT,
        "agent_id": st.none() | _TEXT,
        "customer": st.none() | st.fixed_dictionaries({}, optional={"address": st.none() | _TEXT,
                                                                    "name": st.none() | _TEXT}),
        "name": st.none() | _NAME_REF,
        "related_to": st.none() | _RELATED_REF,
    }
    for key, values in optional.items():
        if draw(st.booleans()):
            data[key] = draw(values)
    return data


_texts_during_call = st.one_of(
    st.tuples(st.just("log.updated"), st.fixed_dictionaries({}, optional={
        "notes": st.none() | _TEXT, "subject": st.none() | _TEXT,
        "name": st.none() | _NAME_REF, "related_to": st.none() | _RELATED_REF}).filter(bool)),
    st.tuples(st.just("interaction.attributes"),
              st.dictionaries(_SHORT, _TEXT, min_size=1, max_size=3).map(lambda a: {"attributes": a})),
    st.tuples(st.just("interaction.wrapup"), st.builds(lambda c, n: {"code": c, "note": n}, _SHORT, st.none() | _TEXT)),
    st.tuples(st.just("record.viewed"), _RELATED_REF.map(lambda r: {"record": r})),
)


@st.composite
def connected_histories(draw: st.DrawFn) -> list[Event]:
    """A connect with full data, events during and after the call (text of any kind), in any arrival order."""
    steps = [("interaction.connected", draw(connect_data())),
             *draw(st.lists(_during_call | _texts_during_call, max_size=10)),
             ("interaction.disconnected", {}), *draw(st.lists(_after_call, max_size=3))]
    documents = [_document(index, event_type, BASE_S + index * 3, data)
                 for index, (event_type, data) in enumerate(steps, start=1)]
    for document in documents:
        if draw(st.booleans()):
            del document["sequence"]
    return [_decode(document) for document in draw(st.permutations(documents))]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(connected_histories())
def test_every_version_with_full_connect_data_and_any_text_is_written_as_the_python_writes_it(
    events: list[Event],
) -> None:
    for log in versions(events):
        assert_same_bytes(log)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories(), st.data())
def test_every_version_of_the_property_histories_is_written_as_the_python_writes_it(
    history: list[Event], data: st.DataObject,
) -> None:
    for log in versions(list(data.draw(st.permutations(history)))):
        assert_same_bytes(log)


_INT = st.integers(I64_MIN, I64_MAX) | st.sampled_from([0, -1, I64_MIN, I64_MAX])
_STAMP = st.builds(Stamp, _INT, _INT, _INT)
_REF = st.builds(RecordRef, system=st.sampled_from(list(RecordSystem)), type=_SHORT, id=_SHORT)
_CONNECTED = st.builds(
    ConnectedData.model_construct,  # any refs in either field: the writer does not care which is which
    media=st.sampled_from(list(Media)), direction=st.sampled_from(list(Direction)),
    queue=st.none() | _TEXT, agent_id=st.none() | _TEXT,
    customer=st.none() | st.builds(Customer, address=st.none() | _TEXT, name=st.none() | _TEXT),
    name=st.none() | _REF, related_to=st.none() | _REF,
)
_LOGS = st.builds(
    InteractionLog,
    interaction_id=_TEXT, version=_INT, trigger=st.sampled_from(list(Trigger)), finalized=st.booleans(),
    edit_deadline_us=st.none() | _INT, last_event_us=_INT, applied_ids=st.lists(_TEXT, max_size=4).map(tuple),
    transitions=st.lists(st.builds(Transition, _INT, _INT, _INT, st.sampled_from("CHRD")), max_size=4).map(tuple),
    connect=st.none() | st.tuples(st.tuples(_INT, _INT, _INT), _CONNECTED),
    views=st.lists(st.tuples(_STAMP, _REF), max_size=3).map(tuple),
    notes=st.none() | st.tuples(_STAMP, st.none() | _TEXT), subject=st.none() | st.tuples(_STAMP, st.none() | _TEXT),
    name_choice=st.none() | st.tuples(_STAMP, st.none() | _REF),
    related_choice=st.none() | st.tuples(_STAMP, st.none() | _REF),
    wrapup=st.none() | st.tuples(_STAMP, _TEXT, st.none() | _TEXT),
    attributes=st.lists(st.tuples(_TEXT, _STAMP, _TEXT), max_size=3).map(tuple),
)


@settings(max_examples=1000, deadline=None)
@given(_LOGS)
def test_any_log_of_text_and_64_bit_integers_is_written_as_the_python_writes_it(log: InteractionLog) -> None:
    assert_same_bytes(log)


def _base() -> InteractionLog:
    return versions([_decode(_document(1, "interaction.connected", BASE_S, {
        "media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "a-1",
        "customer": {"address": "+4930123", "name": "Ada"}, "name": REFS[0], "related_to": REFS[2]}))])[0]


_EDGE_TEXTS = ["", "\x00", "\x1f\x7f", '"', "\\", "\\u0000", "\b\f\n\r\t", "é", "😀", "\U0010ffff", "\ufeff",
               "a\u2028b", "</script>", " " * 3]


@pytest.mark.parametrize("text", _EDGE_TEXTS)
def test_edge_texts_in_every_text_field_are_written_as_the_python_writes_them(text: str) -> None:
    base = _base()
    assert base.connect is not None
    key, data = base.connect
    stamp = Stamp(1, 2, 3)
    ref = RecordRef(system=RecordSystem.CUSTOM, type=text or "t", id=text or "i")
    customer = Customer(address=text, name=None)
    for log in [
        replace(base, interaction_id=text, applied_ids=(text, text)),
        replace(base, notes=(stamp, text), subject=(stamp, text), wrapup=(stamp, text, text)),
        replace(base, attributes=((text, stamp, text),), views=((stamp, ref),)),
        replace(base, name_choice=(stamp, ref), related_choice=(stamp, ref)),
        replace(base, connect=(key, data.model_copy(update={"queue": text, "agent_id": text, "customer": customer}))),
    ]:
        assert_same_bytes(log)


def test_every_ascii_character_and_some_others_at_every_place_of_a_word_are_written_as_the_python_writes_them() -> None:
    """The writer checks text eight bytes at a time: each character in each place of two words and a tail."""
    compared = 0
    for character in [*map(chr, range(128)), "é", "€", "😀", "\u0080", "\u2028"]:
        for place in range(19):
            text = "a" * place + character + "b" * (18 - place)
            log = InteractionLog(text, applied_ids=(text[:place + 1], text[place:]))
            assert core().state_bytes(log) == python_bytes(log), (character, place)
            compared += 1
    assert compared == 133 * 19


@pytest.mark.parametrize("number", [0, -1, 1, 9, 10, 99, 100, -100, I64_MIN, I64_MAX, 10**18, -(10**18)])
def test_64_bit_integers_are_written_as_the_python_writes_them(number: int) -> None:
    stamp = Stamp(number, number, number)
    base = _base()
    assert_same_bytes(replace(base, version=number, last_event_us=number, edit_deadline_us=number,
                              transitions=(Transition(number, number, number, "C"),),
                              notes=(stamp, None), attributes=(("k", stamp, "v"),)))


def test_absent_empty_and_null_facts_are_written_as_the_python_writes_them() -> None:
    stamp = Stamp(-1, 0, 0)
    for log in [
        InteractionLog(""),
        InteractionLog("c", finalized=True, edit_deadline_us=0),
        InteractionLog("c", notes=(stamp, None), subject=(stamp, None), name_choice=(stamp, None),
                       related_choice=(stamp, None), wrapup=(stamp, "", None)),
        replace(_base(), connect=((0, -1, 0), ConnectedData.model_validate({"media": "chat", "direction": "outbound",
                                                                            "customer": {}}))),
    ]:
        assert_same_bytes(log)
    assert core().state_bytes(InteractionLog("c")) == b'{"k":"log","i":"c","v":0,"g":"created","l":0,"a":[]}'


@pytest.mark.parametrize("change", [
    {"interaction_id": "lone \ud800"},
    {"notes": (Stamp(1, 2, 3), "\udfff")},
    {"attributes": (("k\udc80", Stamp(1, 2, 3), "v"),)},
])
def test_a_lone_surrogate_is_left_to_the_python_which_refuses_it(change: dict[str, Any]) -> None:
    log = replace(_base(), **change)
    assert core().state_bytes(log) is None
    with pytest.raises(orjson.JSONEncodeError):
        python_bytes(log)
    with pytest.raises(orjson.JSONEncodeError):
        log.to_bytes()


@pytest.mark.parametrize("change", [
    {"version": 2**63},
    {"last_event_us": 2**64 - 1},
    {"edit_deadline_us": I64_MIN - 1},
    {"notes": (Stamp(2**63, 0, 0), "n")},
    {"transitions": [Transition(1, 1, 1, "C")]},  # a list, not the tuple the fold keeps
    {"attributes": (("k", Stamp(1, 2, 3), 1.5),)},
    {"connect": ((0, 0, 0), ConnectedData.model_construct(media=Media.VOICE, direction=Direction.INBOUND,
                                                          queue=1.5))},  # type: ignore[arg-type]
    {"connect": ((0, 0, 0), ConnectedData.model_construct(media=Media.VOICE, direction=Direction.INBOUND), "extra")},
])
def test_what_the_compiled_core_does_not_handle_is_left_to_the_python(change: dict[str, Any]) -> None:
    log = replace(_base(), **change)
    assert core().state_bytes(log) is None
    try:
        expected: bytes | type[Exception] = python_bytes(log)
    except orjson.JSONEncodeError:
        expected = orjson.JSONEncodeError
    if isinstance(expected, bytes):
        assert log.to_bytes() == expected
    else:
        with pytest.raises(expected):
            log.to_bytes()


def test_to_bytes_uses_the_core_in_use_and_the_python_where_it_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _base()
    expected = python_bytes(log)

    class Answers:
        def __init__(self, answer: bytes | None) -> None:
            self.answer, self.asked = answer, 0

        def state_bytes(self, asked: object) -> bytes | None:
            assert asked is log
            self.asked += 1
            return self.answer

    for answer, result in [(b"compiled", b"compiled"), (None, expected)]:
        fake = Answers(answer)
        monkeypatch.setattr(native, "CORE", fake)
        assert log.to_bytes() == result
        assert fake.asked == 1
    monkeypatch.setattr(native, "CORE", None)
    assert log.to_bytes() == expected
