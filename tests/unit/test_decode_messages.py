"""The rejection path parses with orjson where it can: it reads what `json` reads and rejects as before."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import decode
from schemas.decode import decode_event, parse_for_message

CONNECTED: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-1", "source": "/p", "type": "interaction.connected", "subject": "conv-1",
    "time": "2026-11-27T10:00:00Z", "sequence": 1, "data": {"media": "voice", "direction": "inbound"},
}

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=2**63, max_value=2**80)
    | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def typed(value: object) -> object:
    """The value with every leaf's type and repr, so 1 and 1.0 (or 0.0 and -0.0) differ."""
    if isinstance(value, dict):
        return {key: typed(item) for key, item in value.items()}
    if isinstance(value, list):
        return [typed(item) for item in value]
    return (type(value).__name__, repr(value))


def read_by_a_rejection(document: object) -> object:
    """What a rejection reads of a parsed message: its kind and, for an object, id, subject and type."""
    if not isinstance(document, dict):
        return type(document).__name__
    return [typed(document.get(key)) for key in ("id", "subject", "type")]


def json_outcome(raw: bytes) -> object:
    try:
        return read_by_a_rejection(json.loads(raw))
    except Exception as error:  # compared by kind and text below
        return (type(error).__name__, str(error))


def fast_outcome(raw: bytes) -> object:
    try:
        return read_by_a_rejection(parse_for_message(raw))
    except Exception as error:
        return (type(error).__name__, str(error))


@settings(max_examples=400, deadline=None)
@given(document=_json)
def test_any_json_text_parses_as_json_loads_parses_it(document: object) -> None:
    raw = json.dumps(document, allow_nan=True).encode()
    assert fast_outcome(raw) == json_outcome(raw)


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(["id", "subject", "type", "data"]), _json))
def test_envelope_fields_parse_as_json_loads_parses_them(fields: dict[str, Any]) -> None:
    raw = json.dumps(fields, allow_nan=True).encode()
    assert fast_outcome(raw) == json_outcome(raw)


@settings(max_examples=300, deadline=None)
@given(raw=st.binary(max_size=200))
def test_any_bytes_parse_or_fail_as_with_json_loads(raw: bytes) -> None:
    assert fast_outcome(raw) == json_outcome(raw)


@pytest.mark.parametrize("raw", [
    b'{"id": NaN, "type": "x"}',
    b'{"id": "\\ud800", "type": "x"}',
    b'{"id": 123456789012345678901234567890}',
    b'{"type": 123456789012345678901234567890, "id": "a"}',
    b"123456789012345678901234567890",
    b'{"a": 1, "a": 2}',
    b'\xef\xbb\xbf{"a": 1}',
    b'{"a": "\x01"}',
    b'{"a": 1e400}',
    b'{"a": -0.0, "b": 1.0}',
    b'{"a": ' + b"[" * 995 + b"]" * 995 + b"}",
    b"[" * 2000 + b"]" * 2000,
    b'{"x": "caf\xc3\xa9 \\u00e9 \\ud83d\\ude00"}',
    b'{"x": "\xff"}',
    b" {} ",
], ids=["nan", "lone-surrogate", "big-int-in-object", "big-int-type", "big-int", "duplicate-key", "bom", "control-char",
        "huge-float", "negative-zero", "deep-nesting", "deeper-nesting", "unicode", "invalid-utf8", "spaces"])
def test_edge_cases_parse_as_json_loads_parses_them(raw: bytes) -> None:
    assert fast_outcome(raw) == json_outcome(raw)


def _rejections(raw: bytes) -> tuple[object, object]:
    with patch.object(decode, "parse_for_message", json.loads):
        reference = decode_event(raw)
    return decode_event(raw), reference


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from([*CONNECTED, "extra"]), _json), data=_json)
def test_rejections_are_the_ones_json_loads_gives(fields: dict[str, Any], data: object) -> None:
    raw = json.dumps({**CONNECTED, **fields, "data": data}).encode()
    fast, reference = _rejections(raw)
    assert fast == reference


@pytest.mark.parametrize("raw", [
    json.dumps({**CONNECTED, "type": "interaction.survey"}).encode(),
    json.dumps({**CONNECTED, "data": {"media": "fax", "direction": "inbound"}}).encode(),
    b'{"specversion": "1.0", "id": "evt-broken", "type": "log.updated" "subject": "conv-1"',
    b'{"specversion": "1.0", "id": "\\ud800", "type": "log.opened"}',
    b'{"specversion": "1.0", "id": NaN, "type": "log.opened"}',
    b"[" * 995 + b"]" * 995,
    b"12345678901234567890123",
], ids=["unknown-type", "bad-enum", "not-json", "lone-surrogate", "nan", "deep-nesting", "big-int"])
def test_example_rejections_are_the_ones_json_loads_gives(raw: bytes) -> None:
    fast, reference = _rejections(raw)
    assert fast == reference
