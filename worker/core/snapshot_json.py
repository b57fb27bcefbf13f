"""The snapshot's JSON for the upserts topic, without building a `LogSnapshot` model.

`snapshot_json(log, trigger)` gives exactly the bytes of `snapshot(log, trigger).to_json_bytes()`
(same keys in the same order, times as RFC 3339 with `Z`, nulls, lists and maps rendered alike);
unit tests compare the two over generated histories. The fold stage emits a snapshot for nearly
every event, so the members after the head are kept encoded beside the log (`_Parts`) and only the
parts whose facts changed are derived and encoded again: one event changes one or two facts.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from schemas.common import Customer, RecordRef, Trigger
from worker.core import native
from worker.core.snapshot import (
    _US_PER_S,
    Timeline,
    _distinct,
    _duration_s,
    _selected,
    _split_active,
    _subject,
    _time_or_none,
    _wrapup_note,
    snapshot,
    timeline,
)
from worker.core.state import InteractionLog, StoredLog, as_log, derived_of

_OPTIONS = orjson.OPT_UTC_Z


class EncodedSnapshot(NamedTuple):
    """A snapshot ready to produce: the fields its headers and metrics need, beside its JSON.

    A NamedTuple: one per snapshot on the stage's hot path, a single `tuple.__new__` (a frozen dataclass pays one
    `object.__setattr__` per field)."""

    interaction_id: str
    version: int
    trigger: Trigger
    finalized: bool
    payload: bytes
    traceparent: str | None = None
    """The W3C trace context of the event that made this snapshot, sent on as a message header."""


# A pydantic model's `__dict__` holds exactly its fields, in declaration order (the model's JSON
# order), and orjson writes enum members by value: the dict serializes as the model does, without
# a copy. The byte-equality test guards this if a model gains a field.
def _ref(ref: RecordRef | None) -> dict[str, Any] | None:
    return None if ref is None else ref.__dict__


def _customer(customer: Customer | None) -> dict[str, Any] | None:
    return None if customer is None else customer.__dict__


def snapshot_json(log: InteractionLog, trigger: Trigger | None = None) -> bytes:
    """`snapshot(log, trigger).to_json_bytes()`, several times faster.

    The head (id, version, trigger, state) is encoded for each call; the rest of the object comes in
    five parts of JSON members, each encoded again only when a fact it depends on changed since the
    log's previous snapshot (`_Parts`, kept in the log's `Derived`). With the compiled core in use
    (`worker.core.native`) its `snapshot_json` writes the same bytes from the log's facts afresh, and this
    runs only for what it leaves to the Python."""
    core = native.CORE
    if core is not None:
        encoded = core.snapshot_json(log, trigger if trigger is not None else log.trigger)
        if encoded is not None:
            return encoded
    if log.version < 1:  # the model refuses it: let it raise the same error
        return snapshot(log, trigger).to_json_bytes()
    try:
        parts = _parts_of(log)
        head = orjson.dumps({"interaction_id": log.interaction_id, "version": log.version,
                             "trigger": trigger if trigger is not None else log.trigger,
                             "state": parts.timeline.state})
        return b"".join((head[:-1], b",", parts.connect_json, b",", parts.texts_json, b",", parts.records_json,
                         b",", parts.times_json, b",", parts.tail_json, b"}"))
    except orjson.JSONEncodeError:  # e.g. a lone surrogate: the model's encoder decides
        derived_of(log).snapshot = None  # parts half brought up to date: start afresh next time
        return snapshot(log, trigger).to_json_bytes()


def snapshot_json_of(log: InteractionLog | StoredLog, document: bytes, trigger: Trigger) -> bytes:
    """`snapshot_json(log, trigger)` where `document` is `log.to_bytes()`, just written: the compiled core
    reads the facts off those bytes (`native/src/from_state.rs`), cheaper than off the log's objects, which
    it and the Python use for what it leaves to them."""
    core = native.CORE
    if core is not None:
        encoded = core.snapshot_from_state(document, trigger)
        if encoded is not None:
            return encoded
    return snapshot_json(as_log(log), trigger)


class _Parts:
    """The snapshot's members after the head as JSON, and the facts they were encoded from.

    The facts are compared by identity (the fold replaces a fact when it changes, and hands an unchanged
    one on as the same object), the edit deadline and the finalized flag by value. Plain slots holding
    bytes: nothing here for the garbage collector to walk but the facts themselves, which the log holds
    anyway (see `worker.core.state.Derived`)."""

    __slots__ = ("attributes", "connect", "connect_json", "edit_deadline_us", "finalized", "name_choice", "notes",
                 "records_json", "related_choice", "subject", "tail_json", "texts_json", "timeline", "times_json",
                 "transitions", "views", "wrapup")

    def __init__(self) -> None:
        self.transitions: object = _UNSEEN
        self.connect: object = _UNSEEN
        self.views: object = _UNSEEN
        self.subject: object = _UNSEEN
        self.notes: object = _UNSEEN
        self.name_choice: object = _UNSEEN
        self.related_choice: object = _UNSEEN
        self.wrapup: object = _UNSEEN
        self.attributes: object = _UNSEEN
        self.edit_deadline_us: object = _UNSEEN
        self.finalized: object = _UNSEEN
        self.timeline = Timeline()
        self.connect_json = self.texts_json = self.records_json = self.times_json = self.tail_json = b""


_UNSEEN = object()


def _parts_of(log: InteractionLog) -> _Parts:
    """The log's `_Parts`, brought up to date with its facts (only the parts whose facts changed)."""
    derived = derived_of(log)
    parts = derived.snapshot
    if not isinstance(parts, _Parts):
        parts = derived.snapshot = _Parts()
    transitions = parts.transitions is not log.transitions
    connect = parts.connect is not log.connect
    notes = parts.notes is not log.notes
    window = transitions and _walk(parts, log)
    if connect:
        parts.connect_json = _members(_connect_part(log))
    if connect or notes or parts.subject is not log.subject:
        parts.texts_json = _members(_texts_part(log))
    if window or connect or parts.views is not log.views or parts.name_choice is not log.name_choice \
            or parts.related_choice is not log.related_choice:
        parts.records_json = _members(_records_part(log, parts.timeline))
    if transitions or parts.edit_deadline_us != log.edit_deadline_us or parts.finalized != log.finalized:
        parts.times_json = _members(_times_part(log, parts.timeline))
    if transitions or connect or notes or parts.wrapup is not log.wrapup or parts.attributes is not log.attributes:
        parts.tail_json = _members(_tail_part(log, parts.timeline))
    _seen(parts, log)
    return parts


def _walk(parts: _Parts, log: InteractionLog) -> bool:
    """Walk the new transitions; True when the active window (connect to disconnect) moved."""
    before = parts.timeline
    parts.timeline = walked = timeline(log.transitions)
    return parts.transitions is _UNSEEN or (before.connected_us, before.disconnected_us) \
        != (walked.connected_us, walked.disconnected_us)


def _seen(parts: _Parts, log: InteractionLog) -> None:
    parts.transitions, parts.connect, parts.views = log.transitions, log.connect, log.views
    parts.subject, parts.notes, parts.name_choice, parts.related_choice = (
        log.subject, log.notes, log.name_choice, log.related_choice)
    parts.wrapup, parts.attributes = log.wrapup, log.attributes
    parts.edit_deadline_us, parts.finalized = log.edit_deadline_us, log.finalized


def _members(part: dict[str, Any]) -> bytes:
    """`"key":value,…`: the part as the members of a JSON object, without the braces."""
    return orjson.dumps(part, option=_OPTIONS)[1:-1]


# The parts, in `LogSnapshot` field order, with the rules of `worker.core.snapshot` (the unit tests
# compare the bytes with the model's JSON of `snapshot()`, which derives every field afresh).
def _connect_part(log: InteractionLog) -> dict[str, Any]:
    data = log.connect[1] if log.connect is not None else None
    if data is None:
        return {"media": None, "direction": None, "queue": None, "agent_id": None, "customer": None}
    return {"media": data.media, "direction": data.direction, "queue": data.queue, "agent_id": data.agent_id,
            "customer": _customer(data.customer)}


def _texts_part(log: InteractionLog) -> dict[str, Any]:
    data = log.connect[1] if log.connect is not None else None
    return {"subject": _subject(log, data), "notes": log.notes[1] if log.notes is not None else None}


def _records_part(log: InteractionLog, walked: Timeline) -> dict[str, Any]:
    data = log.connect[1] if log.connect is not None else None
    names, related = _split_active(log.views, walked)
    return {"name": _ref(_selected(log.name_choice, names, data.name if data else None)),
            "related_to": _ref(_selected(log.related_choice, related, data.related_to if data else None)),
            "name_candidates": [_ref(ref) for ref in _distinct(names)],
            "related_candidates": [_ref(ref) for ref in _distinct(related)]}


def _times_part(log: InteractionLog, walked: Timeline) -> dict[str, Any]:
    duration_s = _duration_s(walked)
    hold_s = round(walked.hold_us / _US_PER_S)
    return {"connected_at": _time_or_none(walked.connected_us),
            "disconnected_at": _time_or_none(walked.disconnected_us),
            "edit_deadline": log.edit_deadline, "finalized": log.finalized, "duration_seconds": duration_s,
            "hold_seconds": hold_s, "hold_count": walked.hold_count,
            "talk_seconds": None if duration_s is None else max(0, duration_s - hold_s)}


def _tail_part(log: InteractionLog, walked: Timeline) -> dict[str, Any]:
    data = log.connect[1] if log.connect is not None else None
    notes = log.notes[1] if log.notes is not None else None
    return {"wrapup_code": log.wrapup[1] if log.wrapup is not None else None,
            "wrapup_note": _wrapup_note(log, data, notes),
            "attributes": {key: value for key, _stamp, value in log.attributes},
            "ignored_reconnects": walked.ignored_reconnects}


def encoded_snapshot(log: InteractionLog, trigger: Trigger | None = None) -> EncodedSnapshot:
    chosen = trigger if trigger is not None else log.trigger
    return EncodedSnapshot(log.interaction_id, log.version, chosen, log.finalized, snapshot_json(log, chosen))
