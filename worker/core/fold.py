"""The pure fold: (state, event) → (new state, outcome). Standard library and `schemas` only; no clock.

Decisions the docs leave open (each is permutation-invariant unless said otherwise):
- Every accepted event bumps `version` by one, even one with no visible effect (navigation after
  disconnect, `log.opened`): its id must be recorded for dedupe, and the stored state changed.
- An event whose time is past the edit deadline is rejected `late_edit`, whatever its type. The
  check uses the disconnect known when the event arrives: an edit that arrives before its
  disconnect is applied (the order of arrival decides only for edits outside the window).
- The first `interaction.connected` by event time supplies media, direction, queue, agent,
  customer and the initial Name/Related to; `connected` after the disconnect is ignored and
  counted (`ignored_reconnects`); a second `connected` before it acts like `resumed`.
- `held`/`resumed`/`disconnected` after the first disconnect are stored but change nothing. Walked by event
  time, an instant's connects go first and its disconnects last (`worker.core.snapshot.walk_order`).
- Applied ids are kept for the last `applied_ids_kept` events; transitions are also deduplicated
  by (time, sequence, kind) so an old event redelivered after its id rolled out cannot double a hold.
- A finalized log's tombstone keeps its applied ids: an event among them is a duplicate, any other
  event is `window_closed`.
- An attributes event that would take the interaction over 100 keys is rejected `too_large` whole
  (none of its keys applied); the check follows arrival order, like the edit window's.
"""

from __future__ import annotations

from bisect import insort
from collections.abc import Callable
from dataclasses import dataclass, fields
from operator import itemgetter
from typing import Any, Literal, NamedTuple, get_args

from schemas import fast
from schemas.common import Trigger
from schemas.events import (
    EVENT_MODELS,
    MAX_ATTRIBUTES,
    AttributesEvent,
    ConnectedEvent,
    LogUpdatedEvent,
    RecordViewedEvent,
    Rejection,
    RejectReason,
    WrapupEvent,
)
from schemas.fast import AnyEvent, FastEvent
from worker.core import native
from worker.core.bounds import too_many_attributes
from worker.core.snapshot import disconnected_us, snapshot
from worker.core.state import (
    _EPOCH,
    Derived,
    InteractionLog,
    Stamp,
    StoredLog,
    Tombstone,
    Transition,
    evolve_log,
    from_us,
    to_us,
)

__all__ = [
    "Accepted",
    "CompiledFold",
    "Duplicate",
    "FoldResult",
    "FoldedDocument",
    "Outcome",
    "Rejected",
    "finalize",
    "fold",
    "late_edit_rejection",
    "snapshot",
    "tombstone_of",
    "trigger_for",
]

VIEWS_KEPT = 64
"""Viewed-record facts kept per interaction (the newest by stamp)."""


@dataclass(frozen=True, slots=True)
class Accepted:
    trigger: Trigger


@dataclass(frozen=True, slots=True)
class Duplicate:
    pass


@dataclass(frozen=True, slots=True)
class Rejected:
    rejection: Rejection


Outcome = Accepted | Duplicate | Rejected


class FoldResult(NamedTuple):
    """The state after the event (the same object when unchanged) and what happened to the event.

    A NamedTuple: one per event, a single `tuple.__new__` (a frozen dataclass pays one
    `object.__setattr__` per field)."""

    log: InteractionLog | Tombstone | None
    outcome: Outcome


Changes = dict[str, Any]
"""InteractionLog field name → new value, produced by one event."""

_DUPLICATE = Duplicate()
_ACCEPTED = {trigger: Accepted(trigger) for trigger in Trigger}
_view_stamp = itemgetter(0)
_TRANSITION_KIND = {
    "interaction.connected": "C",
    "interaction.held": "H",
    "interaction.resumed": "R",
    "interaction.disconnected": "D",
}


def fold(
    state: InteractionLog | Tombstone | None,
    event: AnyEvent,
    *,
    edit_window_s: float,
    applied_ids_kept: int = 256,
) -> FoldResult:
    """Apply one event. Never mutates `state`; an unchanged state is returned as the same object.

    With the compiled core in use (`worker.core.native`), `native/src/fold.rs` folds the accept path and
    duplicates of an open log and gives the same result; it leaves the rest (rejections, closed logs) to
    the code below, which stays the specification."""
    # The hot loop of the fold stage: lookups are inlined here on purpose (see docs/benchmarks.md).
    core = native.CORE
    if core is not None and _COMPILED_FOLD:  # native/src/fold.rs: the accept path and duplicates
        compiled = core.fold(state, event, edit_window_s, applied_ids_kept)
        if compiled is not None:
            return compiled  # type: ignore[return-value]  # a FoldResult (no `cast` call on the hot path)
    if state is None:
        log, trigger, ended_us = InteractionLog(event.subject), Trigger.CREATED, None
        time_us = to_us(event.time)
    elif isinstance(state, Tombstone) or state.finalized:
        if event.id in state.applied_ids:  # read again after finalization (e.g. a crash before the commit)
            return FoldResult(state, _DUPLICATE)
        return FoldResult(state, Rejected(_window_closed(state, event)))
    else:
        if event.id in state.applied_ids:
            return FoldResult(state, _DUPLICATE)
        time_us = to_us(event.time)
        deadline_us = state.edit_deadline_us
        if deadline_us is not None and time_us > deadline_us:
            return FoldResult(state, Rejected(_late_edit(state, event, time_us, deadline_us)))
        if event.type == "interaction.attributes" and (overflow := too_many_attributes(state, event)):
            return FoldResult(state, Rejected(overflow))
        log, ended_us = state, disconnected_us(state.transitions)
        trigger = trigger_for(event.type, ended_us is not None and (
            time_us > ended_us or event.type == "interaction.disconnected"))
    arrival = log.version + 1
    sequence = event.sequence
    stamp = Stamp(-1 if sequence is None else sequence, time_us, arrival)
    changes = _APPLY[event.type](log, event, stamp, round(edit_window_s * 1_000_000), ended_us)
    # One copy of the ids: the slice of a tuple shorter than the slice is the tuple itself, and `+` copies
    # once where `(*ids, id)` builds a list and then a tuple.
    kept = log.applied_ids[-(applied_ids_kept - 1):] if applied_ids_kept > 1 else ()
    ids = kept + (event.id,)  # noqa: RUF005  (see above)
    last_event_us = log.last_event_us if log.last_event_us > time_us else time_us
    new_log = evolve_log(log, arrival, trigger, ids, last_event_us, changes)
    return FoldResult(new_log, _ACCEPTED[trigger])


def fold_guarded(
    state: InteractionLog | Tombstone | None,
    event: AnyEvent,
    *,
    edit_window_s: float,
    applied_ids_kept: int = 256,
) -> FoldResult:
    """`fold`, where a rule that raises on this event rejects the event instead: one event the worker cannot
    fold stops only itself (the fold stage and `ilog fold` call this; the rules stay in `fold`). The state
    stays as it was (the fold is pure: nothing is half applied); the rejection is `invalid` with the error,
    so the dead letter can be sent again with `ilog dlq replay` once the worker is fixed."""
    try:
        return fold(state, event, edit_window_s=edit_window_s, applied_ids_kept=applied_ids_kept)
    except Exception as error:
        message = (f"{event.type}: the worker failed to fold this event ({type(error).__name__}: {error}); "
                   "the log stays as it was before it; please report this")
        return FoldResult(state, Rejected(Rejection(event.id, event.subject, RejectReason.INVALID, message)))


CompiledFold = Callable[[InteractionLog | Tombstone | None, AnyEvent, float, int], FoldResult | None]
"""The compiled fold on a log's objects, called as `fold`'s first step calls it (`compiled_fold`)."""


def compiled_fold() -> CompiledFold | None:
    """The compiled fold in use (`native/src/fold.rs`), called as `fold`'s first step does: a `FoldResult`, or
    None for an input it leaves to `fold`. None when the Python folds alone. For a loop that folds many events
    (the batch planner): one look-up per batch instead of a Python frame per event."""
    core = native.CORE
    return core.fold if core is not None and _COMPILED_FOLD else None  # type: ignore[return-value]


FoldedDocument = tuple[bytes, int, str, int | None]
"""An accepted event folded into a stored document: the new document, version, trigger's value and edit deadline."""
LateDocument = tuple[None, int, int, int | None]
"""An event past a stored document's edit deadline: (None, the event's time, the deadline, the first disconnect), in
µs, what `late_edit_rejection` words."""


DocumentFold = Callable[[bytes | None, AnyEvent, float, int], FoldedDocument | LateDocument | Literal[True] | None]
"""The compiled fold over stored documents (`document_fold`)."""


def document_fold() -> DocumentFold | None:
    """The compiled fold over stored documents in use (`native/src/fold_document.rs`), or None.

    Called `(document or None, event, edit_window_s, applied_ids_kept)`, it gives, for `state` =
    `InteractionLog.from_bytes(document)` (None without a document) and `result = fold(state, event, …)`: the
    `FoldedDocument` of `result.log.to_bytes()`, its version, `result.outcome.trigger.value` and its edit deadline
    when the event is accepted; True when it is a duplicate; a `LateDocument` when `fold` rejects it `late_edit`;
    None for anything it leaves to `fold` (every other rejection among them). `tests/unit/test_native_fold_document.py`
    compares the two. For the batch planner, whose logs between two events are `StoredLog`s: no Python objects per
    log on the accept path."""
    core = native.CORE
    folder = getattr(core, "fold_document", None) if core is not None and _COMPILED_FOLD else None
    return folder


def finalize_document() -> Callable[[bytes], tuple[bytes, tuple[str, ...]] | None] | None:
    """The compiled `finalize` over a stored document in use, or None: called with a log's document, it gives
    `finalize(InteractionLog.from_bytes(document)).to_bytes()` and the log's applied ids, or None for a document
    it leaves to the Python."""
    core = native.CORE
    finalizer = getattr(core, "finalize_document", None) if core is not None else None
    return finalizer


def held_log(document: bytes) -> StoredLog | None:
    """An open log's stored document, as loaded, held as a `StoredLog` where the compiled fold over documents is in
    use and the document is exactly what `to_bytes` writes for an open log (`native/src/held.rs`); else None, and
    the caller decodes it (`InteractionLog.from_bytes`: a document of an earlier version, or a corrupt one, is
    read or refused as before). The fold stage then folds the log over its document from its first event on: a
    log loaded from Redis (after a restart, a rebalance, an eviction from the state cache) is not decoded into
    Python objects first (about 19 µs a log, docs/benchmarks.md)."""
    core = native.CORE
    if core is None or document_fold() is None:
        return None
    fields = core.held_log_fields(document)
    return None if fields is None else StoredLog(*fields, document)


def finalize(log: InteractionLog) -> InteractionLog:
    """Close the log: one more version, `finalized`, trigger `finalized` (`evolve_log`: `dataclasses.replace`
    cost ~3.6 µs a close, this ~0.8 µs)."""
    return evolve_log(log, log.version + 1, Trigger.FINALIZED, log.applied_ids, log.last_event_us, {"finalized": True})


def tombstone_of(log: InteractionLog) -> Tombstone:
    """The tombstone left after finalization; finalized at the edit deadline (event time)."""
    at_us = log.edit_deadline_us if log.edit_deadline_us is not None else log.last_event_us
    return Tombstone(log.interaction_id, log.version, from_us(at_us), log.applied_ids)


def _window_closed(state: InteractionLog | Tombstone, event: AnyEvent) -> Rejection:
    return Rejection(event.id, event.subject, RejectReason.WINDOW_CLOSED,
                     f"{event.type}: interaction {event.subject} is finalized at version {state.version}; "
                     "its edit window has closed")


def _late_edit(log: InteractionLog, event: AnyEvent, time_us: int, deadline_us: int) -> Rejection:
    return late_edit_rejection(event, time_us, deadline_us, disconnected_us(log.transitions))


def late_edit_rejection(event: AnyEvent, time_us: int, deadline_us: int, ended_us: int | None) -> Rejection:
    """`late_edit` of an event at `time_us`, past the log's edit deadline; `ended_us` is the log's first disconnect."""
    message = (f"{event.type}: time {_iso(time_us)} is after the edit deadline {_iso(deadline_us)} "
               f"(disconnected at {_iso(ended_us if ended_us is not None else deadline_us)})")
    return Rejection(event.id, event.subject, RejectReason.LATE_EDIT, message)


def _iso(epoch_us: int) -> str:
    return from_us(epoch_us).isoformat().replace("+00:00", "Z")


def trigger_for(event_type: str, after_end: bool = False) -> Trigger:
    """The trigger an accepted event of this type sets; a transition after the disconnect only updates."""
    if event_type == "log.opened":
        return Trigger.OPENED
    if event_type in _TRANSITION_KIND:
        return Trigger.UPDATED if after_end else Trigger.STATE_CHANGED
    return Trigger.UPDATED


def _transition(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    sequence, time_us, arrival = stamp
    kind = _TRANSITION_KIND[event.type]
    for seen_us, seen_sequence, _arrival, seen_kind in log.transitions:  # a plain loop: cheaper than any(genexpr)
        if seen_us == time_us and seen_sequence == sequence and seen_kind == kind:
            return {}
    transitions = tuple(sorted((*log.transitions, Transition(time_us, sequence, arrival, kind))))
    changes: Changes = {"transitions": transitions}
    if kind == "D" or log.edit_deadline_us is not None:
        # Any transition can move the deadline once there is a disconnect: one without a sequence puts
        # the walk in event-time order, which can make another disconnect the first one.
        ended_us = disconnected_us(transitions)
        changes["edit_deadline_us"] = None if ended_us is None else ended_us + window_us
    if kind == "C" and isinstance(event, (ConnectedEvent, fast.ConnectedEvent)):
        key = (time_us, sequence, arrival)
        if log.connect is None or key < log.connect[0]:
            changes["connect"] = (key, event.data)
    return changes


def _log_updated(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    assert isinstance(event, (LogUpdatedEvent, fast.LogUpdatedEvent))
    data, changes = event.data, {}
    sent = data.model_fields_set  # once: the fast path's struct computes it on each read
    for field, slot in (("notes", "notes"), ("subject", "subject"),
                        ("name", "name_choice"), ("related_to", "related_choice")):
        if field in sent:
            current = getattr(log, slot)
            if current is None or stamp > current[0]:
                changes[slot] = (stamp, getattr(data, field))
    return changes


def _record_viewed(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    assert isinstance(event, (RecordViewedEvent, fast.RecordViewedEvent))
    if ended_us is not None and stamp.time_us >= ended_us and _in_time_order(log.transitions):
        # Navigation after disconnect changes nothing; no need to keep the fact. Only in event-time order
        # is the first disconnect final: there a later one can only move it earlier. By sequence, a
        # disconnect numbered lower and stamped later can still arrive and make this view active.
        return {}
    views = list(log.views)
    insort(views, (stamp, event.data.record), key=_view_stamp)  # after equal stamps, as a stable sort
    return {"views": tuple(views[-VIEWS_KEPT:])}


def _in_time_order(transitions: tuple[Transition, ...]) -> bool:
    """Whether the walk takes these transitions in event-time order for good: one of them has no sequence."""
    return any(transition.sequence < 0 for transition in transitions)


def _wrapup(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    assert isinstance(event, (WrapupEvent, fast.WrapupEvent))
    if log.wrapup is not None and stamp < log.wrapup[0]:
        return {}
    return {"wrapup": (stamp, event.data.code, event.data.note)}


def _attributes(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    assert isinstance(event, (AttributesEvent, fast.AttributesEvent))
    merged = {key: (key, key_stamp, value) for key, key_stamp, value in log.attributes}
    for key, value in event.data.attributes.items():
        current = merged.get(key)
        if current is None or stamp > current[1]:
            merged[key] = (key, stamp, value)
    return {"attributes": tuple(merged[key] for key in sorted(merged))}


def _nothing(log: InteractionLog, event: AnyEvent, stamp: Stamp, window_us: int, ended_us: int | None) -> Changes:
    return {}


_APPLY: dict[str, Callable[[InteractionLog, AnyEvent, Stamp, int, int | None], Changes]] = {
    "interaction.connected": _transition,
    "interaction.held": _transition,
    "interaction.resumed": _transition,
    "interaction.disconnected": _transition,
    "log.updated": _log_updated,
    "record.viewed": _record_viewed,
    "log.opened": _nothing,
    "interaction.wrapup": _wrapup,
    "interaction.attributes": _attributes,
}


def _set_up_compiled_fold() -> bool:
    """Hand the compiled fold what it builds its results from, once, when the compiled core is installed.

    False when it is not, or when the installed module was built before it had a fold (`make install`
    builds it again): the Python folds alone then."""
    core = native.installed()
    if core is None or not hasattr(core, "fold_setup"):
        return False
    events: dict[type, str] = {model: event_type for event_type, model in EVENT_MODELS.items()}
    events.update((struct, struct.type) for struct in get_args(FastEvent))
    core.fold_setup({
        "InteractionLog": InteractionLog,
        "fields": tuple(field.name for field in fields(InteractionLog)),
        "Derived": Derived,
        "Stamp": Stamp,
        "Transition": Transition,
        "FoldResult": FoldResult,
        "Duplicate": _DUPLICATE,
        "Trigger": Trigger,
        "Accepted": _ACCEPTED,
        "events": events,
        "LogUpdatedData": fast.LogUpdatedData,
        "UNSET": fast.LogUpdatedData().notes,  # msgspec's UNSET: a field not sent
        "EPOCH": _EPOCH,
        "VIEWS_KEPT": VIEWS_KEPT,
        "MAX_ATTRIBUTES": MAX_ATTRIBUTES,
    })
    return True


_COMPILED_FOLD = _set_up_compiled_fold()
