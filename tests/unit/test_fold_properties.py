"""Property tests of the fold: order and duplication do not matter, versions only grow."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.decode import decode_event
from schemas.events import Event, Rejection
from worker.core.fold import Accepted, fold, snapshot
from worker.core.state import InteractionLog, Tombstone
from worker.store.wire import decode_state, encode_state

WINDOW_S = 120
BASE_S = 1_790_000_000  # an epoch second in 2026
REFS = [{"system": "salesforce", "type": t, "id": i} for t, i in
        [("Contact", "003A"), ("Lead", "00QA"), ("Case", "500A"), ("Case", "500B"), ("Opportunity", "006A")]]
REFS.append({"system": "zendesk", "type": "ticket", "id": "77"})

_during_call = st.one_of(
    st.tuples(st.just("interaction.held"), st.none()),
    st.tuples(st.just("interaction.resumed"), st.none()),
    st.tuples(st.just("record.viewed"), st.sampled_from(REFS).map(lambda r: {"record": r})),
    st.tuples(st.just("log.opened"), st.none()),
    st.tuples(st.just("log.updated"), st.fixed_dictionaries({}, optional={
        "notes": st.none() | st.sampled_from(["a", "b", "c"]),
        "subject": st.none() | st.sampled_from(["S1", "S2"]),
        "name": st.none() | st.sampled_from(REFS[:2]),
        "related_to": st.none() | st.sampled_from(REFS[2:]),
    }).filter(bool)),
    st.tuples(st.just("interaction.attributes"), st.dictionaries(st.sampled_from(["tier", "lang"]),
                                                                  st.sampled_from(["x", "y"]), min_size=1)
              .map(lambda a: {"attributes": a})),
    st.tuples(st.just("interaction.wrapup"), st.builds(lambda c, n: {"code": c, "note": n},
                                                       st.sampled_from(["A", "B"]), st.none() | st.just("w"))),
)
_after_call = _during_call | st.tuples(
    st.just("interaction.connected"), st.just({"media": "chat", "direction": "outbound"}))


def _document(index: int, event_type: str, time_s: int, data: dict[str, Any] | None) -> dict[str, Any]:
    document: dict[str, Any] = {"specversion": "1.0", "id": f"e{index}", "source": "/prop", "type": event_type,
                                "subject": "conv-p", "time": f"@{time_s}", "sequence": index}
    if data is not None:
        document["data"] = data
    return document


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """A valid interaction with sequence numbers; every event is inside the edit window."""
    connect = {"media": draw(st.sampled_from(["voice", "chat", "email"])), "direction": "inbound",
               "queue": draw(st.none() | st.just("Support")), "customer": {"name": "Ada"},
               "name": draw(st.none() | st.just(REFS[0]))}
    during = draw(st.lists(_during_call, max_size=12))
    after = draw(st.lists(_after_call, max_size=4))
    gaps = draw(st.lists(st.integers(1, 20), min_size=len(during) + len(after) + 2,
                         max_size=len(during) + len(after) + 2))
    steps = [("interaction.connected", connect), *during, ("interaction.disconnected", {}), *after]
    documents, time_s = [], BASE_S
    for index, ((event_type, data), gap) in enumerate(zip(steps, gaps, strict=False), start=1):
        documents.append(_document(index, event_type, time_s, data))
        time_s += gap if index <= len(during) + 1 else min(gap, 5)  # after the call: within the window
    return [_decode(document) for document in documents]


def _decode(document: dict[str, Any]) -> Event:
    document = {**document, "time": _rfc3339(int(document["time"][1:]))}
    decoded = decode_event(json.dumps(document).encode())
    assert not isinstance(decoded, Rejection), decoded
    return decoded


def _rfc3339(epoch_s: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch_s, UTC).isoformat().replace("+00:00", "Z")


def _fold_all(events: list[Event]) -> InteractionLog:
    state: InteractionLog | Tombstone | None = None
    for event in events:
        state = fold(state, event, edit_window_s=WINDOW_S).log
    assert isinstance(state, InteractionLog)
    return state


def _visible(log: InteractionLog) -> dict[str, Any]:
    return snapshot(log).model_dump(exclude={"version", "trigger"})


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_any_permutation_and_duplication_folds_to_the_same_final_log(history: list[Event], data: st.DataObject) -> None:
    expected = _visible(_fold_all(history))
    shuffled = data.draw(st.permutations(history))
    copies = data.draw(st.lists(st.sampled_from(history), max_size=5))
    mixed = list(shuffled)
    for copy in copies:
        mixed.insert(data.draw(st.integers(0, len(mixed))), copy)
    assert _visible(_fold_all(mixed)) == expected


@settings(max_examples=100, deadline=None)
@given(history=histories(), data=st.data())
def test_versions_only_grow_and_grow_by_one_per_accepted_event(history: list[Event], data: st.DataObject) -> None:
    events = data.draw(st.lists(st.sampled_from(history), max_size=30))
    window_s = data.draw(st.sampled_from([0, 5, 120]))
    state: InteractionLog | Tombstone | None = None
    for event in events:
        before = state.version if state is not None else 0
        result = fold(state, event, edit_window_s=window_s)
        after = result.log.version if result.log is not None else 0
        assert after == before + (1 if isinstance(result.outcome, Accepted) else 0)
        state = result.log


@settings(max_examples=100, deadline=None)
@given(history=histories(), data=st.data())
def test_log_bytes_round_trip_to_an_equal_log(history: list[Event], data: st.DataObject) -> None:
    log = _fold_all(data.draw(st.permutations(history)))
    assert InteractionLog.from_bytes(log.to_bytes()) == log
    assert decode_state(*encode_state(log)) == log


_CONNECTED = [("interaction.connected", {"media": "voice", "direction": "inbound", "queue": "Support"})]
_numbering = st.sampled_from(["every", "none", "some", "against the clock"])


@st.composite
def unordered_histories(draw: st.DrawFn) -> list[Event]:
    """A connect, one or two disconnects and other events in any order of event time, numbered on every
    event, on none, on some, or against the clock (as two services of the platform may number and stamp
    them). Times are distinct, and so are sequences where given: neither "then arrival order" nor the edit
    window (the fold runs with a window longer than the history) decides anything, so the final log must
    not depend on the order of arrival."""
    disconnects: list[tuple[str, dict[str, Any]]] = [("interaction.disconnected", {})] * draw(st.integers(1, 2))
    steps = draw(st.permutations([*_CONNECTED, *disconnects, *draw(st.lists(_after_call, max_size=8))]))
    count = len(steps)
    times = draw(st.lists(st.integers(0, 600), min_size=count, max_size=count, unique=True))
    numbering = draw(_numbering)
    numbers = draw(st.permutations(range(count))) if numbering == "against the clock" else list(range(count))
    documents = []
    for index, ((event_type, data), time_s, number) in enumerate(zip(steps, times, numbers, strict=True), start=1):
        document = _document(index, event_type, BASE_S + time_s, data)
        if numbering == "none" or (numbering == "some" and draw(st.booleans())):
            del document["sequence"]
        else:
            document["sequence"] = number
        documents.append(document)
    return [_decode(document) for document in documents]


def _fold_all_within(events: list[Event], window_s: int) -> InteractionLog:
    state: InteractionLog | Tombstone | None = None
    for event in events:
        state = fold(state, event, edit_window_s=window_s).log
    assert isinstance(state, InteractionLog)
    return state


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=unordered_histories(), data=st.data())
def test_any_arrival_order_of_unordered_numbered_or_unnumbered_events_folds_to_the_same_log(
    history: list[Event], data: st.DataObject,
) -> None:
    window_s = 3600
    expected = _visible(_fold_all_within(history, window_s))
    shuffled = list(data.draw(st.permutations(history)))
    for copy in data.draw(st.lists(st.sampled_from(history), max_size=3)):
        shuffled.insert(data.draw(st.integers(0, len(shuffled))), copy)
    assert _visible(_fold_all_within(shuffled, window_s)) == expected


@st.composite
def transitions_sharing_instants(draw: st.DrawFn) -> list[Event]:
    """Unnumbered connects, holds, resumes and disconnects stamped to the second, so a connect or a disconnect may
    share its instant with any other transition (a call shorter than the timestamps' resolution); holds and resumes
    keep instants of their own (between two of them at one instant, arrival order decides, as documented)."""
    hold_times = draw(st.lists(st.integers(0, 20), max_size=4, unique=True))
    steps = [*(("interaction.held" if index % 2 == 0 else "interaction.resumed", time_s)
               for index, time_s in enumerate(sorted(hold_times))),
             *(("interaction.connected", time_s) for time_s in draw(st.lists(st.integers(0, 20), min_size=1,
                                                                              max_size=2))),
             *(("interaction.disconnected", time_s) for time_s in draw(st.lists(st.integers(0, 20), min_size=1,
                                                                                 max_size=2)))]
    data = {"interaction.connected": {"media": "voice", "direction": "inbound", "queue": "Support"}}
    documents = [_document(index, kind, BASE_S + time_s, data.get(kind)) for index, (kind, time_s) in enumerate(steps)]
    for document in documents:
        del document["sequence"]
    return [_decode(document) for document in documents]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=transitions_sharing_instants(), data=st.data())
def test_a_connect_or_disconnect_sharing_an_instant_folds_alike_in_any_arrival_order(
    history: list[Event], data: st.DataObject,
) -> None:
    """At one instant a connect goes first and a disconnect last: a disconnect that arrives before the connect of
    its instant does not turn that connect into an ignored reconnect."""
    window_s = 3600
    expected = _visible(_fold_all_within(history, window_s))
    assert _visible(_fold_all_within(list(data.draw(st.permutations(history))), window_s)) == expected


def test_a_disconnect_arriving_before_the_connect_of_its_instant_leaves_a_call_of_0_seconds() -> None:
    moment = BASE_S + 10
    documents = [_document(1, "interaction.disconnected", moment, {}),
                 _document(2, "interaction.connected", moment, {"media": "voice", "direction": "inbound"})]
    for document in documents:
        del document["sequence"]
    shown = snapshot(_fold_all_within([_decode(document) for document in documents], 120))
    assert (shown.state, shown.connected_at, shown.disconnected_at, shown.duration_seconds, shown.ignored_reconnects,
            shown.media) == ("disconnected", shown.disconnected_at, shown.disconnected_at, 0, 0, "voice")
    assert shown.connected_at is not None
