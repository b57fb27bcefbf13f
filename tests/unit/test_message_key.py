"""`subject` is the interaction id and the Kafka message key (CONTRACT.md): an event keyed by another is refused,
one without a key is folded.

Its partition is chosen by the key, so an event keyed differently lands beside other interactions' events:
its interaction would be folded by two consumers, its deadline kept and closed by another partition's clock.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from confluent_kafka import Message

from schemas.events import Rejection, RejectReason
from worker.kafka.clients import decode_message

EVENT: dict[str, Any] = {
    "specversion": "1.0", "id": "evt-1", "source": "/p", "type": "interaction.connected", "subject": "conv-1",
    "time": "2026-11-27T10:00:00Z", "data": {"media": "voice", "direction": "inbound"}}
BINARY_HEADERS: list[tuple[str, str | bytes | None]] = [
    (f"ce_{name}", str(EVENT[name]).encode()) for name in ("specversion", "id", "source", "type", "subject", "time")]


def structured(key: bytes | None) -> Message:
    return Message(topic="events", partition=0, offset=5, key=key, value=json.dumps(EVENT).encode())


def binary(key: bytes | None) -> Message:
    return Message(topic="events", partition=0, offset=5, key=key, value=json.dumps(EVENT["data"]).encode(),
                   headers=BINARY_HEADERS)


@pytest.mark.parametrize("message", [structured(b"conv-1"), binary(b"conv-1")], ids=["structured", "binary"])
def test_an_event_keyed_by_its_subject_is_decoded(message: Message) -> None:
    item = decode_message(message).item
    assert not isinstance(item, Rejection)
    assert (item.type, item.id, item.subject) == ("interaction.connected", "evt-1", "conv-1")


@pytest.mark.parametrize("build", [structured, binary], ids=["structured", "binary"])
def test_an_event_keyed_by_another_interaction_is_invalid_naming_both(build: Any) -> None:
    assert Rejection("evt-1", "conv-1", RejectReason.INVALID,
                     "subject: 'conv-1' is not the Kafka message key 'conv-2'; the key must be the interaction id"
                     ) == decode_message(build(b"conv-2")).item


@pytest.mark.parametrize("build", [structured, binary], ids=["structured", "binary"])
def test_an_event_without_a_key_is_decoded(build: Any) -> None:
    item = decode_message(build(None)).item
    assert not isinstance(item, Rejection)
    assert (item.id, item.subject) == ("evt-1", "conv-1")


def test_a_long_key_is_quoted_cut() -> None:
    item = decode_message(structured(b"k" * 1000)).item
    assert isinstance(item, Rejection)
    assert item.message == f"subject: 'conv-1' is not the Kafka message key '{'k' * 64}…'; the key must be the " \
                           "interaction id"
