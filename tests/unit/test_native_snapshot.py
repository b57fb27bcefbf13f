"""The compiled core's `snapshot_json` (`native/src/snapshot.rs`) gives the Python's bytes, or None.

Differential: every version of many folded histories, with every trigger, through the compiled core and
through the Python specification (`worker.core.snapshot_json` alone, and the `LogSnapshot` model's JSON);
then hand-made logs at the edges (texts, rounding, spans, choices), and what it leaves to the Python.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.common import NAME_TYPES, ZENDESK_NAME_TYPES, Customer, Direction, Media, RecordRef, RecordSystem, Trigger
from schemas.decode import Rejection, decode_event
from schemas.events import ConnectedData
from worker.core import native
from worker.core.fold import Accepted, finalize, fold
from worker.core.snapshot import _MEDIA_NOUN, snapshot
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, Stamp, Transition
from worker.dev.generator import GeneratorMix, generate_histories, rfc3339_ms

pytestmark = pytest.mark.unit

TRIGGERS: tuple[Trigger | None, ...] = (None, *Trigger)
BASE = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
BASE_US = 1_790_000_000_000_000  # an epoch microsecond in 2026
WINDOW_S = 1_000_000  # late events are still folded: their facts reach the snapshot


def core() -> native.Core:
    installed = native.installed()
    if installed is None:
        if os.environ.get("ILOG_NATIVE_CORE", "").lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false: the Python alone is under test")
        pytest.fail("the compiled core (ilog_native) is not installed: run `make install`")
    return installed


def _python(log: InteractionLog, trigger: Trigger | None) -> bytes:
    with native.python_only():
        return snapshot_json(log, trigger)


def _document(log: InteractionLog) -> bytes | None:
    """`log.to_bytes()` as the Python writes it (the compiled core writes the same bytes), or None when the log
    cannot be stored (a lone surrogate): the stage then has no document to read the snapshot off."""
    with native.python_only():
        try:
            return log.to_bytes()
        except TypeError:  # orjson.JSONEncodeError
            return None


def _mismatches(logs: list[InteractionLog]) -> list[tuple[str, int, Trigger | None, str]]:
    """(id, version, trigger, path) of every snapshot where the compiled core's bytes are not the Python's:
    written from the log (`snapshot_json`) or read off its stored document (`snapshot_from_state`), which
    must also handle every log these histories make."""
    compiled = core()
    wrong = []
    for log in logs:
        document = _document(log)
        for trigger in TRIGGERS:
            expected = _python(log, trigger)
            assert expected == snapshot(log, trigger).to_json_bytes()
            chosen = trigger if trigger is not None else log.trigger
            if compiled.snapshot_json(log, chosen) != expected or compiled.snapshot_json(log, trigger) != expected:
                wrong.append((log.interaction_id, log.version, trigger, "log"))
            if document is None or compiled.snapshot_from_state(document, chosen) != expected \
                    or compiled.snapshot_from_state(document, trigger) != expected:
                wrong.append((log.interaction_id, log.version, trigger, "document"))
    return wrong


def _assert_same(*logs: InteractionLog) -> None:
    """The compiled core's bytes are the Python's, from the log; off its document they are too, or None
    (the edges here include documents it leaves to the log)."""
    compiled = core()
    for log in logs:
        document = _document(log)
        for trigger in TRIGGERS:
            expected = _python(log, trigger)
            assert expected == snapshot(log, trigger).to_json_bytes()
            chosen = trigger if trigger is not None else log.trigger
            assert compiled.snapshot_json(log, chosen) == expected
            if document is not None:
                assert compiled.snapshot_from_state(document, chosen) in (None, expected)


def _versions(events: list[Any], window_s: float = WINDOW_S) -> list[InteractionLog]:
    """The log after each accepted event, and its finalized form at the end."""
    logs: list[InteractionLog] = []
    state: InteractionLog | None = None
    for event in events:
        result = fold(state, event, edit_window_s=window_s)
        if isinstance(result.outcome, Accepted):
            assert isinstance(result.log, InteractionLog)
            state = result.log
            logs.append(state)
    if state is not None:
        logs.append(finalize(state))
    return logs


def _decoded(document: dict[str, Any]) -> Any:
    event = decode_event(json.dumps(document).encode())
    assert not isinstance(event, Rejection), event
    return event


# (a) Histories of the stage's generator, then histories drawn to reach what it never writes.

MIXES = [
    GeneratorMix(duplicate_ratio=0.1, shuffle_within_interaction=True, late_edit_ratio=0.1, zendesk_ratio=0.3,
                 queue_ratio=0.5, outbound_ratio=0.4),
    GeneratorMix(zendesk_ratio=1.0, queue_ratio=1.0, outbound_ratio=0.8),
    GeneratorMix(zendesk_ratio=0.0, queue_ratio=0.0, outbound_ratio=0.0, shuffle_within_interaction=True),
]


@pytest.mark.parametrize("mix", range(len(MIXES)))
def test_every_version_of_generated_histories_with_every_trigger(mix: int) -> None:
    histories = generate_histories(50, seed=100 + mix, start=BASE, rate_per_s=5, mix=MIXES[mix])
    logs = [log for history in histories for log in _versions([_decoded(item) for item in history], 120)]
    assert any(log.finalized for log in logs) and len(logs) > 300
    assert [] == _mismatches(logs)


REFS = [
    {"system": "salesforce", "type": "Contact", "id": "003A"},
    {"system": "salesforce", "type": "LEAD", "id": "00QA"},
    {"system": "salesforce", "type": "Case", "id": "500A"},
    {"system": "salesforce", "type": "Case", "id": "500B"},
    {"system": "salesforce", "type": "user", "id": "005A"},  # a Salesforce user is Related to
    {"system": "zendesk", "type": "User", "id": "42"},
    {"system": "zendesk", "type": "ticket", "id": "77"},
    {"system": "custom", "type": "contact", "id": "c-1"},
    {"system": "custom", "type": "Ticket \"x\"", "id": "é😀\n"},
]
NAME_REFS = [ref for ref in REFS if RecordRef.model_validate(ref).is_name]
RELATED_REFS = [ref for ref in REFS if not RecordRef.model_validate(ref).is_name]

_TEXT = st.text(st.characters(codec="utf-8"), max_size=12) | st.sampled_from(
    ["", "Ada Example", "a\x00\x1f\x7f\u2028é\"\\/ 😀", "x" * 255, "é" * 255, "😀" * 254 + "a"])
_NAME = _TEXT.filter(lambda text: len(text) <= 255)
_CUSTOMER = st.none() | st.fixed_dictionaries({}, optional={"name": st.none() | _NAME, "address": st.none() | _NAME})
_CONNECT = st.fixed_dictionaries(
    {"media": st.sampled_from([media.value for media in Media]),
     "direction": st.sampled_from([direction.value for direction in Direction]), "customer": _CUSTOMER},
    optional={"queue": st.none() | st.sampled_from(["Support", ""]), "agent_id": st.none() | _NAME,
              "name": st.none() | st.sampled_from(NAME_REFS),
              "related_to": st.none() | st.sampled_from(RELATED_REFS)})
_UPDATED: dict[str, st.SearchStrategy[Any]] = {
    "notes": st.none() | _TEXT, "subject": st.none() | _NAME,
    "name": st.none() | st.sampled_from(NAME_REFS), "related_to": st.none() | st.sampled_from(RELATED_REFS),
}
_UPDATE = st.one_of([st.fixed_dictionaries({sent: value}, optional={key: other for key, other in _UPDATED.items()
                                                                     if key != sent})
                      for sent, value in _UPDATED.items()])
_STEP = st.one_of(
    st.tuples(st.just("interaction.connected"), _CONNECT),
    st.tuples(st.sampled_from(["interaction.held", "interaction.resumed", "interaction.disconnected",
                               "log.opened"]), st.none()),
    st.tuples(st.just("record.viewed"), st.sampled_from(REFS).map(lambda ref: {"record": ref})),
    st.tuples(st.just("log.updated"), _UPDATE),
    st.tuples(st.just("interaction.wrapup"),
              st.fixed_dictionaries({"code": st.sampled_from(["Resolved", "é"])},
                                    optional={"note": st.none() | _TEXT})),
    st.tuples(st.just("interaction.attributes"),
              st.dictionaries(st.sampled_from(["tier", "lang", "é😀", "\x00"]),
                              _TEXT.filter(lambda text: len(text) <= 1000), min_size=1, max_size=3)
              .map(lambda attributes: {"attributes": attributes})),
)
# ms after BASE_US: multiples of 500 ms make durations of x.5 s (rounded half to even) frequent
_OFFSET_MS = st.integers(0, 60).map(lambda half_seconds: half_seconds * 500) | st.integers(0, 600_000)


@st.composite
def histories(draw: st.DrawFn) -> list[Any]:
    """An interaction's events in arrival order: any steps, several connects and disconnects, holds, times that
    go back and forth, and sequences on every event, on none or on some, following the clocks or not."""
    subject = draw(st.sampled_from(["conv-n", "x" * 255, "é" * 250]))
    first = ("interaction.connected", draw(_CONNECT))
    steps = [first, *draw(st.lists(_STEP, max_size=14))] if draw(st.booleans()) else draw(st.lists(_STEP, max_size=14))
    numbering = draw(st.sampled_from(["all", "none", "some", "clock"]))
    offsets = draw(st.lists(_OFFSET_MS, min_size=len(steps), max_size=len(steps)))
    if numbering == "clock":
        offsets.sort()
    events = []
    for index, ((event_type, data), offset_ms) in enumerate(zip(steps, offsets, strict=True), start=1):
        document: dict[str, Any] = {
            "specversion": "1.0", "id": f"e{index}", "source": "/native", "type": event_type, "subject": subject,
            "time": rfc3339_ms(datetime.fromtimestamp(BASE_US / 1e6, UTC) + timedelta(milliseconds=offset_ms))}
        if numbering in ("all", "clock") or (numbering == "some" and draw(st.booleans())):
            document["sequence"] = index if numbering == "clock" else draw(st.integers(0, 40))
        if data is not None:
            document["data"] = data
        events.append(_decoded(document))
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_every_version_of_drawn_histories_with_every_trigger(events: list[Any]) -> None:
    assert [] == _mismatches(_versions(events))


# (b) Logs made by hand: the edges of the rules and of the JSON.

TEXT = 'a\x00\x01\x08\t\n\x0c\r\x1f\x7f\u2028é"\\/ 😀'
EVERY_REF = [RecordRef.model_validate(ref) for ref in REFS]


def _data(media: Media = Media.VOICE, direction: Direction = Direction.INBOUND, **fields: Any) -> ConnectedData:
    return ConnectedData(media=media, direction=direction, **fields)


def _log(**fields: Any) -> InteractionLog:
    return InteractionLog(**{"interaction_id": "conv-h", "version": 3, **fields})


def _call(start_us: int, end_us: int | None, *holds: tuple[int, int]) -> tuple[Transition, ...]:
    """Connected at start, held and resumed at each (start, end), disconnected at end (None: still on)."""
    kinds = [(start_us, "C")]
    for held_us, resumed_us in holds:
        kinds += [(held_us, "H"), (resumed_us, "R")]
    if end_us is not None:
        kinds.append((end_us, "D"))
    return tuple(Transition(time_us, -1, arrival, kind) for arrival, (time_us, kind) in enumerate(kinds, start=1))


@pytest.mark.parametrize("media", list(Media))
@pytest.mark.parametrize("direction", list(Direction))
@pytest.mark.parametrize("customer", [None, Customer(), Customer(name="Ada"), Customer(address="+49 30 1"),
                                      Customer(name="", address="ada@example.com"), Customer(name="", address=""),
                                      Customer(name="é" * 255), Customer(name=TEXT, address=TEXT)])
def test_every_media_direction_and_customer_gives_the_pythons_subject(
        media: Media, direction: Direction, customer: Customer | None) -> None:
    data = _data(media, direction, customer=customer)
    _assert_same(_log(connect=((BASE_US, -1, 1), data)),
                 _log(connect=((BASE_US, -1, 1), data), subject=(Stamp(-1, BASE_US, 2), None)),
                 _log(connect=((BASE_US, -1, 1), data), subject=(Stamp(-1, BASE_US, 2), TEXT)))


def test_the_nouns_and_name_types_the_compiled_core_knows_are_the_pythons() -> None:
    # native/src/snapshot.rs names these; a new media or name type must be taught to it (else it returns None)
    assert {Media.VOICE: "call", Media.CALLBACK: "callback", Media.CHAT: "chat", Media.EMAIL: "email",
            Media.MESSAGE: "message"} == _MEDIA_NOUN
    assert (NAME_TYPES, ZENDESK_NAME_TYPES) == (frozenset({"contact", "lead"}), frozenset({"user"}))


@pytest.mark.parametrize("interaction_id", ["", "conv-1", "x" * 243, "x" * 244, "x" * 300, "é" * 250, TEXT])
def test_a_log_without_connect_data_is_named_by_its_id_cut_to_255_characters(interaction_id: str) -> None:
    _assert_same(InteractionLog(interaction_id, version=1),
                 InteractionLog(interaction_id, version=2, transitions=_call(BASE_US, BASE_US + 1)))


@pytest.mark.parametrize("duration_us", [0, 1, 499_999, 500_000, 500_001, 1_500_000, 2_500_000, 3_500_000,
                                         2_499_999, 2_500_001, 86_400_500_000, 2**53 - 1, 2**53])
def test_durations_round_half_to_even(duration_us: int) -> None:
    half = duration_us // 2
    _assert_same(_log(transitions=_call(BASE_US, BASE_US + duration_us)),
                 _log(transitions=_call(BASE_US, BASE_US + duration_us, (BASE_US, BASE_US + half))),
                 _log(transitions=_call(BASE_US, BASE_US + duration_us, (BASE_US + 1, BASE_US + 1 + half))))


def test_spans_that_run_backwards_count_as_zero() -> None:
    _assert_same(
        _log(transitions=(Transition(BASE_US, 1, 1, "C"), Transition(BASE_US - 5_000_000, 2, 2, "D"))),
        _log(transitions=(Transition(BASE_US, 1, 1, "C"), Transition(BASE_US + 9_000_000, 2, 2, "H"),
                          Transition(BASE_US + 1_000_000, 3, 3, "R"), Transition(BASE_US + 4_000_000, 4, 4, "D"))),
        _log(transitions=(Transition(BASE_US, 1, 1, "H"), Transition(BASE_US - 1, 2, 2, "D"))),
    )


def test_the_walk_order_sequences_clocks_holds_and_reconnects() -> None:
    t = BASE_US
    _assert_same(
        # numbered against the clock: the numbers win
        _log(transitions=(Transition(t, 3, 1, "D"), Transition(t + 1_000_000, 1, 2, "C"),
                          Transition(t + 2_000_000, 2, 3, "H"))),
        # one without a number: event time
        _log(transitions=(Transition(t, 3, 1, "D"), Transition(t + 1_000_000, -1, 2, "C"),
                          Transition(t + 2_000_000, 2, 3, "H"))),
        # equal numbers: then time, then arrival; reconnects after the disconnect are counted
        _log(transitions=(Transition(t, 5, 2, "C"), Transition(t, 5, 1, "H"), Transition(t + 3, 4, 3, "C"),
                          Transition(t + 7_000_000, 9, 4, "D"), Transition(t + 8_000_000, 10, 5, "C"),
                          Transition(t + 9_000_000, 11, 6, "C"), Transition(t + 9_500_000, 12, 7, "H"))),
        # held before connected, held twice, resumed while not held, a hold open at disconnect, unknown kinds
        _log(transitions=(Transition(t, -1, 1, "H"), Transition(t + 1, -1, 2, "H"), Transition(t + 2, -1, 3, "C"),
                          Transition(t + 3, -1, 4, "R"), Transition(t + 4, -1, 5, "X"),
                          Transition(t + 1_000_000, -1, 6, "H"), Transition(t + 3_500_000, -1, 7, "D"))),
        _log(transitions=(Transition(t, 1, 1, "H"),)),
        _log(transitions=(Transition(t, 1, 1, "R"), Transition(t + 1, 2, 2, "H"))),
    )


def test_views_active_and_not_choices_and_candidates() -> None:
    t = BASE_US
    transitions = _call(t, t + 10_000_000)
    views = tuple((Stamp(-1, t + offset, arrival), ref)
                  for arrival, (offset, ref) in enumerate(
                      [(-1, EVERY_REF[0]), (0, EVERY_REF[2]), (1, EVERY_REF[5]), (2, EVERY_REF[2]),
                       (3, EVERY_REF[4]), (4, EVERY_REF[7]), (5, EVERY_REF[8]), (6, EVERY_REF[1]),
                       (7, EVERY_REF[0]), (9_999_999, EVERY_REF[6]), (10_000_000, EVERY_REF[3])], start=1))
    data = _data(Media.CHAT, Direction.OUTBOUND, queue="Q", name=EVERY_REF[1], related_to=EVERY_REF[3])
    stamp = Stamp(1, t, 1)
    for connect in (None, ((t, -1, 1), data)):
        _assert_same(
            _log(views=views, connect=connect),
            _log(views=views, connect=connect, transitions=transitions),
            _log(views=views, connect=connect, transitions=transitions[:1]),
            _log(views=views, connect=connect, transitions=transitions,
                 name_choice=(stamp, None), related_choice=(stamp, None)),
            _log(views=views, connect=connect, transitions=transitions,
                 name_choice=(stamp, EVERY_REF[5]), related_choice=(stamp, EVERY_REF[8])),
            _log(connect=connect, transitions=transitions, name_choice=(stamp, EVERY_REF[0])),
        )


@pytest.mark.parametrize("queue", [None, "", "Support"])
@pytest.mark.parametrize("notes", [None, "", TEXT])
@pytest.mark.parametrize("wrapup", [None, ("Resolved", None), ("", ""), (TEXT, TEXT)])
def test_notes_and_wrapup_of_queue_interactions_and_others(
        queue: str | None, notes: str | None, wrapup: tuple[str, str | None] | None) -> None:
    stamp = Stamp(-1, BASE_US, 1)
    _assert_same(
        _log(connect=((BASE_US, -1, 1), _data(queue=queue)), notes=None if notes is None else (stamp, notes),
             wrapup=None if wrapup is None else (stamp, *wrapup)),
        _log(notes=(stamp, None), wrapup=None if wrapup is None else (stamp, *wrapup)),
    )


def test_texts_attributes_deadlines_and_versions() -> None:
    stamp = Stamp(-1, BASE_US, 1)
    data = _data(Media.EMAIL, Direction.OUTBOUND, queue=TEXT, agent_id=TEXT, customer=Customer(name=TEXT, address=""),
                 name=EVERY_REF[5], related_to=EVERY_REF[8])
    attributes = (("k", stamp, TEXT), ("", stamp, ""), (TEXT, stamp, "1"), ("k", stamp, "later"), ("é", stamp, "😀"))
    many = tuple((f"key{index % 23}", stamp, str(index)) for index in range(60))
    _assert_same(
        _log(interaction_id=TEXT, version=2**63 - 1, trigger=Trigger.UPDATED, connect=((BASE_US, -1, 1), data),
             notes=(stamp, TEXT), subject=(stamp, TEXT), attributes=attributes, edit_deadline_us=BASE_US + 1,
             finalized=True),
        _log(attributes=many, edit_deadline_us=0),
        _log(edit_deadline_us=-62_135_596_800_000_000),  # 0001-01-01T00:00:00Z
        _log(edit_deadline_us=253_402_300_799_999_999),  # 9999-12-31T23:59:59.999999Z
        _log(version=1, subject=(stamp, ""), notes=(stamp, "")),
    )


_MIN_US = -62_135_596_800_000_000  # 0001-01-01T00:00:00Z
_MAX_US = 253_402_300_799_999_999  # 9999-12-31T23:59:59.999999Z
_ESCAPES = st.text(st.sampled_from('\x00\x01\x08\t\n\x0b\x0c\r\x1f "\\/\x7f\u2028é😀ab'), max_size=40)


@settings(max_examples=500, deadline=None)
@given(st.text(st.characters(codec="utf-8"), max_size=40) | _ESCAPES,
       st.integers(_MIN_US, _MAX_US) | st.integers(_MIN_US // 10**6, _MAX_US // 10**6).map(lambda s: s * 10**6))
def test_any_text_and_any_time(text: str, epoch_us: int) -> None:
    stamp = Stamp(-1, BASE_US, 1)
    _assert_same(_log(notes=(stamp, text), subject=(stamp, text), edit_deadline_us=epoch_us,
                      attributes=((text, stamp, text), ("k", stamp, text)), wrapup=(stamp, text, text)),
                 _log(interaction_id=text, transitions=_call(epoch_us, None)))


def _unchecked(**fields: Any) -> ConnectedData:
    """Connect data the model would not make: a media or direction it does not know (a plain str is not the
    member, and `_subject` compares the direction by identity)."""
    return ConnectedData.model_construct(**fields)


def _unusual_logs() -> list[InteractionLog]:
    stamp = Stamp(-1, BASE_US, 1)
    odd_type = RecordRef.model_construct(system=RecordSystem.SALESFORCE, type="Ｃontact", id="1")  # not ASCII
    kelvin = RecordRef.model_construct(system=RecordSystem.SALESFORCE, type="\u212alead", id="1")
    transitions = _call(BASE_US, BASE_US + 1_000_000)
    return [
        _log(notes=(stamp, "lone \ud800 surrogate")),
        _log(interaction_id="\udfff"),
        _log(attributes=(("k", stamp, "\ud800"),)),
        _log(connect=((BASE_US, -1, 1), _data(customer=Customer.model_construct(address=None, name="\ud800")))),
        _log(version=0),
        _log(version=-1),
        _log(version=2**64),
        _log(edit_deadline_us=2**63),
        _log(edit_deadline_us=253_402_300_800_000_000),  # year 10000
        _log(transitions=(Transition(2**64, -1, 1, "C"),)),
        _log(transitions=(Transition(BASE_US, 2**63, 1, "C"),)),
        _log(transitions=transitions, views=((stamp, odd_type),)),
        _log(transitions=transitions, views=((stamp, kelvin),)),
        _log(connect=((BASE_US, -1, 1), _unchecked(media="fax", direction=Direction.INBOUND))),
        _log(connect=((BASE_US, -1, 1), _unchecked(media=Media.VOICE, direction="inbound"))),
        _log(transitions=_call(-62_135_596_800_000_000, 253_402_300_799_999_999)),
    ]


@pytest.mark.parametrize("index", range(len(_unusual_logs())))
def test_what_it_does_not_handle_is_left_to_the_python(index: int, monkeypatch: pytest.MonkeyPatch) -> None:
    log = _unusual_logs()[index]
    compiled = core()
    assert compiled.snapshot_json(log, log.trigger) is None
    try:
        expected: bytes | Exception = _python(log, None)
    except Exception as error:  # whatever the Python raises, wired in it raises the same
        expected = error
    monkeypatch.setattr(native, "CORE", compiled)  # wired in: the Python answers, with the same bytes or error
    if isinstance(expected, bytes):
        assert expected == snapshot_json(log)
    else:
        with pytest.raises(type(expected)):
            snapshot_json(log)


_NEAR_US = st.integers(-12, 12).map(lambda quarters: quarters * 250_000) | st.integers(-3_000_000, 3_000_000)
"""µs around BASE_US: quarter seconds make spans of x.5 s frequent."""


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(_NEAR_US.map(lambda us: BASE_US + us), st.integers(-1, 5),
                          st.sampled_from("CHRDX")), max_size=8),
       st.lists(st.tuples(_NEAR_US, st.sampled_from(EVERY_REF)), max_size=6))
def test_any_transitions_and_views(steps: list[tuple[int, int, str]], viewed: list[tuple[int, RecordRef]]) -> None:
    transitions = tuple(sorted(Transition(time_us, sequence, arrival, kind)
                               for arrival, (time_us, sequence, kind) in enumerate(steps, start=1)))
    views = tuple((Stamp(-1, BASE_US + offset, arrival), ref) for arrival, (offset, ref) in enumerate(viewed, start=1))
    _assert_same(_log(transitions=transitions, views=views),
                 _log(transitions=transitions, views=views, connect=((BASE_US, -1, 1), _data(queue="Q"))))


class _FakeCore:
    def __init__(self, answer: bytes | None) -> None:
        self.answer = answer
        self.calls: list[tuple[object, object]] = []

    def snapshot_json(self, log: object, trigger: object) -> bytes | None:
        self.calls.append((log, trigger))
        return self.answer


def test_snapshot_json_asks_the_core_in_use_first_with_the_chosen_trigger(monkeypatch: pytest.MonkeyPatch) -> None:
    log = _log(trigger=Trigger.OPENED)
    fake = _FakeCore(b"{compiled}")
    monkeypatch.setattr(native, "CORE", fake)
    assert snapshot_json(log) == b"{compiled}"
    assert snapshot_json(log, Trigger.FINALIZED) == b"{compiled}"
    assert [(log, Trigger.OPENED), (log, Trigger.FINALIZED)] == fake.calls
    monkeypatch.setattr(native, "CORE", _FakeCore(None))  # left to the Python
    assert snapshot(log).to_json_bytes() == snapshot_json(log)
