"""The folded state of one interaction (`InteractionLog`) and what is left after it closes (`Tombstone`).

The log stores FACTS with their stamps (state transitions, viewed records, the agent's explicit
choices, field values), not the visible fields: `worker.core.fold.snapshot` derives those. That is what
makes the fold permutation-invariant: the same set of events gives the same facts in any order.

Stamps order field values: `Stamp(sequence, time_us, arrival)`, where an event without `sequence`
carries -1 (a producer that numbers its events outranks one that does not) and `arrival` is the
log version at which the event was applied (the tie-break "then arrival order"). `Stamp` and
`Transition` are NamedTuples: stored as the same JSON arrays plain tuples give, read back named.

Both types serialize to compact JSON (short keys, times as epoch microseconds) for the Redis store,
with orjson: the same bytes `json.dumps(separators=(",", ":"), ensure_ascii=False)` gives, faster.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, make_dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple, cast

import orjson
from pydantic import BaseModel, ValidationError

from schemas.common import MAX_FIELD_CHARS, RecordRef, RecordSystem, Trigger, is_name_type
from schemas.events import ConnectedData
from worker.core import native


class Stamp(NamedTuple):
    """Orders the values of one field: compared as a tuple, sequence first."""

    sequence: int
    """The producer's number, or -1 for an event without one."""
    time_us: int
    """Event time in µs since the epoch."""
    arrival: int
    """The log version at which the event was applied (the tie-break "then arrival order")."""


TransitionKind = str
"""One of `C` connected, `H` held, `R` resumed, `D` disconnected."""


class Transition(NamedTuple):
    """One state transition; transitions compare (and are kept sorted) by event time first."""

    time_us: int
    sequence: int
    arrival: int
    kind: TransitionKind


View = tuple[Stamp, RecordRef]
StampedText = tuple[Stamp, str | None]
StampedRef = tuple[Stamp, RecordRef | None]
Wrapup = tuple[Stamp, str, str | None]
ConnectKey = tuple[int, int, int]
"""(time_us, sequence or -1, arrival): a transition's order without its kind."""
ConnectFact = tuple[ConnectKey, ConnectedData]
"""(key, data) of the earliest `interaction.connected`."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Enum look-ups by value without `Enum.__call__`, which is slow on the load path.
_SYSTEMS = {system.value: system for system in RecordSystem}
_TRIGGERS = {trigger.value: trigger for trigger in Trigger}
TRIGGERS = _TRIGGERS
"""A trigger by its value, without `Enum.__call__`."""


def to_us(moment: datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact, no float rounding)."""
    since = moment - _EPOCH  # read off the timedelta's fields: cheaper than `// timedelta(microseconds=1)`
    return (since.days * 86_400 + since.seconds) * 1_000_000 + since.microseconds


def from_us(epoch_us: int) -> datetime:
    return _EPOCH + timedelta(0, 0, epoch_us)  # positional: the keyword form costs half as much again


class Derived:
    """The encoded parts of a log that change less often than its version, kept beside the log.

    Each fact (the transitions, the connect data, the views, the attributes) sits here next to its JSON
    and counts only while it is the log's own fact, compared by identity: facts are immutable tuples
    that the fold replaces when they change and hands on as the same objects when not. Versions of
    one interaction share one `Derived` (`evolve_log` hands it on), so a version whose connect data did
    not change reuses its JSON; a version whose fact differs encodes it again and keeps that. Never
    stored, never compared. Plain slots rather than a container per entry: every object kept here for
    the ~20,000 logs a busy stage holds is one more object for the garbage collector to walk.
    The stored parts stay right when another thread encodes a version of the same interaction at the same
    time (see `_add_facts`); the snapshot's parts (`snapshot`) are for the thread that plans batches.
    """

    __slots__ = ("attributes", "attributes_json", "connect", "connect_json", "snapshot", "transitions",
                 "transitions_json", "views", "views_json")

    def __init__(self) -> None:
        self.transitions: object = None
        self.transitions_json = b""
        self.connect: object = None
        self.connect_json = b""
        self.views: object = None
        self.views_json = b""
        self.attributes: object = None
        self.attributes_json = b""
        self.snapshot: object = None
        """The snapshot's encoded parts (`worker.core.snapshot_json`), kept the same way."""


def derived_of(log: InteractionLog) -> Derived:
    """The log's `Derived`, made on first use (a log read from Redis has none yet)."""
    derived = log.derived
    if derived is None:
        derived = Derived()
        object.__setattr__(log, "derived", derived)
    return derived


@dataclass(frozen=True, slots=True)
class InteractionLog:
    """Folded state of one open interaction. Immutable: the fold returns a new one per change."""

    interaction_id: str
    version: int = 0
    trigger: Trigger = Trigger.CREATED
    finalized: bool = False
    edit_deadline_us: int | None = None
    last_event_us: int = 0
    applied_ids: tuple[str, ...] = ()
    transitions: tuple[Transition, ...] = ()
    connect: ConnectFact | None = None
    views: tuple[View, ...] = ()
    notes: StampedText | None = None
    subject: StampedText | None = None
    name_choice: StampedRef | None = None
    related_choice: StampedRef | None = None
    wrapup: Wrapup | None = None
    attributes: tuple[tuple[str, Stamp, str], ...] = ()
    derived: Derived | None = field(default=None, compare=False, repr=False)
    """The encoded facts, kept for the next versions: see `Derived`."""

    @property
    def edit_deadline(self) -> datetime | None:
        return None if self.edit_deadline_us is None else from_us(self.edit_deadline_us)

    @property
    def edit_deadline_ms(self) -> int | None:
        """`int(self.edit_deadline.timestamp() * 1000)` (the deadline sets' score, the TTL's base), without a datetime:
        an aware datetime's `timestamp()` is its microseconds since the epoch divided by 10**6 as `int / int`, so
        this is the same float and the same number (`tests/unit/test_fold_batch.py` checks it)."""
        deadline_us = self.edit_deadline_us
        return None if deadline_us is None else int(deadline_us / 1_000_000 * 1000)

    def to_bytes(self) -> bytes:
        """The stored document (`_log_document`) as JSON; the compiled core writes the same bytes when in use."""
        core = native.CORE  # read at each call: the switch can change after import
        if core is not None:
            encoded = core.state_bytes(self)
            if encoded is not None:
                return encoded
        return orjson.dumps(_log_document(self), default=_fact_out)

    @classmethod
    def from_bytes(cls, raw: bytes) -> InteractionLog:
        """Inverse of `to_bytes`; raises ValueError on anything else."""
        document = orjson.loads(raw)
        if not isinstance(document, dict) or document.get("k") != "log":
            raise ValueError("not a serialized InteractionLog")
        try:
            return _log_from_document(document)
        except (KeyError, TypeError, IndexError) as error:
            raise ValueError(f"corrupt InteractionLog: {error!r}") from error


@dataclass(frozen=True, slots=True)
class Tombstone:
    """What remains of a finalized interaction: enough to answer late events with `window_closed`.

    It keeps the log's applied event ids (as bounded as the log's), so an event read again after
    finalization (a crash between finalizing and committing) is a duplicate, not `window_closed`.
    """

    interaction_id: str
    version: int
    finalized_at: datetime
    applied_ids: tuple[str, ...] = ()

    def to_bytes(self) -> bytes:
        document: dict[str, Any] = {"k": "tomb", "i": self.interaction_id, "v": self.version,
                                    "at": to_us(self.finalized_at)}
        if self.applied_ids:
            document["a"] = self.applied_ids
        return orjson.dumps(document)

    @classmethod
    def from_bytes(cls, raw: bytes) -> Tombstone:
        """Inverse of `to_bytes`; tombstones written before they kept ids read with none."""
        document = orjson.loads(raw)
        if not isinstance(document, dict) or document.get("k") != "tomb":
            raise ValueError("not a serialized Tombstone")
        try:
            return cls(str(document["i"]), int(document["v"]), from_us(int(document["at"])),
                       tuple(str(event_id) for event_id in document.get("a", ())))
        except (KeyError, TypeError) as error:
            raise ValueError(f"corrupt Tombstone: {error!r}") from error


class StoredLog(NamedTuple):
    """An open log held as its stored document: what the fold stage keeps between two events of an interaction
    when the compiled core folds documents (`fold_document`, `worker.core.fold.document_fold`).

    `document` is exactly the bytes `InteractionLog.to_bytes()` writes for the log: written in this process (by
    the compiled fold or the encoder), or loaded from the store and read by the compiled core, which holds only
    such a document (`worker.core.fold.held_log`); so it holds nothing `from_bytes` would cut. The other fields
    are the values the stage reads without decoding it. `log()` gives the `InteractionLog` (the specification's type,
    for everything but the stage's hot path). Never finalized: a finalized log leaves a tombstone.

    A NamedTuple: one is made per changed log of every batch, in a single `tuple.__new__`."""

    interaction_id: str
    version: int
    edit_deadline_us: int | None
    document: bytes

    @property
    def finalized(self) -> bool:
        return False

    @property
    def edit_deadline_ms(self) -> int | None:
        """`InteractionLog.edit_deadline_ms`: the same arithmetic on the same microseconds."""
        deadline_us = self.edit_deadline_us
        return None if deadline_us is None else int(deadline_us / 1_000_000 * 1000)

    def to_bytes(self) -> bytes:
        return self.document

    def log(self) -> InteractionLog:
        """The log as Python objects (`InteractionLog.from_bytes` of the document)."""
        return InteractionLog.from_bytes(self.document)


def stored_log(log: InteractionLog, document: bytes) -> StoredLog:
    """`log`, not finalized, held as `document` (its `to_bytes()`)."""
    return StoredLog(log.interaction_id, log.version, log.edit_deadline_us, document)


def as_log(state: InteractionLog | StoredLog) -> InteractionLog:
    """The `InteractionLog` of an open log however it is held."""
    return state.log() if isinstance(state, StoredLog) else state


_MutableLog = make_dataclass("_MutableLog", [field.name for field in fields(InteractionLog)], slots=True)
"""Same slots as `InteractionLog`, in the same order, without the frozen check on each assignment."""


def evolve_log(
    log: InteractionLog, version: int, trigger: Trigger, applied_ids: tuple[str, ...], last_event_us: int,
    changes: dict[str, Any],
) -> InteractionLog:
    """`dataclasses.replace(log, version=…, trigger=…, applied_ids=…, last_event_us=…, **changes)`, fast.

    The fold's hot path. A frozen dataclass `__init__` pays one `object.__setattr__` per field (16
    here); filling the mutable twin and then giving it the `InteractionLog` class (same slot layout,
    so CPython allows the `__class__` assignment) is about 5x cheaper and yields an equal object.
    Both versions share one `Derived` (made here when `log` has none yet).
    """
    twin = _MutableLog(
        log.interaction_id, version, trigger, log.finalized, log.edit_deadline_us, last_event_us, applied_ids,
        log.transitions, log.connect, log.views, log.notes, log.subject, log.name_choice, log.related_choice,
        log.wrapup, log.attributes, log.derived if log.derived is not None else derived_of(log),
    )
    for name, value in changes.items():
        setattr(twin, name, value)
    object.__setattr__(twin, "__class__", InteractionLog)
    return cast(InteractionLog, twin)


def _ref_out(ref: RecordRef | None) -> list[str] | None:
    return None if ref is None else [ref.system, ref.type, ref.id]  # a StrEnum: orjson writes its value


def _ref_in(raw: list[str] | None) -> RecordRef | None:
    if raw is None:
        return None
    return RecordRef(system=_SYSTEMS[raw[0]], type=raw[1], id=raw[2])  # KeyError: corrupt, as documented


def _stamped_ref_out(choice: StampedRef | None) -> list[Any] | None:
    return None if choice is None else [tuple(choice[0]), _ref_out(choice[1])]


def _connected_in(raw: dict[str, Any]) -> ConnectedData:
    try:
        return ConnectedData.model_validate(raw)
    except ValidationError:
        # stored before the bounds and ref rules of CONTRACT.md: read it cut to them rather than refuse the log
        return ConnectedData.model_validate(_cut_to_bounds(raw))


def _cut_to_bounds(raw: dict[str, Any]) -> dict[str, Any]:
    """The stored connect data within today's rules: short fields cut to their bound, and a ref stored in the
    field it does not belong to (Name takes Contact and Lead, Zendesk: user) moved to the other when that one
    is empty, else left out."""
    def cut(value: Any) -> Any:
        return value[:MAX_FIELD_CHARS] if isinstance(value, str) else value

    customer = raw.get("customer")
    document = {key: cut(value) if key in ("queue", "agent_id") else value for key, value in raw.items()}
    if isinstance(customer, dict):
        document["customer"] = {key: cut(value) for key, value in customer.items()}
    refs = [ref for ref in (document.get("name"), document.get("related_to")) if _kind_of(ref) is not None]
    if refs:
        document["name"] = next((ref for ref in refs if _kind_of(ref) == "name"), None)
        document["related_to"] = next((ref for ref in refs if _kind_of(ref) == "related"), None)
    return document


def _kind_of(raw: Any) -> str | None:
    """`name` or `related` for a stored ref by its system and type; None for anything else."""
    if not isinstance(raw, dict) or not isinstance(raw.get("system"), str) or not isinstance(raw.get("type"), str):
        return None
    return "name" if is_name_type(raw["system"], raw["type"]) else "related"


def _model_out(model: BaseModel) -> dict[str, Any]:
    """`model.model_dump(mode="json", exclude_none=True)` for the connect data, without pydantic's
    serializer (the worker's hottest write path): a model's `__dict__` holds its fields in declaration
    order, nested models recurse, and enum members go in as the `str` subclasses they are. The
    byte-equality test of the stored document guards this if a model gains another kind of field."""
    return {name: _model_out(value) if isinstance(value, BaseModel) else value
            for name, value in model.__dict__.items() if value is not None}


def _fact_out(fact: object) -> tuple[Any, ...]:
    """orjson writes plain tuples only: a `Stamp` or `Transition` goes in as the array it is."""
    if isinstance(fact, tuple):
        return tuple(fact)
    raise TypeError(f"{type(fact).__name__} is not part of a stored log")


def _stamp_in(raw: list[int]) -> Stamp:
    return Stamp(int(raw[0]), int(raw[1]), int(raw[2]))


def _connect_key_in(raw: list[int]) -> ConnectKey:
    return (int(raw[0]), int(raw[1]), int(raw[2]))


def _log_document(log: InteractionLog) -> dict[str, Any]:
    """The stored document: fixed keys first, then the optional ones that are set, in this order.

    Enum members go in as they are: they are `str` subclasses, which orjson writes as their value. The
    facts that change less often than the version (transitions, connect data, views, attributes) go in
    as JSON fragments, encoded once per fact (see `Derived`); a `Stamp` goes in as the plain tuple it
    is (orjson writes tuples, not their subclasses)."""
    document: dict[str, Any] = {"k": "log", "i": log.interaction_id, "v": log.version,
                                "g": log.trigger, "l": log.last_event_us, "a": log.applied_ids}
    if log.finalized:
        document["f"] = 1
    if log.edit_deadline_us is not None:
        document["e"] = log.edit_deadline_us
    _add_facts(document, log, derived_of(log))
    return document


def _add_facts(document: dict[str, Any], log: InteractionLog, derived: Derived) -> None:
    # Each kept JSON is read before its fact is checked, and a fact is cleared before its JSON is
    # replaced: a version encoded on another thread at the same time (a store write without the
    # planner's bytes) can make this encode a fact again, never use another fact's JSON.
    if log.transitions:
        encoded = derived.transitions_json
        if derived.transitions is not log.transitions:
            encoded = _encoded([tuple(transition) for transition in log.transitions])
            derived.transitions, derived.transitions_json, derived.transitions = None, encoded, log.transitions
        document["t"] = orjson.Fragment(encoded)
    if log.connect is not None:
        encoded = derived.connect_json
        if derived.connect is not log.connect:
            encoded = _encoded([log.connect[0], _model_out(log.connect[1])])
            derived.connect, derived.connect_json, derived.connect = None, encoded, log.connect
        document["c"] = orjson.Fragment(encoded)
    if log.views:
        encoded = derived.views_json
        if derived.views is not log.views:
            encoded = _encoded([[tuple(stamp), [ref.system, ref.type, ref.id]] for stamp, ref in log.views])
            derived.views, derived.views_json, derived.views = None, encoded, log.views
        document["w"] = orjson.Fragment(encoded)
    _add_choices(document, log)
    if log.attributes:
        encoded = derived.attributes_json
        if derived.attributes is not log.attributes:
            encoded = _encoded([(key, tuple(stamp), value) for key, stamp, value in log.attributes])
            derived.attributes, derived.attributes_json, derived.attributes = None, encoded, log.attributes
        document["at"] = orjson.Fragment(encoded)


def _encoded(value: Any) -> bytes:
    """The JSON of a fact, as a bytes object of its own size: orjson's result keeps its whole write buffer
    (~4 KiB however short the JSON), which is fine for a document sent at once, not for one kept."""
    return memoryview(orjson.dumps(value, default=_fact_out)).tobytes()


def _add_choices(document: dict[str, Any], log: InteractionLog) -> None:
    if log.notes is not None:
        document["n"] = (tuple(log.notes[0]), log.notes[1])
    if log.subject is not None:
        document["s"] = (tuple(log.subject[0]), log.subject[1])
    if log.name_choice is not None:
        document["nm"] = _stamped_ref_out(log.name_choice)
    if log.related_choice is not None:
        document["rt"] = _stamped_ref_out(log.related_choice)
    if log.wrapup is not None:
        stamp, code, note = log.wrapup
        document["u"] = (tuple(stamp), code, note)


def _stamped_text_in(raw: list[Any] | None) -> StampedText | None:
    return None if raw is None else (_stamp_in(raw[0]), raw[1])


def _stamped_ref_in(raw: list[Any] | None) -> StampedRef | None:
    return None if raw is None else (_stamp_in(raw[0]), _ref_in(raw[1]))


def _log_from_document(document: dict[str, Any]) -> InteractionLog:
    connect = document.get("c")
    wrapup = document.get("u")
    return InteractionLog(
        interaction_id=str(document["i"]),
        version=int(document["v"]),
        trigger=_TRIGGERS[document["g"]],
        finalized=bool(document.get("f")),
        edit_deadline_us=document.get("e"),
        last_event_us=int(document["l"]),
        applied_ids=tuple(str(event_id) for event_id in document["a"]),
        transitions=tuple(Transition(int(t), int(s), int(a), str(k)) for t, s, a, k in document.get("t", ())),
        connect=None if connect is None else (_connect_key_in(connect[0]), _connected_in(connect[1])),
        views=tuple((_stamp_in(stamp), _ref_required(ref)) for stamp, ref in document.get("w", ())),
        notes=_stamped_text_in(document.get("n")),
        subject=_stamped_text_in(document.get("s")),
        name_choice=_stamped_ref_in(document.get("nm")),
        related_choice=_stamped_ref_in(document.get("rt")),
        wrapup=None if wrapup is None else (_stamp_in(wrapup[0]), str(wrapup[1]), wrapup[2]),
        attributes=tuple((str(k), _stamp_in(st), str(value)) for k, st, value in document.get("at", ())),
    )


def _ref_required(raw: list[str]) -> RecordRef:
    ref = _ref_in(raw)
    if ref is None:
        raise TypeError("a viewed record cannot be null")
    return ref
