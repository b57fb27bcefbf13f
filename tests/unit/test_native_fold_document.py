"""The compiled fold over stored documents (`native/src/fold_document.rs`) gives exactly what the Python gives.

At every step of a history the Python folds the event into `InteractionLog.from_bytes(document)` (None before
the first event) with `native.python_only()`, and `fold_document` folds it into the document itself. Where
the compiled function answers, it must agree: for an accepted event the same stored bytes (`to_bytes()` of the
Python's log), version, trigger value and edit deadline; True only for a `Duplicate`; for an event past the edit
deadline what words the same `late_edit` rejection (`late_edit_rejection`). None leaves the event to
the Python, which the tests count so that it cannot be the answer everywhere. The history then goes on from
the Python's document. `finalize_document` is compared with `finalize` on each document met the same way.
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.events import Event
from schemas.fast import AnyEvent
from tests.unit.test_fold_properties import histories, unordered_histories
from tests.unit.test_native_fold import CONNECT, START, decoded, document, fast_twin, generated
from worker.core import native
from worker.core.fold import Accepted, Duplicate, Rejected, finalize, fold, late_edit_rejection, tombstone_of
from worker.core.state import InteractionLog
from worker.dev.generator import GeneratorMix

pytestmark = pytest.mark.unit

TYPES = {"interaction.connected", "interaction.held", "interaction.resumed", "interaction.disconnected",
         "log.updated", "record.viewed", "log.opened", "interaction.wrapup", "interaction.attributes"}
AWKWARD = ['quote " and back \\ slash', "control \x01\x08\x0c\x1f\x7f tab\t line\n\r", "emoji 😀 é ß 中文",
           "\\u0041 not an escape", "/slash/", ""]
"""Texts that need escaping, or are not ASCII, or look like escapes."""


def core() -> native.Core:
    installed = native.installed()
    if installed is None or not hasattr(installed, "fold_document"):  # not installed, or built before it
        if os.environ.get("ILOG_NATIVE_CORE", "").lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false: the Python alone is under test")
        pytest.fail("the compiled core (ilog_native) with fold_document is not installed: run `make install`")
    return installed


def log_of(raw: bytes | None) -> InteractionLog | None:
    return None if raw is None else InteractionLog.from_bytes(raw)


class DocumentFolds:
    """Folds events into documents both ways and compares; counts what the compiled fold handled itself."""

    def __init__(self, window_s: float = 120, kept: int = 256) -> None:
        self.window_s = window_s
        self.kept = kept
        self.handled: Counter[str] = Counter()
        self.duplicates = 0
        self.late = 0
        self.left: Counter[str] = Counter()
        self.finalized = 0
        self.finalize_left = 0

    def one(self, raw: bytes | None, event: AnyEvent) -> bytes | None:
        """The document after `event` (the Python's), after comparing the compiled answer with it."""
        with native.python_only():
            result = fold(log_of(raw), event, edit_window_s=self.window_s, applied_ids_kept=self.kept)
            after = result.log.to_bytes() if isinstance(result.log, InteractionLog) else None
        got = core().fold_document(raw, event, self.window_s, self.kept)
        if got is None:
            self.left[event.type] += 1
        elif got is True:
            assert isinstance(result.outcome, Duplicate)
            self.duplicates += 1
        elif got[0] is None:
            assert isinstance(result.outcome, Rejected), result.outcome
            _none, time_us, deadline_us, ended_us = got
            assert isinstance(time_us, int) and isinstance(deadline_us, int)
            assert late_edit_rejection(event, time_us, deadline_us, ended_us) == result.outcome.rejection
            self.late += 1
        else:
            assert isinstance(result.outcome, Accepted), result.outcome
            assert isinstance(result.log, InteractionLog)
            assert type(got) is tuple
            assert got == (after, result.log.version, result.outcome.trigger.value, result.log.edit_deadline_us)
            self.handled[event.type] += 1
        if raw is not None:
            self.finalize(raw)
        return raw if result.log is None or isinstance(result.outcome, (Duplicate, Rejected)) else after

    def finalize(self, raw: bytes) -> None:
        with native.python_only():
            log = InteractionLog.from_bytes(raw)
            closed = None if log.finalized else finalize(log).to_bytes()
        got = core().finalize_document(raw)
        if got is None:
            self.finalize_left += 1
            return
        assert closed is not None, "a finalized log is left to the Python"
        assert type(got) is tuple and all(type(event_id) is str for event_id in got[1])
        assert got == (closed, log.applied_ids)
        self.finalized += 1

    def all(self, events: list[AnyEvent], raw: bytes | None = None) -> bytes | None:
        for event in events:
            raw = self.one(raw, event)
        return raw


@pytest.mark.parametrize("fast", [True, False], ids=["fast-structs", "models"])
@pytest.mark.parametrize(("mix", "window_s", "kept"), [
    (GeneratorMix(), 120, 256),
    (GeneratorMix(duplicate_ratio=0.3, shuffle_within_interaction=True, late_edit_ratio=0.5), 120, 256),
    (GeneratorMix(duplicate_ratio=0.3, shuffle_within_interaction=True), 5.5, 4),
    (GeneratorMix(late_edit_ratio=1.0), 0.0000015, 1),
    (GeneratorMix(duplicate_ratio=0.5), 120, 0),
], ids=["clean", "duplicates-shuffled-late", "short-window-few-ids", "late-tiny-window", "no-ids-kept"])
def test_generated_histories_fold_alike(mix: GeneratorMix, window_s: float, kept: int, fast: bool) -> None:
    folds = DocumentFolds(window_s, kept)
    for history in generated(mix, 60, seed=11):
        events = [decoded(item, fast=fast) for item in history]
        raw = folds.all(events)
        if raw is not None:  # after the window: the finalized document, then events again
            with native.python_only():
                closed = finalize(InteractionLog.from_bytes(raw)).to_bytes()
            folds.all(events[:3], closed)
    assert folds.handled["interaction.connected"] > 0 and folds.handled["record.viewed"] > 0
    assert folds.handled["log.updated"] > 0 and folds.handled["interaction.attributes"] > 0
    assert folds.finalized > 0
    assert folds.late > 0 or mix.late_edit_ratio == 0  # late edits are answered, not left to the Python


def test_the_compiled_fold_takes_the_accept_path_of_every_type_and_duplicates() -> None:
    folds = DocumentFolds()
    for history in generated(GeneratorMix(duplicate_ratio=0.3), 40, seed=3):
        folds.all([decoded(item, fast=True) for item in history])
    assert set(folds.handled) == TYPES
    assert folds.duplicates > 0
    assert not folds.left
    assert folds.finalized > 0 and not folds.finalize_left


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_shuffled_and_duplicated_histories_fold_alike(history: list[Event], data: st.DataObject) -> None:
    models = list(data.draw(st.permutations(history)))
    for copy in data.draw(st.lists(st.sampled_from(history), max_size=5)):
        models.insert(data.draw(st.integers(0, len(models))), copy)
    events = [fast_twin(event) if data.draw(st.booleans()) else event for event in models]
    window_s = data.draw(st.sampled_from([0, 5, 120, 2.5, 0.0000005]))
    folds = DocumentFolds(window_s, data.draw(st.sampled_from([256, 3, 2, 1, 0])))
    folds.all(events)
    assert folds.handled  # the first event at least: a new log


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=unordered_histories(), data=st.data())
def test_unordered_histories_fold_alike(history: list[Event], data: st.DataObject) -> None:
    """Numbered on all, none, some or against the clock; one or two disconnects; reconnects."""
    models = list(data.draw(st.permutations(history)))
    for copy in data.draw(st.lists(st.sampled_from(history), max_size=3)):
        models.insert(data.draw(st.integers(0, len(models))), copy)
    events = [fast_twin(event) if data.draw(st.booleans()) else event for event in models]
    folds = DocumentFolds(data.draw(st.sampled_from([3600, 60, 0])))
    folds.all(events)
    assert folds.handled


@pytest.mark.parametrize("fast", [True, False], ids=["fast-structs", "models"])
def test_more_than_64_views_keep_the_newest_alike(fast: bool) -> None:
    events = [decoded(document(0, "interaction.connected", 0, CONNECT), fast=fast)]
    order = list(range(1, 90))
    order = order[::2] + order[1::2]  # out of order: inserted between the kept ones
    events += [decoded(document(n, "record.viewed", n, {"record": {"system": "zendesk", "type": "ticket",
                                                                   "id": str(1000 + n)}},
                                sequence=n if n % 3 else None), fast=fast) for n in order]
    events.append(decoded(document(99, "interaction.disconnected", 95), fast=fast))
    events += [decoded(document(100 + n, "record.viewed", 96 + n, {"record": {"system": "zendesk", "type": "ticket",
                                                                              "id": str(n)}}), fast=fast)
               for n in range(3)]
    folds = DocumentFolds()
    raw = folds.all(events)
    log = log_of(raw)
    assert log is not None and len(log.views) == 64
    assert folds.handled["record.viewed"] == 92


@pytest.mark.parametrize("fast", [True, False], ids=["fast-structs", "models"])
def test_attributes_up_to_and_over_100_keys_alike(fast: bool) -> None:
    def attributes(index: int, seconds: float, keys: range, value: str, sequence: int | None = None) -> AnyEvent:
        return decoded(document(index, "interaction.attributes", seconds,
                                {"attributes": {f"k{key:03d}": value for key in keys}}, sequence), fast=fast)

    folds = DocumentFolds()
    raw = folds.all([attributes(1, 1, range(60), "a", 5), attributes(2, 2, range(50, 100), "b", 4),
                     attributes(3, 3, range(99, 101), "c"), attributes(4, 0, range(100), "d"),
                     attributes(5, 4, range(100, 101), "e"), attributes(6, 5, range(0, 100, 7), "f", 9),
                     attributes(7, 6, range(99, -1, -1), "g", 9)])
    log = log_of(raw)
    assert log is not None and len(log.attributes) == 100
    assert folds.left["interaction.attributes"] == 2  # the two that would take it to 101: too_large
    assert folds.handled["interaction.attributes"] == 5


def test_log_updated_with_null_and_ref_choices_alike() -> None:
    name = {"system": "salesforce", "type": "Contact", "id": "003A"}
    case = {"system": "salesforce", "type": "Case", "id": "500A"}
    updates: list[dict[str, Any]] = [
        {"notes": None}, {"name": None, "related_to": case}, {"subject": "S", "notes": "n"},
        {"name": name}, {"related_to": None, "subject": None}, {"notes": "later"}]
    events: list[AnyEvent] = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=False)]
    for index, update in enumerate(updates, start=1):
        for fast in (True, False):
            events.append(decoded(document(index * 10 + fast, "log.updated", 10 - index, update,
                                           None if index % 2 else index), fast=fast))
    folds = DocumentFolds()
    folds.all(events)
    assert folds.handled["log.updated"] == len(events) - 1


def test_transitions_against_the_clock_two_disconnects_and_reconnects_alike() -> None:
    steps = [("interaction.disconnected", 50, 3), ("interaction.connected", 0, 1), ("interaction.held", 10, 2),
             ("interaction.disconnected", 40, 6), ("interaction.resumed", 20, 4), ("interaction.connected", 60, 5),
             ("record.viewed", 45, None), ("interaction.held", 55, 7), ("interaction.connected", 70, None),
             ("interaction.disconnected", 30, None), ("log.opened", 80, 9), ("record.viewed", 46, 10)]
    events: list[AnyEvent] = []
    for index, (event_type, seconds, sequence) in enumerate(steps):
        data = CONNECT if event_type == "interaction.connected" else (
            {"record": {"system": "zendesk", "type": "user", "id": str(index)}} if event_type == "record.viewed"
            else None)
        events.append(decoded(document(index, event_type, seconds, data, sequence), fast=index % 2 == 0))
    for window_s in (3600, 15, 0):
        for order in (events, events[::-1]):
            folds = DocumentFolds(window_s)
            folds.all(order)
            assert folds.handled


def test_a_transition_added_to_transitions_stored_out_of_order_folds_alike() -> None:
    """The fold stores transitions sorted; a document holding them otherwise is read as it stands, and an
    added transition sorts them all, as `sorted` does, rather than going between the stored ones."""
    steps = [("interaction.connected", 0, 1), ("interaction.held", 10, 2), ("interaction.resumed", 20, 3)]
    folds = DocumentFolds()
    raw = folds.all([decoded(document(n, kind, seconds, CONNECT if n == 0 else None, sequence), fast=True)
                     for n, (kind, seconds, sequence) in enumerate(steps)])
    assert raw is not None
    with native.python_only():
        log = InteractionLog.from_bytes(raw)
    held, resumed = (transition for transition in log.transitions if transition[3] in "HR")
    items = [f"[{','.join(str(part) for part in t[:3])},\"{t[3]}\"]".encode() for t in (held, resumed)]
    swapped = raw.replace(items[0] + b"," + items[1], items[1] + b"," + items[0])
    assert swapped != raw
    with native.python_only():
        assert InteractionLog.from_bytes(swapped).to_bytes() == swapped  # a document `to_bytes` can write
    for kind, seconds, sequence in [("interaction.disconnected", 30, 4), ("interaction.held", 15, None),
                                    ("interaction.connected", 5, 9)]:
        data = CONNECT if kind == "interaction.connected" else None
        folds.one(swapped, decoded(document(10 + seconds, kind, seconds, data, sequence), fast=True))
    assert not folds.left and folds.handled["interaction.disconnected"] == 1


def awkward_history(text: str, index: int) -> list[AnyEvent]:
    """One history whose ids, interaction id, notes, wrap-up, records, customer and attributes hold `text`."""
    def item(number: int, event_type: str, seconds: float, data: dict[str, Any] | None = None,
             sequence: int | None = None) -> dict[str, Any]:
        made = document(number, event_type, seconds, data, sequence)
        made["id"] = f"{text}#{number}"
        made["subject"] = f"{text}-conv-{index}"
        return made

    record = {"system": "custom", "type": f"T{text}"[:80], "id": f"{text}!"}
    # a non-ASCII record type in the connect data is left to the Python (`str.lower()` decides its kind)
    connect = {**CONNECT, "queue": text or None, "customer": {"name": text, "address": f"{text}@"},
               "related_to": {**record, "type": "Case"}}
    documents = [
        item(1, "interaction.connected", 0, connect, 1),
        item(2, "log.updated", 1, {"notes": text, "subject": f"S{text}"}, 2),
        item(3, "record.viewed", 2, {"record": record}, 3),
        item(4, "interaction.attributes", 3, {"attributes": {text or "-": text, f"a{text}": "1", "a": text,
                                                              f"{text}z": "2", "\x01": "c", '"': "q", "\\": "b",
                                                              "é": "e", "😀": "s", "Z": "z"}}, None),
        item(5, "interaction.attributes", 4, {"attributes": {f"a{text}": "again", "b": text, "\x1f": text}}, 5),
        item(6, "interaction.wrapup", 5, {"code": f"C{text}", "note": text}, 6),
        item(7, "log.updated", 6, {"related_to": record, "name": None}, 7),
        item(8, "interaction.disconnected", 7, None, 8),
        item(2, "log.updated", 1, {"notes": text}, 2),  # a duplicate: the same id again
    ]
    return [decoded(made, fast=number % 2 == 0) for number, made in enumerate(documents)]


@pytest.mark.parametrize("text", AWKWARD, ids=range(len(AWKWARD)))
def test_texts_that_need_escaping_fold_alike(text: str) -> None:
    folds = DocumentFolds()
    folds.all(awkward_history(text, 0))
    assert not folds.left
    assert folds.duplicates == 1 and folds.finalized == 8


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12))
def test_any_text_folds_alike(text: str) -> None:
    DocumentFolds().all(awkward_history(text, 1))


def test_a_late_edit_is_answered_with_what_words_its_rejection_and_the_rest_left_to_the_python() -> None:
    connect = decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True)
    ended = decoded(document(1, "interaction.disconnected", 1, None, 1), fast=True)
    folds = DocumentFolds(window_s=10)
    raw = folds.all([connect, ended])
    assert raw is not None
    late = decoded(document(2, "log.updated", 12, {"notes": "late"}, 2), fast=True)
    many = decoded(document(3, "interaction.attributes", 2, {"attributes": {f"k{n}": "v" for n in range(100)}}),
                   fast=True)
    with_one = folds.one(raw, decoded(document(4, "interaction.attributes", 2, {"attributes": {"x": "y"}}), fast=True))
    assert with_one is not None
    with native.python_only():
        closed = finalize(InteractionLog.from_bytes(raw))
        for state, event, reason in [(raw, late, "late_edit"), (with_one, many, "too_large")]:
            result = fold(log_of(state), event, edit_window_s=10)
            assert isinstance(result.outcome, Rejected) and result.outcome.rejection.reason == reason
    answer = core().fold_document(raw, late, 10, 256)
    assert type(answer) is tuple and answer[0] is None
    with native.python_only():
        expected = fold(log_of(raw), late, edit_window_s=10).outcome
    assert isinstance(expected, Rejected) and late_edit_rejection(late, *answer[1:]) == expected.rejection
    assert core().fold_document(with_one, many, 10, 256) is None
    assert core().fold_document(None, many, 10, 256) is not None  # a new log takes them: no too_large check
    for event in (late, connect):  # window_closed, and a duplicate of a finalized log: the Python words both
        assert core().fold_document(closed.to_bytes(), event, 10, 256) is None
    assert core().finalize_document(closed.to_bytes()) is None
    tombstone = tombstone_of(closed).to_bytes()
    assert core().fold_document(tombstone, late, 10, 256) is None
    assert core().finalize_document(tombstone) is None


def test_what_else_is_left_to_the_python() -> None:
    connect = decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True)
    opened = decoded(document(1, "log.opened", 1, None, 1), fast=False)
    raw = DocumentFolds().all([connect])
    assert raw is not None
    compiled: Any = core()  # called with what the Protocol does not allow, too
    for window in (float("inf"), float("nan"), 10**18, "120"):
        assert compiled.fold_document(raw, opened, window, 256) is None
    assert compiled.fold_document(raw, opened, 120, 2**64) is None
    assert compiled.fold_document(raw, opened, 120, 2.0) is None
    assert compiled.fold_document(raw.decode(), opened, 120, 256) is None
    assert compiled.fold_document(raw, object(), 120, 256) is None
    assert compiled.finalize_document(raw.decode()) is None
    for past in ({"sequence": 2**63}, {"sequence": True}, {"time": START.replace(tzinfo=None)}):
        assert core().fold_document(raw, opened.model_copy(update=past), 120, 256) is None  # type: ignore[union-attr]
        # a duplicate is one before its time or sequence is read, as in the Python
        again = opened.model_copy(update={**past, "id": "e0"})  # type: ignore[union-attr]
        assert core().fold_document(raw, again, 120, 256) is True
        DocumentFolds().one(raw, again)


def test_a_connect_ref_of_a_type_that_is_not_ascii_is_left_to_the_python() -> None:
    """`is_name_type` lowercases the type with `str.lower()`: the compiled core decides only ASCII."""
    connect = {**CONNECT, "related_to": {"system": "custom", "type": "Cäse", "id": "1"}}
    folds = DocumentFolds()
    raw = folds.all([decoded(document(0, "interaction.connected", 0, connect, 0), fast=True)])
    assert raw is not None and folds.handled["interaction.connected"] == 1
    opened = decoded(document(1, "log.opened", 1, None, 1), fast=True)
    assert core().fold_document(raw, opened, 120, 256) is None
    assert core().finalize_document(raw) is None
    folds.one(raw, opened)


def shapes(raw: bytes) -> list[bytes]:
    """Documents `to_bytes` does not write, made from `raw`."""
    return [
        raw.replace(b',"v":', b', "v":'),  # white space
        raw.replace(b'"k":"log",', b""),  # no kind
        raw[:-1] + b',"zz":1}',  # a key the log does not have
        raw[:-1] + b',"t":[]}',  # an empty fact, and out of order
        raw.replace(b'"g":"state_changed"', b'"g":"changed"'),  # not a trigger
        raw.replace(b'"v":2', b'"v":2.0'),
        raw.replace(b'"v":2', b'"v":02'),
        raw.replace(b'"v":2', b'"v":99999999999999999999'),
        raw.replace(b'"queue":"Support"', b'"queue":"Supp\\/ort"'),  # an escape orjson does not write
        raw.replace(b'"queue":"Support"', b'"queue":"\\u0053upport"'),
        raw.replace(b'"queue":"Support"', b'"queue":null'),
        raw.replace(b'"queue":"Support"', b'"queue":"' + b"q" * 256 + b'"'),  # stored before today's bounds
        raw.replace(b'"media":"voice"', b'"media":"fax"'),
        raw.replace(b'"media":"voice","direction":"inbound"', b'"direction":"inbound","media":"voice"'),
        raw.replace(b'"customer":{"name":"Ada"}', b'"customer":{"name":"Ada","extra":"x"}'),
        raw.replace(b'"customer":{"name":"Ada"}', b'"customer":{"name":"Ada"},"related_to":'
                    b'{"system":"salesforce","type":"Contact","id":"1"}'),  # a Name ref in related_to
        raw.replace(b'"e"', b'"E"'),
        raw.replace(b'"a":["e0","e1"]', b'"a":["e0",1]'),
        raw.replace(b'"a":["e0","e1"]', b'"a":["e0","e1",]'),
        raw + b" ",
        raw.replace(b'"log"', b'"tomb"'),
        b"\xff" + raw,
        raw.replace(b"Support", b"Supp\x01rt"),
    ]


def test_documents_of_other_shapes_are_left_to_the_python() -> None:
    events = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True),
              decoded(document(1, "interaction.disconnected", 1, None, 1), fast=True)]
    raw = DocumentFolds().all(events)
    assert raw is not None and b'"queue":"Support"' in raw and b'"customer":{"name":"Ada"}' in raw
    opened = decoded(document(2, "log.opened", 1, None, 2), fast=True)
    assert core().fold_document(raw, opened, 120, 256) is not None
    for changed in shapes(raw):
        assert changed != raw
        assert core().fold_document(changed, opened, 120, 256) is None, changed
        assert core().finalize_document(changed) is None, changed
    # connect data stored before today's bounds: `from_bytes` cuts it, so the stored bytes are not the log's
    legacy = raw.replace(b'"queue":"Support"', b'"queue":"' + b"q" * 256 + b'"')
    with native.python_only():
        assert InteractionLog.from_bytes(legacy).to_bytes() != legacy


def test_a_document_written_by_the_compiled_fold_goes_on_alike() -> None:
    """The compiled fold's own documents, fed back to it, give what the Python gives from them."""
    folds = DocumentFolds(window_s=60, kept=5)
    for history in generated(GeneratorMix(duplicate_ratio=0.2), 20, seed=5):
        raw: bytes | None = None
        for item in history:
            event = decoded(item, fast=True)
            expected = folds.one(raw, event)
            got = core().fold_document(raw, event, 60, 5)
            raw = got[0] if isinstance(got, tuple) else expected
            assert raw == expected
    assert sum(folds.handled.values()) > 100


@settings(max_examples=200, deadline=None)
@given(window_s=st.floats(0, 1e8) | st.integers(0, 10**8) | st.sampled_from([0.5e-6, 1.5e-6, 2.5e-6, 1e-7]))
def test_the_edit_window_rounds_to_the_same_microsecond(window_s: float) -> None:
    events = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True),
              decoded(document(1, "interaction.disconnected", 1, None, 1), fast=True),
              decoded(document(2, "log.opened", 1, None, 2), fast=True),
              decoded(document(3, "interaction.held", 0.5, None, None), fast=True)]
    folds = DocumentFolds(window_s)
    folds.all(events)
    assert not folds.left


def test_an_id_rolled_out_of_the_kept_ones_is_folded_again_alike() -> None:
    folds = DocumentFolds(window_s=120, kept=3)
    events = [decoded(document(n, "log.opened", n, None, n), fast=True) for n in range(10)]
    events += [decoded(document(n, "log.opened", 20 + n, None), fast=True) for n in (9, 10, 11, 2)]
    log = log_of(folds.all(events))
    assert log is not None and log.applied_ids == ("e10", "e11", "e2")
    assert folds.duplicates == 1 and not folds.left
