"""decode_event: structured and binary mode, clear rejections, and for any input an event or a rejection that
says what is wrong (decode_event turns a crash of its own into an `undecodable:` rejection: the properties
below check that none happens)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.decode import decode_event
from schemas.events import ConnectedEvent, Event, HeldEvent, LogUpdatedEvent, Rejection, RejectReason

CONNECTED: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-0001", "source": "/platform/conversations",
    "type": "interaction.connected", "subject": "conv-42", "time": "2026-11-27T10:00:00Z", "sequence": 1,
    "data": {"media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
             "customer": {"address": "+4930123456", "name": "Ada Example"},
             "name": {"system": "salesforce", "type": "Contact", "id": "0035g00000AbCdE"}, "related_to": None},
}


def encode(document: dict[str, Any], **changes: Any) -> bytes:
    return json.dumps({**document, **changes}).encode()


def test_contract_example_decodes_to_a_typed_event() -> None:
    event = decode_event(encode(CONNECTED))
    assert isinstance(event, ConnectedEvent)
    assert (event.id, event.subject, event.sequence, event.data.media, event.data.queue) == (
        "evt-0001", "conv-42", 1, "voice", "Support")


def test_time_with_an_offset_is_normalized_to_utc() -> None:
    event = decode_event(encode(CONNECTED, time="2026-11-27T11:00:00+01:00"))
    assert isinstance(event, ConnectedEvent)
    assert event.time == datetime(2026, 11, 27, 10, 0, tzinfo=UTC) and event.time.utcoffset() is not None
    assert event.time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_sequence_is_a_number_in_structured_mode() -> None:
    """A JSON string is not a sequence (the schema says integer); 17.0 is (JSON Schema counts it an integer)."""
    assert Rejection("evt-0001", "conv-42", RejectReason.INVALID, "sequence: Input should be a valid integer") == (
        decode_event(encode(CONNECTED, sequence="17")))
    event = decode_event(encode(CONNECTED, sequence=17.0))
    assert isinstance(event, ConnectedEvent) and event.sequence == 17


def test_binary_mode_reads_the_sequence_header_as_a_number() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"evt-9"), ("ce_source", b"/p"), ("ce_subject", b"conv-9"),
               ("ce_time", b"2026-11-27T10:00:00Z"), ("ce_type", b"interaction.held"), ("ce_sequence", b"17")]
    event = decode_event(b"{}", headers)
    assert isinstance(event, HeldEvent) and event.sequence == 17


def test_extra_fields_are_ignored() -> None:
    document = {**CONNECTED, "traceparent": "00-abc", "data": {**CONNECTED["data"], "future_field": 1}}
    assert isinstance(decode_event(encode(document)), ConnectedEvent)


def test_events_without_data_fields_accept_a_missing_data() -> None:
    document = {key: value for key, value in CONNECTED.items() if key != "data"}
    assert isinstance(decode_event(encode(document, type="interaction.held")), HeldEvent)


@pytest.mark.parametrize("event_type", ["interaction.held", "interaction.resumed", "log.opened",
                                        "interaction.disconnected"])
def test_events_without_required_data_fields_take_a_null_data_as_no_fields(event_type: str) -> None:
    """`"data": null` is what a CloudEvents SDK writes for an event without data (the Python SDK's `to_dict`);
    for a type whose data fields are all optional it means none. A type with a required field still needs them."""
    event = decode_event(encode(CONNECTED, type=event_type, data=None))
    assert not isinstance(event, Rejection) and event.type == event_type
    assert event.data.model_dump() == ({"reason": None} if event_type == "interaction.disconnected" else {})
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"evt-9"), ("ce_source", b"/p"), ("ce_subject", b"conv-9"),
               ("ce_time", b"2026-11-27T10:00:00Z"), ("ce_type", event_type.encode())]
    assert not isinstance(decode_event(b"null", headers), Rejection)
    assert Rejection("evt-0001", "conv-42", RejectReason.INVALID, "data: Input should be an object") == decode_event(
        encode(CONNECTED, type="interaction.wrapup", data=None))


def test_log_updated_tells_an_absent_field_from_an_explicit_null() -> None:
    event = decode_event(encode(CONNECTED, type="log.updated", data={"notes": None, "subject": "S"}))
    assert isinstance(event, LogUpdatedEvent)
    assert event.data.model_fields_set == {"notes", "subject"}


def test_binary_mode_reads_the_envelope_from_ce_headers() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"evt-9"), ("ce_source", b"/p"),
               ("ce_type", b"interaction.connected"), ("ce_subject", b"conv-9"),
               ("ce_time", b"2026-11-27T10:00:00Z"), ("ce_sequence", b"4"), ("content-type", b"application/json")]
    event = decode_event(json.dumps(CONNECTED["data"]).encode(), headers)
    assert isinstance(event, ConnectedEvent)
    assert (event.id, event.subject, event.sequence, event.data.agent_id) == ("evt-9", "conv-9", 4, "agent-7")


def test_binary_mode_with_bad_data_names_the_problem() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"evt-9"), ("ce_type", b"log.opened"), ("ce_subject", b"c")]
    assert decode_event(b"{nope", headers) == Rejection(
        "evt-9", "c", RejectReason.INVALID, "data: not JSON: Expecting property name enclosed in double quotes "
                                            "at char 1")


@pytest.mark.parametrize(("value", "expected"), [
    (None, Rejection(None, None, RejectReason.INVALID, "empty message: no value")),
    (b"", Rejection(None, None, RejectReason.INVALID, "not JSON: Expecting value at char 0")),
    (b'{"id": "a" "b"}', Rejection(None, None, RejectReason.INVALID, "not JSON: Expecting ',' delimiter at char 11")),
    (b"[1, 2]", Rejection(None, None, RejectReason.INVALID, "not a JSON object: got list")),
    (encode(CONNECTED, type="interaction.teleported"), Rejection(
        "evt-0001", "conv-42", RejectReason.UNKNOWN_TYPE,
        "type: unknown event type 'interaction.teleported' (known: interaction.attributes, "
        "interaction.connected, interaction.disconnected, interaction.held, interaction.resumed, "
        "interaction.wrapup, log.opened, log.updated, record.viewed)")),
    (encode({k: v for k, v in CONNECTED.items() if k != "type"}),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID, "type: Field required")),
    (encode(CONNECTED, data={**CONNECTED["data"], "media": "fax"}), Rejection(
        "evt-0001", "conv-42", RejectReason.INVALID,
        "data.media: Input should be 'voice', 'callback', 'chat', 'email' or 'message'")),
    (encode(CONNECTED, time="2026-11-27T10:00:00"),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID,
               "time: Value error, must be an RFC 3339 date-time with a time zone, e.g. 2026-11-27T10:00:00Z")),
    (encode(CONNECTED, time=1764237600),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID, "time: Input should be a valid datetime")),
    (encode(CONNECTED, specversion="0.3"),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID, "specversion: Input should be '1.0'")),
    (encode(CONNECTED, sequence=-1), Rejection(
        "evt-0001", "conv-42", RejectReason.INVALID, "sequence: Input should be greater than or equal to 0")),
    (encode(CONNECTED, type="interaction.attributes", data={"attributes": {"n": 5}}),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID, "data.attributes.n: Input should be a valid string")),
    (encode(CONNECTED, type="log.updated", data={}), Rejection(
        "evt-0001", "conv-42", RejectReason.INVALID,
        "data: Value error, log.updated needs at least one of notes, subject, name, related_to")),
    (encode(CONNECTED, type="record.viewed", data={"record": {"system": "sap", "type": "x", "id": "1"}}),
     Rejection("evt-0001", "conv-42", RejectReason.INVALID,
               "data.record.system: Input should be 'salesforce', 'zendesk' or 'custom'")),
], ids=["none", "empty", "not-json", "not-object", "unknown-type", "missing-type", "bad-enum", "naive-time",
        "numeric-time", "specversion", "negative-sequence", "attribute-not-string", "empty-update", "bad-ref"])
def test_rejections_name_the_field_and_the_problem(value: bytes | None, expected: Rejection) -> None:
    assert decode_event(value) == expected


@pytest.mark.parametrize("tag", [None, 5, 1.5, True, [], {}], ids=repr)
def test_a_type_that_is_not_a_string_is_invalid_naming_the_type_field(tag: object) -> None:
    assert Rejection("evt-0001", "conv-42", RejectReason.INVALID,
                     "type: Input should be a valid string, one of the event types") == decode_event(
        encode(CONNECTED, type=tag))


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children) | st.dictionaries(st.text(), children),
    max_leaves=20,
)


def _explained(result: Event | Rejection) -> bool:
    """An event, or a rejection with a message of its own: not the catch-all that hides a decoder crash."""
    if not isinstance(result, Rejection):
        return True
    return bool(result.message) and not result.message.startswith("undecodable:")


@settings(max_examples=300, deadline=None)
@given(value=st.binary(max_size=300))
def test_arbitrary_bytes_are_rejected_with_a_reason(value: bytes) -> None:
    result = decode_event(value)
    assert isinstance(result, Rejection) and _explained(result)


@settings(max_examples=300, deadline=None)
@given(document=_json)
def test_arbitrary_json_is_an_event_or_an_explained_rejection(document: object) -> None:
    result = decode_event(json.dumps(document).encode())
    assert _explained(result)
    assert isinstance(result, Rejection) or result.specversion == "1.0"


@settings(max_examples=300, deadline=None)
@given(fields=st.dictionaries(st.sampled_from(list(CONNECTED)), _json), data=_json)
def test_envelope_like_json_is_an_event_or_an_explained_rejection(fields: dict[str, Any], data: object) -> None:
    document = {**CONNECTED, **fields, "data": data}
    assert _explained(decode_event(json.dumps(document).encode()))


@settings(max_examples=200, deadline=None)
@given(value=st.none() | st.binary(max_size=100),
       headers=st.lists(st.tuples(st.sampled_from(["ce_specversion", "ce_type", "ce_id", "ce_time", "ce_sequence",
                                                  "ce_subject", "other"]), st.none() | st.binary(max_size=30))))
def test_arbitrary_binary_mode_headers_give_an_event_or_an_explained_rejection(
    value: bytes | None, headers: list[tuple[str, bytes | None]]
) -> None:
    assert _explained(decode_event(value, headers))


def _ref(system: str, record_type: str) -> dict[str, str]:
    return {"system": system, "type": record_type, "id": "0015g00000Xy"}


@pytest.mark.parametrize(("event_type", "data_of"), [
    ("interaction.connected", lambda field, ref: {**CONNECTED["data"], "name": None, field: ref}),
    ("log.updated", lambda field, ref: {field: ref}),
])
@pytest.mark.parametrize(("field", "ref"), [
    ("name", _ref("salesforce", "Case")),
    ("name", _ref("salesforce", "Account")),
    ("name", _ref("salesforce", "User")),  # a Salesforce User is not a who a Task takes
    ("name", _ref("zendesk", "ticket")),
    ("related_to", _ref("salesforce", "Contact")),
    ("related_to", _ref("custom", "lead")),
    ("related_to", _ref("zendesk", "user")),
])
def test_name_takes_contact_and_lead_and_related_to_everything_else(
    event_type: str, data_of: Any, field: str, ref: dict[str, str],
) -> None:
    """CONTRACT.md: "Name takes Contact and Lead (Zendesk: user); Related to takes everything else"; a ref in the
    other field does not validate: `invalid`, naming the field and the record's type."""
    rejection = decode_event(encode(CONNECTED, type=event_type, data=data_of(field, ref)))
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.event_id, rejection.subject) == (RejectReason.INVALID, "evt-0001", "conv-42")
    assert rejection.message.startswith(f"data.{field}: ") and repr(ref["type"]) in rejection.message


@pytest.mark.parametrize(("field", "ref"), [
    ("name", _ref("salesforce", "Contact")), ("name", _ref("salesforce", "LEAD")), ("name", _ref("zendesk", "user")),
    ("name", _ref("custom", "contact")), ("related_to", _ref("salesforce", "Case")),
    ("related_to", _ref("salesforce", "User")), ("related_to", _ref("zendesk", "ticket")),
    ("related_to", _ref("custom", "Order")),
])
def test_a_ref_in_its_own_field_is_accepted(field: str, ref: dict[str, str]) -> None:
    assert isinstance(decode_event(encode(CONNECTED, data={**CONNECTED["data"], "name": None, field: ref})),
                      ConnectedEvent)
    assert isinstance(decode_event(encode(CONNECTED, type="log.updated", data={field: ref})), LogUpdatedEvent)
