"""Webhook pure parts: event names, signature, body and the receiver id echo."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3

from adapters.http_post import Answer
from adapters.webhook import event_name, receiver_id_from, request_body, sign, verify_signature
from schemas.snapshot import LogSnapshot
from tests.support import snapshot_from

SNAPSHOT: dict[str, Any] = {"interaction_id": "conv-42", "version": 3, "trigger": "created", "state": "connected"}


def snapshot(**overrides: Any) -> LogSnapshot:
    return snapshot_from(SNAPSHOT, **overrides)


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"trigger": "created", "state": "connected"}, "interactionChanged"),
        ({"trigger": "state_changed", "state": "held"}, "interactionChanged"),
        ({"trigger": "updated", "state": "connected"}, "interactionChanged"),
        ({"trigger": "state_changed", "state": "disconnected"}, "interactionDisconnected"),
        ({"trigger": "created", "state": "disconnected"}, "interactionDisconnected"),  # connect..disconnect folded
        ({"trigger": "updated", "state": "disconnected"}, "interactionChangedAfterDisconnect"),
        ({"trigger": "opened", "state": "disconnected"}, "interactionChangedAfterDisconnect"),
        ({"trigger": "finalized", "state": "disconnected", "finalized": True}, "interactionRemoved"),
    ],
)
def test_event_name_follows_trigger_and_state(overrides: dict[str, Any], expected: str) -> None:
    assert event_name(snapshot(**overrides)) == expected


def test_signature_is_hmac_sha256_of_the_exact_body() -> None:
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
    expected = "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert sign(b"Jefe", b"what do ya want for nothing?") == expected


@pytest.mark.parametrize(
    ("secret", "body", "header", "valid"),
    [
        (b"s3cret", b'{"a":1}', sign(b"s3cret", b'{"a":1}'), True),
        (b"s3cret", b'{"a":2}', sign(b"s3cret", b'{"a":1}'), False),
        (b"other", b'{"a":1}', sign(b"s3cret", b'{"a":1}'), False),
    ],
)
def test_a_receiver_can_verify_the_signature(secret: bytes, body: bytes, header: str, valid: bool) -> None:
    assert verify_signature(secret, body, header) is valid


def test_body_carries_event_receiver_id_and_the_whole_snapshot() -> None:
    log = snapshot(notes="Grüße \u2028 \"quoted\"", connected_at="2026-11-27T08:00:01.5+01:00")
    raw = request_body(log, "rcv-1")
    body = json.loads(raw)
    assert {"event": "interactionChanged", "id": "rcv-1", "log": log.model_dump(mode="json")} == body
    assert "Grüße".encode() in raw  # UTF-8, not escaped
    assert {"event": "interactionChanged", "id": None, "log": log.model_dump(mode="json")} == json.loads(
        request_body(log, None))


def _response(status: int, content: bytes) -> Answer:
    return Answer(status, urllib3.HTTPHeaderDict(), content)


@pytest.mark.parametrize(
    ("content", "previous", "expected"),
    [
        (b'{"id": "rcv-9"}', None, "rcv-9"),
        (b'{"id": 17}', None, "17"),
        (b'{"ok": true}', "rcv-1", "rcv-1"),
        (b'{"id": ""}', "rcv-1", "rcv-1"),
        (b"", "rcv-1", "rcv-1"),
        (b"[1]", None, None),
    ],
)
def test_receiver_id_is_taken_from_the_answer_or_kept(
    content: bytes, previous: str | None, expected: str | None
) -> None:
    assert receiver_id_from(_response(200, content), previous) == expected
