"""CONTRACT.md "Bounds": each one checked at decode, both sides of each edge, with the reason and field named."""

from __future__ import annotations

import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator, FormatChecker

from schemas.decode import decode_event
from schemas.events import MAX_EVENT_BYTES, Rejection, RejectReason
from schemas.export import MAX_BYTES_KEYWORD, schema_documents

ENVELOPE: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-1", "source": "/p", "subject": "conv-1", "time": "2026-11-27T10:00:00Z",
}
CONNECTED_DATA: dict[str, Any] = {"media": "voice", "direction": "inbound"}
CONTRACT_SNAPSHOT: dict[str, Any] = {
    "interaction_id": "conv-42", "version": 7, "trigger": "state_changed", "state": "disconnected", "media": "voice",
    "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
    "customer": {"address": "+4930123456", "name": "Ada Example"}, "subject": "Inbound call from Ada Example",
    "notes": "Customer asked for a refund.",
    "name": {"system": "salesforce", "type": "Contact", "id": "0035g00000AbCdE"},
    "related_to": {"system": "salesforce", "type": "Case", "id": "5005g00000XyZ"}, "name_candidates": [],
    "related_candidates": [], "connected_at": "2026-11-27T10:00:00Z", "disconnected_at": "2026-11-27T10:05:00Z",
    "edit_deadline": "2026-11-27T10:07:00Z", "finalized": False, "duration_seconds": 300, "hold_seconds": 40,
    "hold_count": 1, "talk_seconds": 260, "wrapup_code": "Resolved", "wrapup_note": "Customer asked for a refund.",
    "attributes": {"tier": "gold"}}
"""The snapshot of CONTRACT.md "Output"."""


def event(event_type: str, data: dict[str, Any], **envelope: Any) -> bytes:
    return json.dumps({**ENVELOPE, "type": event_type, "data": data, **envelope}).encode()


def connected(**data: Any) -> bytes:
    return event("interaction.connected", {**CONNECTED_DATA, **data})


def too_large(field: str, message: str, event_id: str = "evt-1", subject: str = "conv-1") -> Rejection:
    return Rejection(event_id, subject, RejectReason.TOO_LARGE, f"{field}: {message}")


def chars(bound: int) -> str:
    return f"String should have at most {bound} characters"


# (name, event at the bound, the same event one over it, the rejection of the one over it)
STRING_BOUNDS: list[tuple[str, bytes, bytes, Rejection]] = [
    ("id", event("log.opened", {}, id="i" * 255), event("log.opened", {}, id="i" * 256),
     too_large("id", chars(255), event_id="i" * 255)),
    ("subject", event("log.opened", {}, subject="s" * 255), event("log.opened", {}, subject="s" * 256),
     too_large("subject", chars(255), subject="s" * 255)),
    ("ref-id", event("record.viewed", {"record": {"system": "custom", "type": "Case", "id": "r" * 255}}),
     event("record.viewed", {"record": {"system": "custom", "type": "Case", "id": "r" * 256}}),
     too_large("data.record.id", chars(255))),
    ("notes", event("log.updated", {"notes": "n" * 32_000}), event("log.updated", {"notes": "n" * 32_001}),
     too_large("data.notes", chars(32_000))),
    ("log-subject", event("log.updated", {"subject": "s" * 255}), event("log.updated", {"subject": "s" * 256}),
     too_large("data.subject", chars(255))),
    ("customer-name", connected(customer={"name": "n" * 255}), connected(customer={"name": "n" * 256}),
     too_large("data.customer.name", chars(255))),
    ("customer-address", connected(customer={"address": "a" * 255}), connected(customer={"address": "a" * 256}),
     too_large("data.customer.address", chars(255))),
    ("queue", connected(queue="q" * 255), connected(queue="q" * 256), too_large("data.queue", chars(255))),
    ("agent-id", connected(agent_id="a" * 255), connected(agent_id="a" * 256),
     too_large("data.agent_id", chars(255))),
    ("attribute-count", event("interaction.attributes", {"attributes": {f"k{i}": "v" for i in range(100)}}),
     event("interaction.attributes", {"attributes": {f"k{i}": "v" for i in range(101)}}),
     too_large("data.attributes", "Dictionary should have at most 100 items after validation, not more")),
    ("attribute-key", event("interaction.attributes", {"attributes": {"k" * 100: "v"}}),
     event("interaction.attributes", {"attributes": {"k" * 101: "v"}}),
     too_large("data.attributes." + "k" * 64 + "….[key]", chars(100))),
    ("attribute-value", event("interaction.attributes", {"attributes": {"tier": "v" * 1000}}),
     event("interaction.attributes", {"attributes": {"tier": "v" * 1001}}),
     too_large("data.attributes.tier", chars(1000))),
]


@pytest.mark.parametrize(("at_bound", "over", "expected"), [case[1:] for case in STRING_BOUNDS],
                         ids=[case[0] for case in STRING_BOUNDS])
def test_a_field_at_its_bound_decodes_and_one_over_is_too_large_naming_the_field(
    at_bound: bytes, over: bytes, expected: Rejection,
) -> None:
    assert not isinstance(decode_event(at_bound), Rejection)
    assert decode_event(over) == expected


@pytest.mark.parametrize(("sequence", "accepted"), [
    (0, True), (2**63 - 1, True), (-1, False), (2**63, False), (2**64, False),
])
def test_sequence_is_a_signed_64_bit_integer(sequence: int, accepted: bool) -> None:
    """CONTRACT.md's bounds hold 0 ≤ sequence < 2^63: over it is `too_large`, as any field over its bound; under 0
    is `invalid`."""
    decoded = decode_event(event("log.opened", {}, sequence=sequence))
    if accepted:
        assert not isinstance(decoded, Rejection) and decoded.sequence == int(sequence)
    elif int(sequence) < 0:
        assert decoded == Rejection("evt-1", "conv-1", RejectReason.INVALID,
                                    "sequence: Input should be greater than or equal to 0")
    else:
        assert decoded == Rejection("evt-1", "conv-1", RejectReason.TOO_LARGE,
                                    "sequence: Input should be less than or equal to 9223372036854775807")


def test_a_sequence_over_its_bound_with_another_problem_is_invalid() -> None:
    """As with a text over its bound: `too_large` only when that is all that is wrong."""
    decoded = decode_event(event("log.opened", {}, sequence=2**63, time="yesterday"))
    assert isinstance(decoded, Rejection) and decoded.reason == RejectReason.INVALID


def padded_to(size_bytes: int) -> bytes:
    """A valid event of exactly `size_bytes` bytes (padding in an extra field, which decode ignores)."""
    bare = event("log.opened", {}, padding="")
    return event("log.opened", {}, padding="p" * (size_bytes - len(bare)))


def test_an_event_of_exactly_the_byte_bound_decodes_one_byte_more_is_too_large() -> None:
    assert len(padded_to(MAX_EVENT_BYTES)) == MAX_EVENT_BYTES
    assert not isinstance(decode_event(padded_to(MAX_EVENT_BYTES)), Rejection)
    assert decode_event(padded_to(MAX_EVENT_BYTES + 1)) == Rejection(
        "evt-1", "conv-1", RejectReason.TOO_LARGE,
        f"event: {MAX_EVENT_BYTES + 1} bytes, over the bound of 262144 bytes")


def test_a_structured_event_over_the_byte_bound_is_reported_with_its_id_and_subject() -> None:
    """CONTRACT.md: a rejected event is reported with its id, subject and reason; an event too large to validate
    still says which it is when it is JSON (its fields are not checked, only read). Not JSON: no id, no subject."""
    over = event("log.updated", {"notes": "n" * MAX_EVENT_BYTES}, id="evt-7", subject="conv-7")
    assert decode_event(over) == Rejection(
        "evt-7", "conv-7", RejectReason.TOO_LARGE, f"event: {len(over)} bytes, over the bound of 262144 bytes")
    odd = event("log.updated", {"notes": "n" * MAX_EVENT_BYTES}, id=7, subject="s" * 300)
    assert decode_event(odd) == Rejection(
        None, "s" * 255, RejectReason.TOO_LARGE, f"event: {len(odd)} bytes, over the bound of 262144 bytes")
    array = b"[" + b"1," * MAX_EVENT_BYTES + b"1]"
    assert decode_event(array) == Rejection(
        None, None, RejectReason.TOO_LARGE, f"event: {len(array)} bytes, over the bound of 262144 bytes")


def test_the_byte_bound_is_checked_before_parsing() -> None:
    ten_mb_not_json = b"{" * (10 * 1024 * 1024)
    assert decode_event(ten_mb_not_json) == Rejection(
        None, None, RejectReason.TOO_LARGE, "event: 10485760 bytes, over the bound of 262144 bytes")


BINARY_HEADERS = [("ce_specversion", b"1.0"), ("ce_id", b"evt-9"), ("ce_source", b"/p"),
                  ("ce_type", b"log.updated"), ("ce_subject", b"conv-9"), ("ce_time", b"2026-11-27T10:00:00Z")]


def test_binary_mode_counts_the_value_and_the_ce_headers_and_names_the_event() -> None:
    header_bytes = sum(len(name) + len(value) for name, value in BINARY_HEADERS)
    data = b'{"subject": "s", "x": "%s"}'
    fits = data % (b"x" * (MAX_EVENT_BYTES - header_bytes - len(data) + 2))
    assert not isinstance(decode_event(fits, [*BINARY_HEADERS, ("other", b"o" * 1000)]), Rejection)
    over = data % (b"x" * (MAX_EVENT_BYTES - header_bytes - len(data) + 3))
    assert decode_event(over, BINARY_HEADERS) == Rejection(
        "evt-9", "conv-9", RejectReason.TOO_LARGE,
        f"event: {MAX_EVENT_BYTES + 1} bytes, over the bound of 262144 bytes")


def test_a_size_bound_with_another_problem_is_invalid() -> None:
    decoded = decode_event(connected(queue="q" * 256, media="fax"))
    assert isinstance(decoded, Rejection) and decoded.reason is RejectReason.INVALID


def test_a_subject_with_a_lone_surrogate_is_rejected_with_a_subject_that_encodes() -> None:
    raw = b'{"specversion": "1.0", "id": "e", "subject": "c\\ud800", "type": "log.opened"}'
    decoded = decode_event(raw)
    assert isinstance(decoded, Rejection) and decoded.subject == "c?"
    assert decoded.reason is RejectReason.INVALID


def test_the_schemas_carry_the_bounds() -> None:
    documents = schema_documents()
    envelope = documents["envelope.json"]
    assert envelope[MAX_BYTES_KEYWORD] == MAX_EVENT_BYTES
    assert envelope["properties"]["sequence"]["anyOf"][0] == {
        "type": "integer", "minimum": 0, "maximum": 2**63 - 1}
    assert (envelope["properties"]["id"]["maxLength"], envelope["properties"]["subject"]["maxLength"]) == (255, 255)
    attributes = documents["event.interaction.attributes.json"]["$defs"]["AttributesData"]["properties"]["attributes"]
    assert (attributes["maxProperties"], attributes["propertyNames"]["maxLength"],
            attributes["additionalProperties"]["maxLength"]) == (100, 100, 1000)
    connected_data = documents["event.interaction.connected.json"]["$defs"]
    customer = connected_data["Customer"]["properties"]
    assert [customer[field]["anyOf"][0]["maxLength"] for field in ("name", "address")] == [255, 255]
    data = connected_data["ConnectedData"]["properties"]
    assert [data[field]["anyOf"][0]["maxLength"] for field in ("queue", "agent_id")] == [255, 255]
    updated = documents["event.log.updated.json"]["$defs"]["LogUpdatedData"]["properties"]
    assert [updated[field]["anyOf"][0]["maxLength"] for field in ("notes", "subject")] == [32_000, 255]


SNAPSHOT_BOUNDS = [("interaction_id", 255), ("subject", 255), ("queue", 255), ("agent_id", 255),
                   ("notes", 32_000), ("wrapup_code", 255), ("wrapup_note", 32_000)]


@pytest.mark.parametrize(("field", "bound"), SNAPSHOT_BOUNDS, ids=[field for field, _ in SNAPSHOT_BOUNDS])
def test_the_snapshot_schema_carries_the_bounds_of_the_log_fields(field: str, bound: int) -> None:
    schema = Draft202012Validator(schema_documents()["snapshot.json"], format_checker=FormatChecker())
    assert [] == list(schema.iter_errors({**CONTRACT_SNAPSHOT, field: "x" * bound}))
    over = {**CONTRACT_SNAPSHOT, field: "x" * (bound + 1)}
    assert [(field, "maxLength")] == [(".".join(map(str, error.absolute_path)), error.validator)
                                      for error in schema.iter_errors(over)]


def test_the_snapshot_schema_carries_the_attribute_bounds() -> None:
    schema = Draft202012Validator(schema_documents()["snapshot.json"], format_checker=FormatChecker())
    fits = {"attributes": {f"{i:0100d}": "v" * 1000 for i in range(100)}}
    assert [] == list(schema.iter_errors({**CONTRACT_SNAPSHOT, **fits}))
    for over in ({f"k{i}": "v" for i in range(101)}, {"k" * 101: "v"}, {"k": "v" * 1001}):
        assert len(list(schema.iter_errors({**CONTRACT_SNAPSHOT, "attributes": over}))) == 1, over
