"""The published JSON Schemas and the worker agree: an event a standard validator (`jsonschema`, with and
without format checking) accepts, the worker's decode accepts, and the other way round.

Events are generated from the models' fields with the values at and around every bound, wrong types,
missing and extra fields. The one case a schema cannot decide without format checking is a day the
calendar does not have (2026-02-30): the pattern admits it, the worker and a format-checking validator
refuse it; that case has its own test.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from schemas.decode import decode_event
from schemas.events import EVENT_MODELS, MAX_SEQUENCE, Rejection
from schemas.examples import EXAMPLE_EVENTS

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas" / "jsonschema"


class _Drop:
    """The field left out (a stable repr: parametrised test ids must be the same in every process)."""

    def __repr__(self) -> str:
        return "<dropped>"


DROP = _Drop()
"""A field value that means: leave the key out."""


@cache
def validators(event_type: str) -> tuple[Draft202012Validator, Draft202012Validator]:
    schema = json.loads((SCHEMAS / f"event.{event_type}.json").read_text())
    Draft202012Validator.check_schema(schema)
    formats = Draft202012Validator.FORMAT_CHECKER
    return Draft202012Validator(schema), Draft202012Validator(schema, format_checker=formats)


def verdicts(document: dict[str, Any]) -> tuple[bool, bool, bool]:
    """(worker accepts, schema accepts without format checking, schema accepts with format checking)."""
    raw = json.dumps(document).encode()
    parsed = json.loads(raw)
    plain, formats = validators(document["type"])
    return (not isinstance(decode_event(raw), Rejection), plain.is_valid(parsed), formats.is_valid(parsed))


def mostly(valid: st.SearchStrategy[object], invalid: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """Valid seven times in eight: with a dozen fields a good share of whole events stays valid."""
    return st.integers(0, 7).flatmap(lambda n: invalid if n == 3 else valid)  # hypothesis favours the ends


def text(limit: int, *, min_size: int = 0) -> st.SearchStrategy[object]:
    """Strings inside and at the bound; beyond it, or not strings at all, now and then."""
    valid = st.one_of(st.text(min_size=min_size, max_size=min(limit, 6)),
                      st.sampled_from(sorted({min_size, limit})).map(lambda n: "é" * n))
    invalid: st.SearchStrategy[object] = st.sampled_from(
        ["é" * (limit + 1), *([""] if min_size else []), None, 5, True, [], {}])
    return mostly(valid, invalid)


def maybe(strategy: st.SearchStrategy[object]) -> st.SearchStrategy[object]:
    """An optional field: left out, null, or a value."""
    return st.one_of(st.just(DROP), st.none(), strategy)


def record_ref() -> st.SearchStrategy[object]:
    ref = st.fixed_dictionaries({
        "system": mostly(st.sampled_from(["salesforce", "zendesk", "custom"]), st.sampled_from(["sap", DROP, None])),
        "type": st.one_of(st.sampled_from(["Contact", "Case", "ticket", "user", "LEAD"]), text(80, min_size=1)),
        "id": st.one_of(st.just("0035g00000AbCdE"), text(255, min_size=1)),
    }, optional={"extra": st.integers()})
    return mostly(ref, st.sampled_from(["Contact", 7]))


VALID_TIMES = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 31))
OFFSETS = st.sampled_from(["Z", "z", "+00:00", "+01:00", "-05:30", "+23:59", "-23:59"])
BAD_TIME_VALUES: list[object] = [
    "2026-11-27T10:00:00", "2026-11-27 10:00:00Z", "2026-11-27T10:00Z", "2026-11-27T10:00:00.1234567890Z",
    "2026-11-27T24:00:00Z", "2026-11-27T10:00:60Z", "2026-13-01T10:00:00Z", "2026-11-27T10:00:00+0100",
    "2026-11-27T10:00:00+24:00", "0000-01-01T00:00:00Z", "20261127T100000Z", "2026-11-27", "", "now",
    1764237600, None,
]
BAD_TIMES = st.sampled_from(BAD_TIME_VALUES)


@st.composite
def good_times(draw: st.DrawFn) -> object:
    moment = draw(VALID_TIMES)
    digits = draw(st.sampled_from([0, 1, 3, 6, 9]))
    fraction = f".{moment.microsecond:06d}789"[: digits + 1] if digits else ""
    separator = draw(st.sampled_from(["T", "t"]))
    return moment.strftime(f"%Y-%m-%d{separator}%H:%M:%S") + fraction + draw(OFFSETS)


SEQUENCES = mostly(
    st.one_of(st.just(DROP), st.none(), st.integers(min_value=0, max_value=10**6),
              st.sampled_from([0, MAX_SEQUENCE, 5.0, 1e18, -0.0])),
    st.sampled_from([-1, MAX_SEQUENCE + 1, 2**64, 5.5, 1e300, "5", "abc", True]),
)
CUSTOMERS = mostly(st.one_of(st.none(), st.fixed_dictionaries(
    {}, optional={"address": st.one_of(st.none(), text(255)), "name": st.one_of(st.none(), text(255))})),
    st.just("Ada"))
LONG_TEXT = mostly(st.sampled_from(["", "short", "n" * 32_000]), st.sampled_from(["n" * 32_001, 42]))

DATA: dict[str, st.SearchStrategy[object]] = {
    "interaction.connected": st.fixed_dictionaries({
        "media": mostly(st.sampled_from(["voice", "callback", "chat", "email", "message"]),
                        st.sampled_from(["fax", "Voice", DROP, None])),
        "direction": mostly(st.sampled_from(["inbound", "outbound"]), st.sampled_from(["sideways", DROP])),
    }, optional={"queue": st.one_of(st.none(), text(255)), "agent_id": st.one_of(st.none(), text(255)),
                 "customer": CUSTOMERS, "name": maybe(record_ref()), "related_to": maybe(record_ref())}),
    "interaction.held": st.fixed_dictionaries({}, optional={"ignored": st.integers()}),
    "interaction.resumed": st.fixed_dictionaries({}),
    "log.opened": st.fixed_dictionaries({}),
    "interaction.disconnected": st.fixed_dictionaries({}, optional={"reason": st.one_of(st.none(), text(1000))}),
    "log.updated": st.fixed_dictionaries({}, optional={
        "notes": st.one_of(st.none(), LONG_TEXT), "subject": st.one_of(st.none(), text(255)),
        "name": st.one_of(st.none(), record_ref()), "related_to": st.one_of(st.none(), record_ref()),
        "other": st.integers()}),
    "record.viewed": st.fixed_dictionaries({"record": mostly(record_ref(), st.sampled_from([DROP, None]))}),
    "interaction.wrapup": st.fixed_dictionaries({"code": mostly(text(255, min_size=1), st.just(DROP))},
                                                optional={"note": st.one_of(st.none(), LONG_TEXT)}),
    "interaction.attributes": st.fixed_dictionaries({"attributes": mostly(
        st.one_of(st.dictionaries(st.text(min_size=1, max_size=5), st.text(max_size=5), max_size=4),
                  st.just({f"k{i}": "v" for i in range(100)}), st.just({"k" * 100: "v" * 1000})),
        st.sampled_from([{f"k{i}": "v" for i in range(101)}, {"k" * 101: "v"}, {"": "v"}, {"k": "v" * 1001},
                         {"k": 5}, ["k", "v"], None, DROP]))}),
}


@st.composite
def events(draw: st.DrawFn, event_type: str) -> dict[str, Any]:
    fields: dict[str, object] = {
        "specversion": draw(mostly(st.just("1.0"), st.sampled_from(["1.1", 1.0, DROP]))),
        "id": draw(mostly(st.one_of(st.just("evt-1"), text(255, min_size=1)), st.just(DROP))),
        "source": draw(mostly(st.one_of(st.just("/platform/conversations"), text(1000, min_size=1)), st.just(DROP))),
        "subject": draw(mostly(st.one_of(st.just("conv-42"), text(255, min_size=1)), st.just(DROP))),
        "time": draw(mostly(good_times(), st.one_of(BAD_TIMES, st.just(DROP)))),
        "sequence": draw(SEQUENCES),
        "data": draw(mostly(DATA[event_type], st.sampled_from([DROP, None, "x"]))),
        "traceparent": draw(st.sampled_from([DROP, "00-abc-def-01"])),
    }
    document = without_drops({"type": event_type, **fields})
    assert isinstance(document, dict)
    return document


def without_drops(value: object) -> object:
    if isinstance(value, dict):
        return {key: without_drops(item) for key, item in value.items() if item is not DROP}
    return value


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_the_schema_accepts_exactly_what_the_worker_accepts(event_type: str, data: st.DataObject) -> None:
    document = data.draw(events(event_type))
    worker, plain, formats = verdicts(document)
    assert worker == formats, document
    assert worker == plain, document


@pytest.mark.parametrize(("change", "accepted"), [
    ({"sequence": -1}, False),
    ({"sequence": "5"}, False),
    ({"sequence": 5.0}, True),
    ({"sequence": MAX_SEQUENCE}, True),
    ({"sequence": MAX_SEQUENCE + 1}, False),
    ({"time": "2026-11-27T10:00:00"}, False),
    ({"time": "2026-11-27T10:00:00+01:00"}, True),
    ({"type": "log.updated", "data": {}}, False),
    ({"type": "log.updated", "data": {"unknown": 1}}, False),
    ({"type": "log.updated", "data": {"notes": None}}, True),
], ids=repr)
def test_the_cases_producers_reported_are_decided_alike(change: dict[str, Any], accepted: bool) -> None:
    document = {**EXAMPLE_EVENTS["interaction.held"], **change}
    assert (accepted, accepted, accepted) == verdicts(document)


def test_a_day_the_calendar_does_not_have_needs_format_checking() -> None:
    worker, plain, formats = verdicts({**EXAMPLE_EVENTS["interaction.held"], "time": "2026-02-30T10:00:00Z"})
    assert (False, True, False) == (worker, plain, formats)


def test_date_time_formats_are_really_checked() -> None:
    assert "date-time" in Draft202012Validator.FORMAT_CHECKER.checkers  # rfc3339-validator is installed


@pytest.mark.parametrize("event_type", sorted(EVENT_MODELS))
def test_each_schema_carries_its_example_and_both_accept_it(event_type: str) -> None:
    schema = json.loads((SCHEMAS / f"event.{event_type}.json").read_text())
    assert [EXAMPLE_EVENTS[event_type]] == schema["examples"]
    assert (True, True, True) == verdicts(EXAMPLE_EVENTS[event_type])
    assert schema["$id"] == f"https://interaction-log-sync.github.io/schemas/v1/event.{event_type}.json"


# One fault at a time: each sample event with one field set to a value at or beyond its bound (DROP:
# left out). Every case must be decided alike by the worker and both validators.
TEXT_EDGES = ["", "é", "é" * 255, "é" * 256, 5, None, DROP]
REF_EDGES: list[object] = [
    None, "Contact", {}, {"system": "sap", "type": "Case", "id": "1"}, {"system": "salesforce", "type": "Case"},
    {"system": "salesforce", "type": "", "id": "1"}, {"system": "salesforce", "type": "é" * 80, "id": "1"},
    {"system": "salesforce", "type": "é" * 81, "id": "1"}, {"system": "zendesk", "type": "ticket", "id": ""},
    {"system": "custom", "type": "x", "id": "é" * 255}, {"system": "custom", "type": "x", "id": "é" * 256},
    {"system": "custom", "type": "x", "id": 7},
]
ENVELOPE_EDGES: dict[tuple[str, ...], list[object]] = {
    ("specversion",): ["1.0", "1.1", 1.0, None, DROP],
    ("id",): TEXT_EDGES, ("subject",): TEXT_EDGES,
    ("source",): ["", "é" * 1000, "é" * 1001, 5, DROP],
    ("time",): [*BAD_TIME_VALUES, "2026-11-27t10:00:00.5z", "2026-11-27T10:00:00.123456-23:59",
                "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "2024-02-29T00:00:00Z", DROP],
    ("sequence",): [-1, 0, 1, MAX_SEQUENCE, MAX_SEQUENCE + 1, 2**64, 5.0, 5.5, 1e300, "5", True, None, DROP],
    ("data",): [None, "x", [], DROP],
}
DATA_EDGES: dict[str, dict[tuple[str, ...], list[object]]] = {
    "interaction.connected": {
        ("media",): ["voice", "message", "fax", "Voice", None, DROP], ("direction",): ["outbound", "up", DROP],
        ("queue",): TEXT_EDGES, ("agent_id",): TEXT_EDGES, ("name",): REF_EDGES, ("related_to",): REF_EDGES,
        ("customer",): [None, "Ada", {}, {"address": None}, {"address": "é" * 256}, {"name": "é" * 255}],
    },
    "interaction.disconnected": {("reason",): ["", "é" * 1000, "é" * 1001, 5, None, DROP]},
    "log.updated": {
        ("notes",): ["", "n" * 32_000, "n" * 32_001, 5, None, DROP], ("subject",): TEXT_EDGES,
        ("related_to",): REF_EDGES,
    },
    "record.viewed": {("record",): [*REF_EDGES, DROP]},
    "interaction.wrapup": {("code",): TEXT_EDGES, ("note",): ["", "n" * 32_000, "n" * 32_001, 5, None, DROP]},
    "interaction.attributes": {("attributes",): [
        {}, {f"k{i}": "v" for i in range(100)}, {f"k{i}": "v" for i in range(101)}, {"k" * 100: "v" * 1000},
        {"k" * 101: "v"}, {"": "v"}, {"k": "v" * 1001}, {"k": 5}, {"k": None}, ["k"], None, DROP]},
}
WHOLE_DATA_EDGES: dict[str, list[object]] = {
    "log.updated": [{}, {"other": 1}, {"notes": None}, {"name": None}, {"subject": "s", "other": 1}],
    "interaction.held": [{}, {"other": 1}, None],
}


def one_fault_cases() -> list[tuple[str, tuple[str, ...], object]]:
    cases = [(event_type, path, value) for event_type in sorted(EVENT_MODELS)
             for path, values in ENVELOPE_EDGES.items() for value in values]
    cases += [(event_type, ("data", *path), value) for event_type, edges in DATA_EDGES.items()
              for path, values in edges.items() for value in values]
    cases += [(event_type, ("data",), value) for event_type, values in WHOLE_DATA_EDGES.items() for value in values]
    return cases


def with_value(document: dict[str, Any], path: tuple[str, ...], value: object) -> dict[str, Any]:
    changed: dict[str, Any] = json.loads(json.dumps(document))
    parent = changed
    for key in path[:-1]:
        parent = parent.setdefault(key, {})
    if value is DROP:
        parent.pop(path[-1], None)
    else:
        parent[path[-1]] = value
    return changed


@pytest.mark.parametrize(("event_type", "path", "value"), one_fault_cases(),
                         ids=lambda v: repr(v)[:40] if not isinstance(v, str) else v[:40])
def test_one_field_at_its_edge_is_decided_alike(event_type: str, path: tuple[str, ...], value: object) -> None:
    worker, plain, formats = verdicts(with_value(EXAMPLE_EVENTS[event_type], path, value))
    assert (worker, worker) == (plain, formats)
