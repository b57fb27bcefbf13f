"""Derive the visible log (`LogSnapshot`) from the facts an `InteractionLog` stores. Pure.

- Timeline: transitions walked in order up to the first disconnect: connected ⇄ held → disconnected.
  The order is the producer's `sequence` when every transition carries one (it beats the clocks, which
  may disagree between the platform's services), else event time. A `held` before any `connected` starts
  the call held. Talk time = duration - hold time; a hold still open at disconnect ends there; a span
  that runs backwards in event time (numbered after, stamped before) counts as zero.
- Name / Related to: the agent's explicit choice (`log.updated`, even null) wins for good;
  else the latest record viewed while the call was active (connected_at ≤ time < disconnected_at);
  else what `interaction.connected` carried. Candidates: records viewed while active, in order.
- Queue interactions: the wrap-up note is the log's notes (the wrap-up event's note when there
  are no notes).
- Subject: the agent's, else e.g. "Inbound call from Ada Example".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from schemas.common import MAX_FIELD_CHARS, Direction, Media, RecordRef, State, Trigger, is_name_type
from schemas.events import ConnectedData
from schemas.snapshot import LogSnapshot
from worker.core.state import InteractionLog, Transition, View, from_us

_MEDIA_NOUN = {Media.VOICE: "call", Media.CALLBACK: "callback", Media.CHAT: "chat",
               Media.EMAIL: "email", Media.MESSAGE: "message"}
_US_PER_S = 1_000_000


@dataclass(slots=True)
class Timeline:
    state: State | None = None
    connected_us: int | None = None
    disconnected_us: int | None = None
    hold_us: int = 0
    hold_count: int = 0
    ignored_reconnects: int = 0
    _hold_start_us: int | None = None

    def step(self, time_us: int, kind: str) -> None:
        if kind == "C":
            self._connect(time_us)
        elif kind == "H" and self.state is not State.HELD:
            self.state, self._hold_start_us = State.HELD, time_us
            self.hold_count += 1
        elif kind == "R" and self.state is State.HELD:
            self._end_hold(time_us)
            self.state = State.CONNECTED
        elif kind == "D":
            self._end_hold(time_us)
            self.state, self.disconnected_us = State.DISCONNECTED, time_us

    def _connect(self, time_us: int) -> None:
        if self.connected_us is None:
            self.connected_us = time_us
        self._end_hold(time_us)
        self.state = State.CONNECTED

    def _end_hold(self, time_us: int) -> None:
        if self._hold_start_us is not None:
            self.hold_us += max(0, time_us - self._hold_start_us)
            self._hold_start_us = None


def timeline(transitions: tuple[Transition, ...]) -> Timeline:
    """Walk the transitions in `walk_order`; everything after the first disconnect is ignored."""
    walked = Timeline()
    for time_us, _sequence, _arrival, kind in walk_order(transitions):
        if walked.state is State.DISCONNECTED:
            walked.ignored_reconnects += kind == "C"
            continue
        walked.step(time_us, kind)
    return walked


def _sequence_first(transition: Transition) -> tuple[int, int, int]:
    return transition.sequence, transition.time_us, transition.arrival


_RANK_AT_AN_INSTANT = {"C": 0, "D": 2}
"""Where a transition goes among those of the same instant in a walk by event time: a connect first, a disconnect
last, the others (held, resumed) as they arrived."""


def _instant_rank(transition: Transition) -> tuple[int, int]:
    return transition.time_us, _RANK_AT_AN_INSTANT.get(transition.kind, 1)


def walk_order(transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
    """The transitions (stored sorted by event time) in the order the state machine takes them: by
    `sequence` when every one carries a sequence, else as stored. One transition without a sequence puts
    them all in time order: a number and a clock cannot be compared. Called for most events: when the
    numbers already follow the clocks (the common case) the stored tuple is the order, and nothing is sorted.

    In time order, transitions of one instant go connect first and disconnect last, whatever order they
    arrived in: a call connected and disconnected within the same second (a timestamp's resolution) is
    connected for 0 s in any arrival order, never a disconnect followed by an ignored reconnect."""
    last = -1
    in_order = True
    for transition in transitions:  # a plain loop: cheaper than any(genexpr)
        sequence = transition.sequence
        if sequence < 0:
            return _instants_settled(transitions)
        if sequence < last:
            in_order = False
        last = sequence
    return transitions if in_order else tuple(sorted(transitions, key=_sequence_first))


def _instants_settled(transitions: tuple[Transition, ...]) -> tuple[Transition, ...]:
    """`transitions` (in time order) with each instant's connects first and disconnects last; sorted (stably) only
    when two of one instant are out of that order."""
    before = None
    for transition in transitions:
        if before is not None and transition.time_us == before.time_us \
                and _RANK_AT_AN_INSTANT.get(transition.kind, 1) < _RANK_AT_AN_INSTANT.get(before.kind, 1):
            return tuple(sorted(transitions, key=_instant_rank))
        before = transition
    return transitions


def disconnected_us(transitions: tuple[Transition, ...]) -> int | None:
    """Event time of the first disconnect in `walk_order`."""
    for time_us, _sequence, _arrival, kind in walk_order(transitions):
        if kind == "D":
            return time_us
    return None


def snapshot(log: InteractionLog, trigger: Trigger | None = None) -> LogSnapshot:
    """The CONTRACT.md log at `log.version`; `trigger` defaults to the one of the last change."""
    return LogSnapshot(**snapshot_values(log, trigger))


def snapshot_values(log: InteractionLog, trigger: Trigger | None = None) -> dict[str, Any]:
    """The fields of `snapshot(log, trigger)` in `LogSnapshot` order, unvalidated (models, enums, datetimes)."""
    walked = timeline(log.transitions)
    data = log.connect[1] if log.connect is not None else None
    names, related = _split_active(log.views, walked)
    notes = log.notes[1] if log.notes is not None else None
    duration_s = _duration_s(walked)
    hold_s = round(walked.hold_us / _US_PER_S)
    return dict(
        interaction_id=log.interaction_id,
        version=log.version,
        trigger=trigger if trigger is not None else log.trigger,
        state=walked.state,
        media=data.media if data else None,
        direction=data.direction if data else None,
        queue=data.queue if data else None,
        agent_id=data.agent_id if data else None,
        customer=data.customer if data else None,
        subject=_subject(log, data),
        notes=notes,
        name=_selected(log.name_choice, names, data.name if data else None),
        related_to=_selected(log.related_choice, related, data.related_to if data else None),
        name_candidates=_distinct(names),
        related_candidates=_distinct(related),
        connected_at=_time_or_none(walked.connected_us),
        disconnected_at=_time_or_none(walked.disconnected_us),
        edit_deadline=log.edit_deadline,
        finalized=log.finalized,
        duration_seconds=duration_s,
        hold_seconds=hold_s,
        hold_count=walked.hold_count,
        talk_seconds=None if duration_s is None else max(0, duration_s - hold_s),
        wrapup_code=log.wrapup[1] if log.wrapup is not None else None,
        wrapup_note=_wrapup_note(log, data, notes),
        attributes={key: value for key, _stamp, value in log.attributes},
        ignored_reconnects=walked.ignored_reconnects,
    )


def _split_active(views: tuple[View, ...], walked: Timeline) -> tuple[list[RecordRef], list[RecordRef]]:
    """(names, related records) viewed while the call was active, in view order."""
    start_us = walked.connected_us
    end_us = walked.disconnected_us
    names: list[RecordRef] = []
    related: list[RecordRef] = []
    for (_sequence, time_us, _arrival), ref in views:
        if (start_us is None or time_us >= start_us) and (end_us is None or time_us < end_us):
            (names if _is_name_type(ref.system, ref.type) else related).append(ref)
    return names, related


@lru_cache(maxsize=1024)
def _is_name_type(system: str, record_type: str) -> bool:
    """`RecordRef.is_name` by system and type, memoized: a snapshot asks for every viewed record."""
    return is_name_type(system, record_type)


def _distinct(refs: Iterable[RecordRef]) -> list[RecordRef]:
    # Keyed by the ref's three fields (all a RecordRef has): hashing the pydantic model itself runs
    # in Python and was the largest single cost of building a snapshot.
    first: dict[tuple[str, str, str], RecordRef] = {}
    for ref in refs:
        first.setdefault((ref.system, ref.type, ref.id), ref)
    return list(first.values())


def _selected(
    choice: tuple[object, RecordRef | None] | None, active: list[RecordRef], initial: RecordRef | None,
) -> RecordRef | None:
    if choice is not None:
        return choice[1]
    return active[-1] if active else initial


def _subject(log: InteractionLog, data: ConnectedData | None) -> str:
    if log.subject is not None and log.subject[1] is not None:
        return log.subject[1]
    if data is None:
        return _bounded_subject(f"Interaction {log.interaction_id}")
    customer = data.customer
    who = (customer.name or customer.address) if customer is not None else None
    inbound = data.direction is Direction.INBOUND
    preposition = "from" if inbound else ("with" if data.media in (Media.CHAT, Media.MESSAGE) else "to")
    direction = "Inbound" if inbound else "Outbound"
    return _bounded_subject(f"{direction} {_MEDIA_NOUN[data.media]} {preposition} {who or 'unknown customer'}")


def _bounded_subject(text: str) -> str:
    """A derived subject within the log subject's bound (CONTRACT.md: 255 characters, Salesforce's Task
    Subject): a long customer name or interaction id is cut, ending in `…`."""
    return text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"


def _wrapup_note(log: InteractionLog, data: ConnectedData | None, notes: str | None) -> str | None:
    event_note = log.wrapup[2] if log.wrapup is not None else None
    if data is not None and data.queue is not None and notes is not None:
        return notes
    return event_note


def _duration_s(walked: Timeline) -> int | None:
    if walked.connected_us is None or walked.disconnected_us is None:
        return None
    return round(max(0, walked.disconnected_us - walked.connected_us) / _US_PER_S)


def _time_or_none(epoch_us: int | None) -> datetime | None:
    return None if epoch_us is None else from_us(epoch_us)
