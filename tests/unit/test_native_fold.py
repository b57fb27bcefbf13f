"""The compiled fold (`native/src/fold.rs`) gives exactly the Python's `FoldResult` (`worker.core.fold`).

Every event is folded three ways from the same state: by the Python alone (`native.python_only()`), by
the compiled function itself, and by `fold` with the compiled core in use (the compiled result, or the
Python's where the compiled fold leaves the event to it). After each event the results must agree: equal
logs whose fields hold the same types all the way down (a `Stamp` where the Python has a `Stamp`, a plain
tuple where it has one), the same outcome (the very `Accepted` and `Duplicate` objects), an unchanged
state returned as the same object exactly when the Python returns it, and equal rejections. The final
logs must give the same stored bytes and snapshot JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import decode_event
from schemas.events import Event, Rejection
from schemas.fast import AnyEvent, decode_event_fast
from tests.unit.test_fold_properties import histories, unordered_histories
from worker.core import native
from worker.core.fold import Accepted, Duplicate, FoldResult, finalize, fold, tombstone_of
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, Stamp, Tombstone, Transition
from worker.dev.generator import GeneratorMix, generate_histories

pytestmark = pytest.mark.unit

State = InteractionLog | Tombstone | None
START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
FIELDS = [name for name in InteractionLog.__slots__ if name != "derived"]


def core() -> native.Core:
    installed = native.installed()
    if installed is None or not hasattr(installed, "fold_setup"):  # not installed, or built before the fold
        if os.environ.get("ILOG_NATIVE_CORE", "").lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false: the Python alone is under test")
        pytest.fail("the compiled core (ilog_native) with the fold is not installed: run `make install`")
    return installed


@pytest.fixture(autouse=True)
def compiled_core_in_use() -> Any:
    before = native.CORE
    native.use_native_core(True)
    yield
    native.CORE = before


def shape(value: object) -> object:
    """The types of a value, down through its tuples."""
    if isinstance(value, tuple):
        return type(value), [shape(item) for item in value]
    return type(value)


def assert_same(got: object, expected: FoldResult, state: State) -> None:
    assert type(got) is FoldResult
    assert isinstance(got, FoldResult)
    assert type(got.outcome) is type(expected.outcome)
    if isinstance(expected.outcome, (Accepted, Duplicate)):
        assert got.outcome is expected.outcome
    else:
        assert got.outcome == expected.outcome
    assert (got.log is state) == (expected.log is state)
    assert type(got.log) is type(expected.log)
    assert got.log == expected.log
    if isinstance(got.log, InteractionLog) and isinstance(expected.log, InteractionLog):
        for name in FIELDS:
            assert shape(getattr(got.log, name)) == shape(getattr(expected.log, name)), name
        if got.log is not state:
            assert got.log.derived is not None
            if isinstance(state, InteractionLog):
                assert got.log.derived is state.derived  # shared with the previous version, as evolve_log does


class Folds:
    """Folds events three ways and compares; counts what the compiled fold handled itself."""

    def __init__(self, window_s: float = 120, kept: int = 256) -> None:
        self.window_s = window_s
        self.kept = kept
        self.handled: Counter[str] = Counter()
        self.left: Counter[str] = Counter()

    def one(self, state: State, event: AnyEvent) -> FoldResult:
        with native.python_only():
            expected = fold(state, event, edit_window_s=self.window_s, applied_ids_kept=self.kept)
        compiled = core().fold(state, event, self.window_s, self.kept)
        if compiled is None:
            self.left[event.type] += 1
        else:
            self.handled[event.type] += 1
            assert isinstance(expected.outcome, (Accepted, Duplicate)), "the Python words every rejection"
            assert_same(compiled, expected, state)
        assert_same(fold(state, event, edit_window_s=self.window_s, applied_ids_kept=self.kept), expected, state)
        return expected

    def all(self, events: list[AnyEvent], state: State = None) -> State:
        """Fold in order, comparing each step; the chain folded with the compiled core in use must end in
        an equal log that gives the same stored bytes and snapshot JSON."""
        through = state
        for event in events:
            expected = self.one(state, event)
            result = fold(through, event, edit_window_s=self.window_s, applied_ids_kept=self.kept)
            assert result.outcome == expected.outcome
            state, through = expected.log, result.log
        assert through == state
        if isinstance(state, InteractionLog):
            assert isinstance(through, InteractionLog)
            assert through.to_bytes() == state.to_bytes()
            assert snapshot_json(through) == snapshot_json(state)
        return state


def decoded(document: dict[str, Any], *, fast: bool) -> AnyEvent:
    raw = json.dumps(document).encode()
    event = decode_event_fast(raw) if fast else decode_event(raw)
    assert not isinstance(event, Rejection), event
    return event


def model(item: dict[str, Any]) -> Event:
    event = decode_event(json.dumps(item).encode())
    assert not isinstance(event, Rejection), event
    return event


def fast_twin(event: Event) -> AnyEvent:
    """The same event through the fast decoder (a msgspec struct where it takes it, else the model)."""
    twin = decode_event_fast(event.model_dump_json(exclude_unset=True).encode())
    assert not isinstance(twin, Rejection), twin
    return twin


def generated(mix: GeneratorMix, count: int, seed: int) -> list[list[dict[str, Any]]]:
    return generate_histories(count, seed=seed, start=START, rate_per_s=5, mix=mix)


@pytest.mark.parametrize("fast", [True, False], ids=["fast-structs", "models"])
@pytest.mark.parametrize(("mix", "window_s", "kept"), [
    (GeneratorMix(), 120, 256),
    (GeneratorMix(duplicate_ratio=0.3, shuffle_within_interaction=True, late_edit_ratio=0.5), 120, 256),
    (GeneratorMix(duplicate_ratio=0.3, shuffle_within_interaction=True), 5.5, 4),
    (GeneratorMix(late_edit_ratio=1.0), 0.0000015, 1),
    (GeneratorMix(duplicate_ratio=0.5), 120, 0),
], ids=["clean", "duplicates-shuffled-late", "short-window-few-ids", "late-tiny-window", "no-ids-kept"])
def test_generated_histories_fold_alike(mix: GeneratorMix, window_s: float, kept: int, fast: bool) -> None:
    folds = Folds(window_s, kept)
    for history in generated(mix, 60, seed=11):
        events = [decoded(document, fast=fast) for document in history]
        state = folds.all(events)
        if isinstance(state, InteractionLog):
            # after the window: a finalized log and its tombstone, then every event again
            closed = finalize(state)
            folds.all(events[:3], closed)
            folds.all(events[:3], tombstone_of(closed))
    assert folds.handled["interaction.connected"] > 0 and folds.handled["record.viewed"] > 0
    assert folds.handled["log.updated"] > 0 and folds.handled["interaction.attributes"] > 0


def test_the_compiled_fold_takes_the_accept_path_of_every_type_and_duplicates() -> None:
    folds = Folds()
    for history in generated(GeneratorMix(duplicate_ratio=0.3), 40, seed=3):
        folds.all([decoded(document, fast=True) for document in history])
    assert set(folds.handled) == {"interaction.connected", "interaction.held", "interaction.resumed",
                                  "interaction.disconnected", "log.updated", "record.viewed", "log.opened",
                                  "interaction.wrapup", "interaction.attributes"}
    assert not folds.left


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_shuffled_and_duplicated_histories_fold_alike(history: list[Event], data: st.DataObject) -> None:
    models = list(data.draw(st.permutations(history)))
    for copy in data.draw(st.lists(st.sampled_from(history), max_size=5)):
        models.insert(data.draw(st.integers(0, len(models))), copy)
    events = [fast_twin(event) if data.draw(st.booleans()) else event for event in models]
    window_s = data.draw(st.sampled_from([0, 5, 120, 2.5, 0.0000005]))
    Folds(window_s, data.draw(st.sampled_from([256, 3, 1]))).all(events)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=unordered_histories(), data=st.data())
def test_unordered_histories_fold_alike(history: list[Event], data: st.DataObject) -> None:
    """Numbered on all, none, some or against the clock; one or two disconnects; reconnects."""
    models = list(data.draw(st.permutations(history)))
    for copy in data.draw(st.lists(st.sampled_from(history), max_size=3)):
        models.insert(data.draw(st.integers(0, len(models))), copy)
    events = [fast_twin(event) if data.draw(st.booleans()) else event for event in models]
    Folds(data.draw(st.sampled_from([3600, 60, 0]))).all(events)


def document(index: int, event_type: str, seconds: float, data: dict[str, Any] | None = None,
             sequence: int | None = None) -> dict[str, Any]:
    moment = START + timedelta(seconds=seconds)
    item: dict[str, Any] = {"specversion": "1.0", "id": f"e{index}", "source": "/test", "type": event_type,
                            "subject": "conv-n", "time": moment.isoformat().replace("+00:00", "Z")}
    if data is not None:
        item["data"] = data
    if sequence is not None:
        item["sequence"] = sequence
    return item


CONNECT = {"media": "voice", "direction": "inbound", "queue": "Support", "customer": {"name": "Ada"}}


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
    folds = Folds()
    state = folds.all(events)
    assert isinstance(state, InteractionLog) and len(state.views) == 64
    assert folds.handled["record.viewed"] == 92


@pytest.mark.parametrize("fast", [True, False], ids=["fast-structs", "models"])
def test_attributes_up_to_and_over_100_keys_alike(fast: bool) -> None:
    def attributes(index: int, seconds: float, keys: range, value: str, sequence: int | None = None) -> AnyEvent:
        return decoded(document(index, "interaction.attributes", seconds,
                                {"attributes": {f"k{key:03d}": value for key in keys}}, sequence), fast=fast)

    folds = Folds()
    state = folds.all([attributes(1, 1, range(60), "a", 5), attributes(2, 2, range(50, 100), "b", 4),
                       attributes(3, 3, range(99, 101), "c"), attributes(4, 0, range(100), "d"),
                       attributes(5, 4, range(100, 101), "e"), attributes(6, 5, range(0, 100, 7), "f", 9),
                       attributes(7, 6, range(99, -1, -1), "g", 9)])
    assert isinstance(state, InteractionLog) and len(state.attributes) == 100
    assert folds.left["interaction.attributes"] == 2  # the two that would take it to 101: too_large


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
    Folds().all(events)


def test_transitions_against_the_clock_two_disconnects_and_reconnects_alike() -> None:
    steps = [("interaction.disconnected", 50, 3), ("interaction.connected", 0, 1), ("interaction.held", 10, 2),
             ("interaction.disconnected", 40, 6), ("interaction.resumed", 20, 4), ("interaction.connected", 60, 5),
             ("record.viewed", 45, None), ("interaction.held", 55, 7), ("interaction.connected", 70, None),
             ("interaction.disconnected", 30, None), ("log.opened", 80, 9)]
    events: list[AnyEvent] = []
    for index, (event_type, seconds, sequence) in enumerate(steps):
        data = CONNECT if event_type == "interaction.connected" else (
            {"record": {"system": "zendesk", "type": "user", "id": "9"}} if event_type == "record.viewed" else None)
        events.append(decoded(document(index, event_type, seconds, data, sequence), fast=index % 2 == 0))
    for window_s in (3600, 15, 0):
        Folds(window_s).all(events)
        Folds(window_s).all(events[::-1])


def test_a_log_read_without_its_derived_gets_one_shared_with_the_next_version() -> None:
    events = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True),
              decoded(document(1, "log.updated", 1, {"notes": "n"}, 1), fast=True)]
    log = Folds().all(events)
    assert isinstance(log, InteractionLog)
    read = InteractionLog.from_bytes(log.to_bytes())
    assert read.derived is None
    result = core().fold(read, decoded(document(2, "log.opened", 2), fast=True), 120, 256)
    assert isinstance(result, FoldResult) and isinstance(result.log, InteractionLog)
    assert result.log.derived is not None and result.log.derived is read.derived
    assert type(result.log.transitions[0]) is Transition and result.log.notes is not None
    assert type(result.log.notes[0]) is Stamp


def test_what_the_compiled_fold_leaves_to_the_python() -> None:
    connect = model(document(0, "interaction.connected", 0, CONNECT, 0))
    log = fold(None, connect, edit_window_s=120).log
    assert isinstance(log, InteractionLog)
    opened = model(document(1, "log.opened", 1, None, 1))
    leave = [
        opened.model_copy(update={"sequence": 2**63}),  # past 64 bits
        opened.model_copy(update={"sequence": True}),
    ]
    folds = Folds()
    for event in leave:
        assert core().fold(log, event, 120, 256) is None
        folds.one(log, event)
    compiled: Any = core()  # called with what the Protocol does not allow, too
    for window in (float("inf"), float("nan"), 10**18, "120"):
        assert compiled.fold(log, opened, window, 256) is None
    assert compiled.fold(log, opened, 120, 2**64) is None
    assert compiled.fold(log, opened, 120, 2.0) is None
    assert core().fold(Tombstone("conv-n", 3, START), opened, 120, 256) is None
    assert core().fold(finalize(log), opened, 120, 256) is None
    assert core().fold(log, object(), 120, 256) is None
    naive = opened.model_copy(update={"time": datetime(2026, 11, 27, 10, 0, 1)})  # naive, on purpose
    assert core().fold(log, naive, 120, 256) is None
    with pytest.raises(TypeError):
        fold(log, naive, edit_window_s=120)
    # an aware time in another zone converts exactly as the Python's `to_us`
    two_hours_east = timezone(timedelta(hours=2))
    elsewhere = opened.model_copy(update={"time": datetime(2026, 11, 27, 12, 0, 1, 5, tzinfo=two_hours_east)})
    assert core().fold(log, elsewhere, 120, 256) is not None
    folds.one(log, elsewhere)
    for window in (0, 1, 7.25, 2.5e-6, 3.5e-6, True):
        Folds(window).all([opened, decoded(document(2, "interaction.disconnected", 2, None, 2), fast=True)], log)


def test_fold_setup_runs_once() -> None:
    with pytest.raises(RuntimeError, match="set up already"):
        core().fold_setup({})


@settings(max_examples=300, deadline=None)
@given(window_s=st.floats(0, 1e8) | st.integers(0, 10**8) | st.sampled_from([0.5e-6, 1.5e-6, 2.5e-6, 1e-7]))
def test_the_edit_window_rounds_to_the_same_microsecond(window_s: float) -> None:
    """`round(edit_window_s * 1_000_000)`, half to even, for floats and ints: the deadline it sets."""
    events = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True),
              decoded(document(1, "interaction.disconnected", 1, None, 1), fast=True),
              decoded(document(2, "log.opened", 1, None, 2), fast=True)]
    Folds(window_s).all(events)
