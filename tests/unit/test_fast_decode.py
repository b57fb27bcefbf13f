"""The compiled decoder (`schemas.fast`) accepts only what the models accept, with the same values.

Whatever the fast path refuses goes to `decode_event`, so its rejections are the models' own; what it
accepts must be an event the models accept, field for field. Compared over generated streams (malformed
lines included), over mutations of each field at and around its bounds, and by folding generated
histories both ways.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest.mock import ANY

from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from schemas.decode import decode_event
from schemas.events import MAX_EVENT_BYTES, Rejection, RejectReason
from schemas.fast import FastEvent, _fast, decode_event_fast
from worker.core.fold import fold
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, Tombstone
from worker.dev.generator import GeneratorMix, generate_histories, generate_stream

START = datetime(2026, 3, 1, 9, 30, 15, 123000, tzinfo=UTC)
MIX = GeneratorMix(duplicate_ratio=0.1, shuffle_within_interaction=True, late_edit_ratio=0.1, malformed_ratio=0.2)
FAST_TYPES = ("interaction.connected", "interaction.held", "interaction.resumed", "interaction.disconnected",
              "record.viewed", "log.opened", "log.updated", "interaction.wrapup", "interaction.attributes")


def _fields(event: Any) -> dict[str, Any]:
    """What the fold can read of an event, model or struct."""
    data = event.data
    fields: dict[str, Any] = {"type": event.type, "id": event.id, "subject": event.subject, "source": event.source,
                              "specversion": event.specversion, "time": event.time, "tz": event.time.tzinfo,
                              "sequence": event.sequence}
    if event.type == "log.updated":
        fields["set"] = data.model_fields_set
        fields.update((name, getattr(data, name)) for name in data.model_fields_set)
    elif event.type == "interaction.wrapup":
        fields.update(code=data.code, note=data.note)
    elif event.type == "interaction.attributes":
        fields["attributes"] = data.attributes
    elif event.type == "interaction.disconnected":
        fields["reason"] = data.reason
    elif event.type in ("interaction.connected", "record.viewed"):
        fields["data"] = _model_facts(data)
    return fields


def _model_facts(model: object) -> object:
    """Everything the state and snapshot encoders read of a data model: its class, its `__dict__` in order
    (nested models alike), the fields that were sent, and the slots pydantic compares."""
    if not isinstance(model, BaseModel):
        return model
    return (type(model), [(name, _model_facts(value)) for name, value in model.__dict__.items()],
            model.model_fields_set, model.__pydantic_extra__, model.__pydantic_private__)


def _agree(raw: bytes) -> bool | None:
    """True when the fast path accepted what the models accept, alike; None when it left the event to them."""
    fast = _fast(raw)
    model = decode_event(raw)
    if fast is None or isinstance(fast, Rejection):
        assert decode_event_fast(raw) == model  # the models' own answer, or their rejection worded alike
        return None
    assert not isinstance(model, Rejection), (raw, model)
    assert _fields(fast) == _fields(model), raw
    return True


def _raw(item: dict[str, Any]) -> bytes:
    return json.dumps(item, ensure_ascii=False).encode()


def test_generated_streams_decode_alike_and_the_fast_path_takes_most_events() -> None:
    stream = generate_stream(300, seed=5, start=START, rate_per_s=5, mix=MIX)
    raws = [item if isinstance(item, bytes) else _raw(item) for item in stream]
    outcomes = [_agree(raw) for raw in raws]
    fast_types = sum(1 for item in stream if isinstance(item, dict) and item.get("type") in FAST_TYPES)
    assert outcomes.count(True) > 0.8 * fast_types


TEXTS = st.one_of(st.text(max_size=3), st.sampled_from(["", "x" * 255, "x" * 256, "😀" * 255, "😀" * 256,
                                                       "y" * 1000, "y" * 1001, "z" * 32_000, "z" * 32_001]))
VALUES = st.one_of(TEXTS, st.none(), st.booleans(), st.integers(min_value=-(2**64), max_value=2**64),
                   st.floats(allow_nan=False), st.just(5.0), st.lists(st.integers(), max_size=2),
                   st.dictionaries(st.text(max_size=2), st.text(max_size=2), max_size=2))
TIMES = st.one_of(st.sampled_from([
    "2026-11-27T10:00:00Z", "2026-11-27t10:00:00z", "2026-11-27T10:00:00+01:00", "2026-11-27T10:00:00-00:00",
    "2026-11-27 10:00:00Z", "2026-11-27T10:00:00.1234567Z", "2026-11-27T10:00:00.123456Z", "2026-11-27T10:00:60Z",
    "2026-02-30T10:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-11-27T10:00:00",
    "2026-11-27", "20261127T100000Z", "2026-11-27T24:00:00Z", "２026-11-27T10:00:00Z",
]), VALUES)
SEQUENCES = st.one_of(st.sampled_from([0, 1, 2**63 - 1, 2**63, -1, 5.0, 5.5, "5", True, None]), VALUES)


REF = {"system": "salesforce", "type": "Contact", "id": "003A0000000001"}
RELATED_REF = {"system": "salesforce", "type": "Case", "id": "500A0000000001"}


def _base(event_type: str) -> dict[str, Any]:
    data = {"log.updated": {"notes": "n"}, "interaction.wrapup": {"code": "Resolved", "note": "ok"},
            "interaction.attributes": {"attributes": {"tier": "gold"}},
            "interaction.disconnected": {"reason": "hangup"},
            "interaction.connected": {"media": "voice", "direction": "inbound", "queue": "Support",
                                      "agent_id": "agent-7", "customer": {"address": "+4930123", "name": "Ada"},
                                      "name": dict(REF), "related_to": None},
            "record.viewed": {"record": dict(REF)}}.get(event_type)
    item: dict[str, Any] = {"specversion": "1.0", "id": "evt-1", "source": "/p", "type": event_type,
                            "subject": "conv-1", "time": "2026-11-27T10:00:00Z", "sequence": 3}
    if data is not None:
        item["data"] = data
    return item


_MISSING = object()


@settings(max_examples=400, deadline=None)
@given(event_type=st.sampled_from([*FAST_TYPES, "interaction.connected", "record.viewed", "nope"]),
       field=st.sampled_from(["specversion", "id", "source", "subject", "time", "sequence", "type", "data",
                              "extra"]),
       value=st.one_of(VALUES, TIMES, SEQUENCES, st.just(_MISSING)))
def test_any_envelope_field_mutated_decodes_alike(event_type: str, field: str, value: object) -> None:
    item = _base(event_type)
    if value is _MISSING:
        item.pop(field, None)
    else:
        item[field] = value
    _agree(_raw(item))


DATA_FIELDS = {
    "log.updated": ["notes", "subject", "name", "related_to", "other"],
    "interaction.wrapup": ["code", "note", "other"],
    "interaction.attributes": ["attributes", "other"],
    "interaction.disconnected": ["reason", "other"],
    "interaction.held": ["other"],
    "interaction.connected": ["media", "direction", "queue", "agent_id", "customer", "name", "related_to", "other"],
    "record.viewed": ["record", "other"],
}
ENUM_TEXTS = st.sampled_from(["voice", "callback", "chat", "email", "message", "inbound", "outbound", "Voice",
                              "INBOUND", " chat", "fax", "salesforce", "zendesk", "custom", "Salesforce"])
REFS = st.fixed_dictionaries({}, optional={
    "system": st.one_of(ENUM_TEXTS, VALUES),
    "type": st.one_of(st.sampled_from(["Case", "Contact", "user", "x" * 80, "x" * 81]), VALUES),
    "id": st.one_of(st.sampled_from(["1", "x" * 255, "😀" * 256]), VALUES), "other": VALUES})
CUSTOMERS = st.fixed_dictionaries({}, optional={"address": VALUES, "name": VALUES, "other": VALUES})
DATA_VALUES = {"media": st.one_of(ENUM_TEXTS, VALUES), "direction": st.one_of(ENUM_TEXTS, VALUES),
               "customer": st.one_of(CUSTOMERS, VALUES), "name": st.one_of(REFS, VALUES),
               "related_to": st.one_of(REFS, VALUES), "record": st.one_of(REFS, VALUES)}
ATTRIBUTES = st.one_of(
    st.dictionaries(st.sampled_from(["", "k", "k" * 100, "k" * 101, "😀" * 100]), TEXTS, max_size=3),
    st.just({f"k{n}": "v" for n in range(100)}), st.just({f"k{n}": "v" for n in range(101)}), VALUES,
)


@settings(max_examples=400, deadline=None)
@given(event_type=st.sampled_from(sorted(DATA_FIELDS)), data=st.data())
def test_any_data_field_mutated_decodes_alike(event_type: str, data: st.DataObject) -> None:
    item = _base(event_type)
    body = dict(item.get("data") or {})
    field = data.draw(st.sampled_from(DATA_FIELDS[event_type]))
    values = ATTRIBUTES if field == "attributes" else DATA_VALUES.get(field, VALUES)
    value = data.draw(st.one_of(values, st.just(_MISSING)))
    if value is _MISSING:
        body.pop(field, None)
    else:
        body[field] = value
    item["data"] = body
    _agree(_raw(item))


def test_json_the_parsers_could_read_differently_goes_to_the_models() -> None:
    base = _raw(_base("log.updated"))
    for raw in [
        base.replace(b'"notes": "n"', b'"notes": "\\ud800"'),  # lone surrogate
        base.replace(b'"notes": "n"', b'"notes": "a", "notes": "b"'),  # duplicate key: both take the last
        b"\xef\xbb\xbf" + base,  # BOM
        base.replace(b'"n"', b'"\xff"'),  # not UTF-8
        base.replace(b'"notes"', b'"notes": "n", "no\x80tes"'),  # not UTF-8 in a key the structs skip unread
        base.replace(b'"notes"', b'"other": "\xc3", "notes"'),  # … and in the value of one
        base + b" ", b" " + base, base + b"x", base[:-1],
        base.replace(b'"sequence": 3', b'"sequence": 3.0'), base.replace(b'"sequence": 3', b'"sequence": NaN'),
        base.replace(b'"sequence": 3', b'"sequence": 1e2'),
    ]:
        _agree(raw)
    connected, viewed = _raw(_base("interaction.connected")), _raw(_base("record.viewed"))
    for raw in [
        connected.replace(b'"name": "Ada"', b'"name": "\\ud800"'),
        connected.replace(b'"agent_id": "agent-7"', b'"agent_id": "a", "agent_id": "b"'),
        connected.replace(b'"media": "voice"', b'"media": "voice", "media": "chat"'),
        connected.replace(b'"related_to": null', b'"related_to": null, "related_to": {"system": "zendesk"}'),
        viewed.replace(b'"type": "Contact"', b'"type": "Case", "type": "Contact"'),
        viewed.replace(b'"id": "003A0000000001"', b'"id": "\\udfff"'),
        viewed.replace(b'"Contact"', b'"\xff"'), viewed.replace(b'}}', b'}, "data": {}}'),
        viewed.replace(b'"data": {', b'"data": null, "data": {'), viewed.replace(b'}}', b'}, "data": null}'),
        viewed.replace(b'"Contact"', b'"Con\\u0074act"'),
    ]:
        _agree(raw)


def test_not_json_an_unknown_type_and_refused_data_are_worded_here_as_the_models_word_them() -> None:
    survey = _base("log.opened")
    survey["type"] = "interaction.survey"
    fax = _base("interaction.connected")
    fax["data"]["media"] = "fax"
    long_ref = _base("record.viewed")
    long_ref["data"]["record"]["type"] = "x" * 81
    broken = _raw(_base("log.opened")).replace(b', "subject"', b' "subject"')  # a comma missing
    for raw, reason in [(_raw(survey), "unknown_type"), (_raw(fax), "invalid"), (_raw(long_ref), "too_large"),
                        (broken, "invalid"), (b"", "invalid")]:
        fast = _fast(raw)
        assert isinstance(fast, Rejection), raw  # answered without the models
        assert fast == decode_event(raw)
        assert fast.reason.value == reason
        if not fast.message.startswith("not JSON"):
            assert (fast.event_id, fast.subject) == ("evt-1", "conv-1")
    assert "data.media" in str(_fast(_raw(fax)))
    assert str(_fast(broken)).count("not JSON: Expecting ',' delimiter") == 1


def test_a_refusal_with_more_wrong_than_the_shortcut_sees_goes_to_the_models() -> None:
    fax = _base("interaction.connected")
    fax["data"]["media"] = "fax"
    bad_time, bad_envelope = dict(fax, time="yesterday"), dict(fax, source="")
    survey = _raw(dict(_base("log.opened"), type="interaction.survey"))
    deep = survey[:-1] + b', "data": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"  # past `json`'s recursion limit
    for raw in [_raw(bad_time), _raw(bad_envelope), survey[:-1], _raw(dict(_base("log.opened"), type=7)), deep]:
        assert _fast(raw) is None, raw  # the models see every problem of it
        assert decode_event_fast(raw) == decode_event(raw)
    model = decode_event(_raw(bad_time))
    assert isinstance(model, Rejection) and "time" in model.message and "data.media" in model.message
    # an unknown type is the whole answer, whatever else is wrong: the models word it from the object alone
    odd_id = survey.replace(b'"id": "evt-1"', b'"id": 7')
    assert _fast(odd_id) == decode_event(odd_id) == Rejection(None, "conv-1", RejectReason.UNKNOWN_TYPE, ANY)


def test_an_event_over_the_size_bound_is_too_large_whatever_it_holds() -> None:
    item = _base("log.updated")
    item["padding"] = "p" * MAX_EVENT_BYTES
    raw = _raw(item)
    assert decode_event(raw) == decode_event_fast(raw)
    assert isinstance(decode_event_fast(raw), Rejection)


def test_binary_mode_goes_to_the_models() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_source", b"/p"), ("ce_type", b"log.opened"),
               ("ce_subject", b"conv-1"), ("ce_time", b"2026-11-27T10:00:00Z")]
    assert decode_event(b"{}", headers) == decode_event_fast(b"{}", headers)
    assert not isinstance(decode_event_fast(b"{}", headers), FastEvent)


def test_histories_fold_to_the_same_logs_and_snapshots_either_way() -> None:
    histories = generate_histories(60, seed=9, start=START, rate_per_s=5, mix=MIX)
    for history in histories:
        raws = [_raw(item) for item in history]
        both: list[list[bytes]] = []
        for decode in (decode_event, decode_event_fast):
            state: InteractionLog | Tombstone | None = None
            seen: list[bytes] = []
            for raw in raws:
                event = decode(raw)
                assert not isinstance(event, Rejection)
                result = fold(state, event, edit_window_s=120.0)
                state = result.log
                if isinstance(state, InteractionLog):
                    seen += [state.to_bytes(), snapshot_json(state), repr(result.outcome).encode()]
            both.append(seen)
        assert both[0] == both[1]


BOUNDS = [  # (type, where, field, characters allowed)
    ("log.updated", "data", "notes", 32_000), ("log.updated", "data", "subject", 255),
    ("interaction.wrapup", "data", "code", 255), ("interaction.wrapup", "data", "note", 32_000),
    ("interaction.disconnected", "data", "reason", 1000), ("log.opened", "envelope", "id", 255),
    ("log.opened", "envelope", "subject", 255), ("log.opened", "envelope", "source", 1000),
]


NESTED_BOUNDS = [  # (type, path under data, characters allowed, whether "" is allowed)
    ("interaction.connected", ("queue",), 255, True), ("interaction.connected", ("agent_id",), 255, True),
    ("interaction.connected", ("customer", "address"), 255, True),
    ("interaction.connected", ("customer", "name"), 255, True),
    ("interaction.connected", ("related_to", "type"), 80, False),
    ("interaction.connected", ("related_to", "id"), 255, False), ("interaction.connected", ("name", "id"), 255, False),
    ("record.viewed", ("record", "type"), 80, False), ("record.viewed", ("record", "id"), 255, False),
]


def test_every_bound_of_connected_and_viewed_data_holds_at_its_limit() -> None:
    for event_type, path, limit, empty_allowed in NESTED_BOUNDS:
        for char in ("x", "😀"):
            for length, accepted in ((limit, True), (limit + 1, False), (0, empty_allowed)):
                item = _base(event_type)
                parent = item["data"]
                if len(path) == 2:
                    parent[path[0]] = dict(parent[path[0]] or (RELATED_REF if path[0] == "related_to" else REF))
                    parent = parent[path[0]]
                parent[path[-1]] = char * length
                assert _agree(_raw(item)) is (True if accepted else None), (event_type, path, length)


def test_every_bound_holds_at_its_limit_and_refuses_one_more_character() -> None:
    for event_type, where, field, limit in BOUNDS:
        for char in ("x", "😀"):
            for length, accepted in ((limit, True), (limit + 1, False)):
                item = _base(event_type)
                (item if where == "envelope" else item["data"])[field] = char * length
                assert _agree(_raw(item)) is (True if accepted else None), (event_type, field, length)
    for keys, key_chars, value_chars, accepted in ((100, 100, 1000, True), (101, 1, 1, False),
                                                   (1, 101, 1, False), (1, 1, 1001, False), (1, 0, 1, False)):
        item = _base("interaction.attributes")
        distinct = [(chr(0x100 + n) + "k" * key_chars)[:key_chars] for n in range(keys)]  # "" when key_chars is 0
        item["data"]["attributes"] = {key: "v" * value_chars for key in distinct}
        assert _agree(_raw(item)) is (True if accepted else None), (keys, key_chars, value_chars)


SAMPLE = Path(__file__).resolve().parents[1] / "data" / "sample-events.jsonl"
MUTATION_BYTES = b'{}[],:"\\ 0123456789.-eEtrufalsnTZu\x00\xff\xc3\x80'


def test_sample_lines_with_bytes_changed_decode_alike() -> None:
    """Bytes replaced, dropped, added or cut off: whatever the fast path answers (an event, a worded refusal, or
    nothing, the models then answering), `decode_event_fast` gives what `decode_event` gives."""
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]
    rng = random.Random(11)
    answered = 0
    for _ in range(4_000):
        raw = bytearray(rng.choice(lines))
        for _ in range(rng.randint(1, 3)):
            at, roll = rng.randrange(len(raw)), rng.random()
            if roll < 0.4:
                raw[at] = rng.choice(MUTATION_BYTES)
            elif roll < 0.7:
                del raw[at]
            elif roll < 0.9:
                raw.insert(at, rng.choice(MUTATION_BYTES))
            else:
                del raw[at:]
            if not raw:
                break
        answered += _agree(bytes(raw)) is not None or isinstance(_fast(bytes(raw)), Rejection)
    assert answered > 2_000  # most of them without the models
