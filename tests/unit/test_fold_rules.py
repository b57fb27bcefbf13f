"""One example per fold rule (DESIGN.md "Fold rules"); property tests live in test_fold_properties."""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas import RecordRef, State, Trigger
from schemas.decode import decode_event
from schemas.events import Event, Rejection, RejectReason
from schemas.snapshot import LogSnapshot
from worker.core.fold import Accepted, Duplicate, FoldResult, Rejected, finalize, fold, snapshot, tombstone_of
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, Tombstone

WINDOW_S = 120.0
_ids = itertools.count(1)


def at(clock: str) -> str:
    return f"2026-11-27T{clock}Z"


def ev(event_type: str, clock: str, data: dict[str, Any] | None = None, *, seq: int | None = None,
       event_id: str | None = None, subject: str = "conv-1") -> Event:
    """An event built through the real decoder, so the tests exercise the wire contract."""
    document: dict[str, Any] = {"specversion": "1.0", "id": event_id or f"evt-{next(_ids)}",
                                "source": "/test", "type": event_type, "subject": subject, "time": at(clock)}
    if seq is not None:
        document["sequence"] = seq
    if data is not None:
        document["data"] = data
    decoded = decode_event(json.dumps(document).encode())
    assert not isinstance(decoded, Rejection), decoded
    return decoded


def ref(record_type: str, record_id: str, system: str = "salesforce") -> dict[str, str]:
    return {"system": system, "type": record_type, "id": record_id}


def rec(record_type: str, record_id: str, system: str = "salesforce") -> RecordRef:
    return RecordRef.model_validate(ref(record_type, record_id, system))


def connected(clock: str = "10:00:00", *, seq: int | None = None, **data: Any) -> Event:
    payload = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
               "customer": {"address": "+4930123456", "name": "Ada Example"}, **data}
    return ev("interaction.connected", clock, payload, seq=seq)


def run(events: Iterable[Event], state: InteractionLog | Tombstone | None = None,
        window_s: float = WINDOW_S) -> tuple[InteractionLog | Tombstone | None, list[FoldResult]]:
    results = []
    for event in events:
        result = fold(state, event, edit_window_s=window_s)
        results.append(result)
        state = result.log
    return state, results


def snap(events: Iterable[Event]) -> LogSnapshot:
    log, _ = run(events)
    assert isinstance(log, InteractionLog)
    return snapshot(log)


@pytest.mark.parametrize("first", [
    connected(), ev("interaction.held", "10:01:00"), ev("log.updated", "10:01:00", {"notes": "n"}),
    ev("record.viewed", "10:01:00", {"record": ref("Case", "500A")}), ev("log.opened", "10:01:00"),
    ev("interaction.disconnected", "10:05:00"), ev("interaction.wrapup", "10:06:00", {"code": "Done"}),
    ev("interaction.attributes", "10:01:00", {"attributes": {"tier": "gold"}}),
], ids=lambda event: event.type)
def test_first_event_of_any_type_creates_the_log(first: Event) -> None:
    result = fold(None, first, edit_window_s=WINDOW_S)
    assert result.outcome == Accepted(Trigger.CREATED)
    assert isinstance(result.log, InteractionLog)
    assert (result.log.interaction_id, result.log.version, result.log.trigger) == ("conv-1", 1, Trigger.CREATED)


def test_duplicate_id_changes_nothing() -> None:
    note = ev("log.updated", "10:01:00", {"notes": "first"}, event_id="evt-dup")
    log, _ = run([connected(), note])
    again = fold(log, note, edit_window_s=WINDOW_S)
    assert again.outcome == Duplicate()
    assert again.log is log


def test_with_sequence_a_later_value_never_loses_to_an_earlier_one() -> None:
    newer = ev("log.updated", "10:01:00", {"notes": "newer"}, seq=5)
    older_but_later_clock = ev("log.updated", "10:02:00", {"notes": "older"}, seq=4)
    assert snap([connected(seq=1), newer, older_but_later_clock]).notes == "newer"
    assert snap([connected(seq=1), older_but_later_clock, newer]).notes == "newer"


def test_without_sequence_event_time_decides_then_arrival_order() -> None:
    late = ev("log.updated", "10:02:00", {"notes": "late"})
    early = ev("log.updated", "10:01:00", {"notes": "early"})
    assert snap([connected(), late, early]).notes == "late"
    first, second = (ev("log.updated", "10:03:00", {"subject": s}) for s in ("first", "second"))
    assert snap([connected(), first, second]).subject == "second"


def test_state_machine_derives_talk_hold_and_duration_from_event_time() -> None:
    events = [connected("10:00:00"), ev("interaction.held", "10:01:00"), ev("interaction.resumed", "10:01:30"),
              ev("interaction.held", "10:03:00"), ev("interaction.resumed", "10:03:10"),
              ev("interaction.disconnected", "10:05:00", {"reason": "hung up"})]
    shuffled = [events[5], events[2], events[0], events[4], events[1], events[3]]
    for order in (events, shuffled):
        result = snap(order)
        assert (result.state, result.duration_seconds, result.hold_seconds, result.hold_count,
                result.talk_seconds) == (State.DISCONNECTED, 300, 40, 2, 260)
        assert (result.connected_at, result.disconnected_at, result.edit_deadline) == (
            datetime(2026, 11, 27, 10, 0, tzinfo=UTC), datetime(2026, 11, 27, 10, 5, tzinfo=UTC),
            datetime(2026, 11, 27, 10, 7, tzinfo=UTC))


@pytest.mark.parametrize(("clocks", "expected"), [
    ([("C", "10:00:00")], (State.CONNECTED, None, 0, 0, None)),
    ([("C", "10:00:00"), ("H", "10:01:00")], (State.HELD, None, 0, 1, None)),
    ([("C", "10:00:00"), ("H", "10:01:00"), ("D", "10:02:00")], (State.DISCONNECTED, 120, 60, 1, 60)),
    ([("C", "10:00:00"), ("H", "10:01:00"), ("H", "10:01:30"), ("R", "10:02:00"), ("D", "10:03:00")],
     (State.DISCONNECTED, 180, 60, 1, 120)),
    ([("C", "10:00:00"), ("R", "10:01:00"), ("D", "10:02:00")], (State.DISCONNECTED, 120, 0, 0, 120)),
    ([("C", "10:00:00"), ("D", "10:02:00"), ("H", "10:02:10"), ("R", "10:02:40")],
     (State.DISCONNECTED, 120, 0, 0, 120)),
], ids=["connected", "held", "disconnect-while-held-ends-hold", "second-held-ignored", "resume-without-hold",
        "held-after-disconnect-changes-nothing"])
def test_state_machine_transitions_table(clocks: list[tuple[str, str]],
                                         expected: tuple[State, int | None, int, int, int | None]) -> None:
    kinds = {"H": "interaction.held", "R": "interaction.resumed", "D": "interaction.disconnected"}
    events = [connected(clock) if kind == "C" else ev(kinds[kind], clock) for kind, clock in clocks]
    result = snap(events)
    assert (result.state, result.duration_seconds, result.hold_seconds, result.hold_count,
            result.talk_seconds) == expected


@pytest.mark.parametrize(("clocks", "expected"), [
    ([("C", "10:00:00", 1), ("H", "10:01:00", 2), ("R", "10:00:59", 3)], (State.CONNECTED, None, 0, 1, None, None)),
    ([("C", "10:00:00", 1), ("H", "10:01:00", 2), ("R", "10:00:59", 3), ("D", "10:02:00", 4)],
     (State.DISCONNECTED, 120, 0, 1, 120, "10:04:00")),
    ([("C", "10:00:00", 1), ("D", "10:02:00", 2), ("H", "10:01:00", 3)],
     (State.DISCONNECTED, 120, 0, 0, 120, "10:04:00")),
    ([("C", "10:00:00", 1), ("D", "10:03:00", 2), ("D", "10:02:00", 3)],
     (State.DISCONNECTED, 180, 0, 0, 180, "10:05:00")),
], ids=["resume-numbered-after-the-hold", "then-disconnected", "hold-numbered-after-the-disconnect",
        "first-disconnect-by-sequence"])
def test_with_sequence_transitions_follow_the_sequence_when_the_clocks_disagree(
    clocks: list[tuple[str, str, int]], expected: tuple[State, int | None, int, int, int | None, str | None],
) -> None:
    """Two clocks (e.g. two services of the platform) may stamp a later transition a moment earlier: the
    producer's numbering decides the state, and a span that would run backwards counts as zero."""
    kinds = {"H": "interaction.held", "R": "interaction.resumed", "D": "interaction.disconnected"}
    events = [connected(clock, seq=seq) if kind == "C" else ev(kinds[kind], clock, seq=seq)
              for kind, clock, seq in clocks]
    for order in itertools.permutations(events):
        result = snap(order)
        deadline = None if result.edit_deadline is None else result.edit_deadline.strftime("%H:%M:%S")
        assert expected == (result.state, result.duration_seconds, result.hold_seconds, result.hold_count,
                            result.talk_seconds, deadline)


def test_transitions_without_sequence_on_every_one_follow_event_time() -> None:
    events = [connected("10:00:00"), ev("interaction.held", "10:01:00", seq=5), ev("interaction.resumed", "10:02:00"),
              ev("interaction.disconnected", "10:03:00", seq=6)]
    result = snap(events)
    assert (State.DISCONNECTED, 180, 60, 1, 120) == (result.state, result.duration_seconds, result.hold_seconds,
                                                     result.hold_count, result.talk_seconds)


def test_edit_deadline_follows_the_first_disconnect_when_a_transition_without_sequence_reorders_them() -> None:
    """Two disconnects numbered against their clocks: by sequence the one at 10:05 is first, but a transition
    without a sequence puts the walk in event-time order, where 10:04 is; the deadline follows in any order."""
    events = [connected("10:00:00", seq=1), ev("interaction.disconnected", "10:05:00", seq=5),
              ev("interaction.disconnected", "10:04:00", seq=6), ev("interaction.held", "10:01:00")]
    for order in itertools.permutations(events):
        log, _ = run(order)
        assert isinstance(log, InteractionLog)
        result = snapshot(log)
        assert (result.disconnected_at, result.edit_deadline) == (
            datetime(2026, 11, 27, 10, 4, tzinfo=UTC), datetime(2026, 11, 27, 10, 6, tzinfo=UTC)), order
        late = fold(log, ev("log.updated", "10:06:30", {"notes": "late"}), edit_window_s=WINDOW_S)
        assert isinstance(late.outcome, Rejected) and late.outcome.rejection.reason is RejectReason.LATE_EDIT


def test_second_connected_after_disconnect_is_ignored_and_counted() -> None:
    log, results = run([connected("10:00:00"), ev("interaction.disconnected", "10:05:00"),
                        connected("10:05:30", media="chat")])
    assert isinstance(log, InteractionLog)
    assert results[-1].outcome == Accepted(Trigger.UPDATED)
    result = snapshot(log)
    assert (result.state, result.media, result.ignored_reconnects, result.duration_seconds) == (
        State.DISCONNECTED, "voice", 1, 300)


@pytest.mark.parametrize(("viewed", "field"), [
    (ref("Contact", "003A"), "name"), (ref("Lead", "00QA"), "name"), (ref("user", "77", "zendesk"), "name"),
    (ref("Case", "500A"), "related_to"), (ref("Opportunity", "006A"), "related_to"),
    (ref("ticket", "123", "zendesk"), "related_to"), (ref("Account", "001A"), "related_to"),
    # "Name takes Contact and Lead (Zendesk: user)": a user elsewhere is Related to
    (ref("User", "005A"), "related_to"), (ref("user", "u-9", "custom"), "related_to"),
    (ref("contact", "c-1", "custom"), "name"),
])
def test_record_viewed_while_active_adds_a_candidate_and_selects_it(viewed: dict[str, str], field: str) -> None:
    result = snap([connected("10:00:00", name=ref("Contact", "003Z")), ev("record.viewed", "10:01:00",
                                                                         {"record": viewed})])
    expected = RecordRef.model_validate(viewed)
    assert getattr(result, field) == expected
    candidates = result.name_candidates if field == "name" else result.related_candidates
    assert candidates == [expected]


def test_navigation_between_records_keeps_candidates_in_order_and_selects_the_latest() -> None:
    result = snap([connected("10:00:00"),
                   ev("record.viewed", "10:01:00", {"record": ref("Case", "500A")}),
                   ev("record.viewed", "10:02:00", {"record": ref("Case", "500B")}),
                   ev("record.viewed", "10:03:00", {"record": ref("Case", "500A")})])
    assert (result.related_to, result.related_candidates) == (rec("Case", "500A"),
                                                              [rec("Case", "500A"), rec("Case", "500B")])


@pytest.mark.parametrize("choice_first", [True, False])
def test_explicit_choice_with_log_updated_wins_over_navigation(choice_first: bool) -> None:
    choice = ev("log.updated", "10:01:00", {"related_to": ref("Case", "500C")})
    view = ev("record.viewed", "10:02:00", {"record": ref("Case", "500A")})
    result = snap([connected("10:00:00"), *([choice, view] if choice_first else [view, choice])])
    assert (result.related_to, result.related_candidates) == (rec("Case", "500C"), [rec("Case", "500A")])


def test_log_updated_explicit_null_clears_and_an_absent_field_is_untouched() -> None:
    result = snap([connected("10:00:00", name=ref("Contact", "003A")),
                   ev("log.updated", "10:01:00", {"notes": "keep me", "subject": "Mine"}),
                   ev("log.updated", "10:02:00", {"name": None, "subject": None})])
    assert (result.notes, result.name, result.subject) == ("keep me", None, "Inbound call from Ada Example")


def test_navigation_after_disconnect_changes_nothing() -> None:
    base = [connected("10:00:00"), ev("interaction.disconnected", "10:05:00")]
    log, results = run([*base, ev("record.viewed", "10:05:30", {"record": ref("Case", "500A")})])
    assert isinstance(log, InteractionLog)
    assert isinstance(results[-1].outcome, Accepted)
    assert snapshot(log).model_dump(exclude={"version", "trigger"}) == snap(base).model_dump(
        exclude={"version", "trigger"})


def test_navigation_arriving_before_its_disconnect_is_judged_by_event_time() -> None:
    result = snap([connected("10:00:00"), ev("record.viewed", "10:06:00", {"record": ref("Case", "500A")}),
                   ev("interaction.disconnected", "10:05:00")])
    assert (result.related_to, result.related_candidates) == (None, [])


def test_navigation_after_a_disconnect_that_a_lower_numbered_one_replaces_stays_active() -> None:
    """By sequence the disconnect numbered 5 (10:02:30) is the first; the one numbered 6 is stamped 10:01.
    A view at 10:02 is active in the final log, also when it arrives after only the 10:01 disconnect."""
    events = [connected("10:00:00", seq=1), ev("interaction.disconnected", "10:01:00", seq=6),
              ev("record.viewed", "10:02:00", {"record": ref("Case", "500A")}, seq=3),
              ev("interaction.disconnected", "10:02:30", seq=5)]
    for order in itertools.permutations(events):
        result = snap(order)
        assert (result.related_to, result.related_candidates) == (rec("Case", "500A"), [rec("Case", "500A")]), order


def test_navigation_before_connect_is_not_active() -> None:
    result = snap([ev("record.viewed", "09:59:00", {"record": ref("Case", "500A")}), connected("10:00:00")])
    assert (result.related_to, result.related_candidates) == (None, [])


@pytest.mark.parametrize(("queue", "notes", "wrapup_note", "expected"), [
    ("Support", "From the log.", None, "From the log."),
    ("Support", "From the log.", "From wrap-up.", "From the log."),
    ("Support", None, "From wrap-up.", "From wrap-up."),
    (None, "From the log.", None, None),
    (None, "From the log.", "From wrap-up.", "From wrap-up."),
])
def test_queue_interactions_copy_the_note_to_the_wrapup_note(
    queue: str | None, notes: str | None, wrapup_note: str | None, expected: str | None
) -> None:
    events = [connected("10:00:00", queue=queue), ev("interaction.wrapup", "10:05:00",
                                                     {"code": "Resolved", "note": wrapup_note})]
    if notes is not None:
        events.append(ev("log.updated", "10:04:00", {"notes": notes}))
    result = snap(events)
    assert (result.wrapup_code, result.wrapup_note) == ("Resolved", expected)


@pytest.mark.parametrize(("data", "expected"), [
    ({"media": "voice", "direction": "inbound"}, "Inbound call from Ada Example"),
    ({"media": "voice", "direction": "outbound"}, "Outbound call to Ada Example"),
    ({"media": "chat", "direction": "outbound"}, "Outbound chat with Ada Example"),
    ({"media": "message", "direction": "inbound"}, "Inbound message from Ada Example"),
    ({"media": "callback", "direction": "outbound"}, "Outbound callback to Ada Example"),
    ({"media": "email", "direction": "inbound", "customer": {"address": "ada@example.com"}},
     "Inbound email from ada@example.com"),
    ({"media": "email", "direction": "inbound", "customer": None}, "Inbound email from unknown customer"),
])
def test_subject_defaults_from_media_direction_and_customer(data: dict[str, Any], expected: str) -> None:
    assert snap([connected("10:00:00", **data)]).subject == expected


def test_subject_without_connect_names_the_interaction() -> None:
    assert snap([ev("log.opened", "10:00:00")]).subject == "Interaction conv-1"


@pytest.mark.parametrize("events", [
    [connected(customer={"address": "+4930123456", "name": "N" * 255})],
    [ev("log.opened", "10:00:00", subject="i" * 255)],
], ids=["customer name of 255", "interaction id of 255"])
def test_a_derived_subject_stays_within_the_subject_bound_of_255_characters(events: list[Event]) -> None:
    log, _ = run(events)
    assert isinstance(log, InteractionLog)
    subject = snapshot(log).subject
    assert subject is not None
    assert (255, "…") == (len(subject), subject[-1])
    assert subject == json.loads(snapshot_json(log))["subject"]


@pytest.mark.parametrize(("clock", "accepted"), [("10:06:59", True), ("10:07:00", True), ("10:07:01", False)])
def test_edits_are_accepted_until_disconnect_plus_edit_window(clock: str, accepted: bool) -> None:
    base, _ = run([connected("10:00:00"), ev("interaction.disconnected", "10:05:00")])
    edit = ev("log.updated", clock, {"notes": "after the call"}, event_id="evt-edit")
    result = fold(base, edit, edit_window_s=WINDOW_S)
    if accepted:
        assert result.outcome == Accepted(Trigger.UPDATED)
        return
    assert result.log is base
    assert result.outcome == Rejected(Rejection(
        "evt-edit", "conv-1", RejectReason.LATE_EDIT,
        "log.updated: time 2026-11-27T10:07:01Z is after the edit deadline 2026-11-27T10:07:00Z "
        "(disconnected at 2026-11-27T10:05:00Z)"))


def test_any_event_for_a_tombstone_or_finalized_log_is_rejected_window_closed() -> None:
    log, _ = run([connected("10:00:00"), ev("interaction.disconnected", "10:05:00")])
    assert isinstance(log, InteractionLog)
    closed = finalize(log)
    late = ev("log.opened", "10:05:10", event_id="evt-late")
    expected = Rejected(Rejection("evt-late", "conv-1", RejectReason.WINDOW_CLOSED,
                                  "log.opened: interaction conv-1 is finalized at version 3; "
                                  "its edit window has closed"))
    for state in (closed, tombstone_of(closed)):
        result = fold(state, late, edit_window_s=WINDOW_S)
        assert (result.log, result.outcome) == (state, expected)


def test_every_accepted_change_bumps_the_version_by_one() -> None:
    note = ev("log.updated", "10:01:00", {"notes": "n"})
    _, results = run([connected("10:00:00"), note, note, ev("log.opened", "10:02:00"),
                      ev("interaction.disconnected", "10:05:00"), ev("log.updated", "10:09:00", {"notes": "x"})])
    versions = [result.log.version if result.log else None for result in results]
    assert versions == [1, 2, 2, 3, 4, 4]


@pytest.mark.parametrize(("event", "trigger"), [
    (ev("interaction.held", "10:01:00"), Trigger.STATE_CHANGED),
    (ev("interaction.resumed", "10:01:00"), Trigger.STATE_CHANGED),
    (ev("interaction.disconnected", "10:01:00"), Trigger.STATE_CHANGED),
    (connected("10:00:30"), Trigger.STATE_CHANGED),
    (ev("log.opened", "10:01:00"), Trigger.OPENED),
    (ev("log.updated", "10:01:00", {"notes": "n"}), Trigger.UPDATED),
    (ev("record.viewed", "10:01:00", {"record": ref("Case", "1")}), Trigger.UPDATED),
    (ev("interaction.wrapup", "10:01:00", {"code": "c"}), Trigger.UPDATED),
    (ev("interaction.attributes", "10:01:00", {"attributes": {"a": "b"}}), Trigger.UPDATED),
], ids=lambda value: value.type if hasattr(value, "type") else str(value))
def test_trigger_follows_the_event_type(event: Event, trigger: Trigger) -> None:
    log, _ = run([connected("10:00:00")])
    result = fold(log, event, edit_window_s=WINDOW_S)
    assert result.outcome == Accepted(trigger)
    assert isinstance(result.log, InteractionLog) and result.log.trigger is trigger


def test_finalize_bumps_the_version_and_leaves_a_tombstone_at_the_deadline() -> None:
    log, _ = run([connected("10:00:00"), ev("interaction.disconnected", "10:05:00")])
    assert isinstance(log, InteractionLog)
    closed = finalize(log)
    assert (closed.version, closed.finalized, closed.trigger) == (3, True, Trigger.FINALIZED)
    assert snapshot(closed).trigger is Trigger.FINALIZED and snapshot(closed).finalized
    assert tombstone_of(closed) == Tombstone("conv-1", 3, datetime(2026, 11, 27, 10, 7, tzinfo=UTC),
                                             closed.applied_ids)


def test_attributes_merge_per_key_and_the_later_value_wins() -> None:
    result = snap([connected("10:00:00"),
                   ev("interaction.attributes", "10:02:00", {"attributes": {"tier": "gold"}}),
                   ev("interaction.attributes", "10:01:00", {"attributes": {"tier": "silver", "lang": "de"}})])
    assert result.attributes == {"lang": "de", "tier": "gold"}


def test_snapshot_of_a_full_voice_call() -> None:
    result = snap([
        connected("10:00:00", seq=1, name=ref("Contact", "003A")),
        ev("record.viewed", "10:00:20", {"record": ref("Case", "500A")}, seq=2),
        ev("interaction.held", "10:01:00", seq=3), ev("interaction.resumed", "10:01:40", seq=4),
        ev("log.updated", "10:02:00", {"notes": "Customer asked for a refund."}, seq=5),
        ev("interaction.disconnected", "10:05:00", seq=6),
        ev("interaction.wrapup", "10:05:30", {"code": "Resolved"}, seq=7),
        ev("interaction.attributes", "10:05:40", {"attributes": {"tier": "gold"}}, seq=8),
    ])
    assert result == LogSnapshot(
        interaction_id="conv-1", version=8, trigger=Trigger.UPDATED, state=State.DISCONNECTED,
        media="voice", direction="inbound", queue=None, agent_id="agent-7",
        customer={"address": "+4930123456", "name": "Ada Example"}, subject="Inbound call from Ada Example",
        notes="Customer asked for a refund.", name=rec("Contact", "003A"), related_to=rec("Case", "500A"),
        name_candidates=[], related_candidates=[rec("Case", "500A")],
        connected_at=datetime(2026, 11, 27, 10, 0, tzinfo=UTC),
        disconnected_at=datetime(2026, 11, 27, 10, 5, tzinfo=UTC),
        edit_deadline=datetime(2026, 11, 27, 10, 7, tzinfo=UTC), finalized=False, duration_seconds=300,
        hold_seconds=40, hold_count=1, talk_seconds=260, wrapup_code="Resolved", wrapup_note=None,
        attributes={"tier": "gold"}, ignored_reconnects=0)


def test_fold_carries_every_log_field_forward() -> None:
    """The hot path builds the next log positionally; a new field must not be dropped silently."""
    from worker.core import state as state_module

    log = InteractionLog("conv-1")
    sentinels = {field.name: f"<{field.name}>" for field in dataclasses.fields(InteractionLog)}
    fixed = {"interaction_id", "version", "trigger", "finalized", "applied_ids", "last_event_us"}
    changes = {name: value for name, value in sentinels.items() if name not in fixed}
    evolved = state_module.evolve_log(log, 9, Trigger.UPDATED, ("a",), 5, changes)
    assert {name: getattr(evolved, name) for name in changes} == changes
    assert (evolved.version, evolved.trigger, evolved.applied_ids, evolved.last_event_us) == (
        9, Trigger.UPDATED, ("a",), 5)


@pytest.mark.parametrize("written", ["2026-11-27T10:00:00.123456789Z", "2026-11-27T11:00:00.1234567+01:00"])
def test_an_event_time_with_nanoseconds_is_read_to_the_microsecond(written: str) -> None:
    document = {"specversion": "1.0", "id": "evt-ns", "source": "/test", "type": "log.opened", "subject": "conv-ns",
                "time": written, "data": {}}
    decoded = decode_event(json.dumps(document).encode())
    assert not isinstance(decoded, Rejection), decoded
    assert datetime(2026, 11, 27, 10, 0, 0, 123456, tzinfo=UTC) == decoded.time
