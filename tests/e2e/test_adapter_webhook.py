"""Webhook target against the receiver emulator: signature, receiver id echo, retries."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import pytest
from pydantic import SecretStr

from adapters.base import Retry, Synced, SyncItem, TargetState, next_target_state
from adapters.webhook import WebhookTarget
from adapters.webhook_signature import signing_key, verify, webhook_id
from schemas.snapshot import LogSnapshot
from tests.e2e.conftest import Emulators
from tests.emulators.webhook import receiver_id as emulated_receiver_id
from tests.support import emulator_settings
from worker.runtime.settings import Settings
from worker.runtime.targets import build_webhook


def settings_for(emulators: Emulators, **overrides: Any) -> Settings:
    return emulator_settings(emulators.env, **{"webhook_timeout_seconds": 2.0, **overrides})


@pytest.fixture
def target(fresh_emulators: Emulators) -> Iterator[WebhookTarget]:
    built = build_webhook(settings_for(fresh_emulators))
    try:
        yield built
    finally:
        built.close()


def log(version: int, trigger: str, state: str, **overrides: Any) -> LogSnapshot:
    values: dict[str, Any] = {
        "interaction_id": "conv-42",
        "version": version,
        "trigger": trigger,
        "state": state,
        "media": "voice",
        "notes": "Customer asked for a refund.",
    }
    values.update(overrides)
    return LogSnapshot.model_validate(values)


def deliveries(emulators: Emulators) -> list[dict[str, Any]]:
    return list(emulators.webhook.state()["deliveries"])


def test_deliveries_are_signed_named_and_echo_the_receiver_id(
    target: WebhookTarget, fresh_emulators: Emulators
) -> None:
    lifecycle = [
        log(1, "created", "connected"),
        log(2, "state_changed", "disconnected"),
        log(3, "updated", "disconnected"),
        log(4, "finalized", "disconnected", finalized=True),
    ]
    state = TargetState()
    outcomes = []
    for snapshot in lifecycle:
        [outcome] = target.sync([SyncItem(snapshot, state)])
        outcomes.append(outcome)
        state = next_target_state(state, outcome)

    received = deliveries(fresh_emulators)
    receiver_id = emulated_receiver_id("conv-42")
    assert [Synced(receiver_id, n) for n in (1, 2, 3, 4)] == outcomes
    assert [delivery["signature_valid"] for delivery in received] == [True] * 4
    assert [
        ("interactionChanged", None),
        ("interactionDisconnected", receiver_id),
        ("interactionChangedAfterDisconnect", receiver_id),
        ("interactionRemoved", receiver_id),
    ] == [(delivery["body"]["event"], delivery["body"]["id"]) for delivery in received]
    assert [snapshot.model_dump(mode="json") for snapshot in lifecycle] == [
        delivery["body"]["log"] for delivery in received
    ]
    assert received[-1]["headers"]["idempotency-key"] == "conv-42:v4"


def test_a_wrong_secret_refused_by_the_receiver_pauses_the_target(fresh_emulators: Emulators) -> None:
    target = build_webhook(settings_for(fresh_emulators, webhook_secret=SecretStr("not-the-secret")))
    try:
        [outcome] = target.sync([SyncItem(log(1, "created", "connected"))])
    finally:
        target.close()
    assert isinstance(outcome, Retry)
    assert outcome.target_unavailable == "HTTP_401"
    assert [delivery["signature_valid"] for delivery in deliveries(fresh_emulators)] == [False]


def test_429_is_a_retry_with_retry_after_and_the_rest_of_the_batch_waits(
    target: WebhookTarget, fresh_emulators: Emulators
) -> None:
    """Posts go out in waves of 8 (one per interaction); a 429 in a wave holds back the later waves."""
    fresh_emulators.webhook.inject("429", retry_after=12)
    batch = [SyncItem(log(1, "created", "connected", interaction_id=f"conv-{n}")) for n in range(10)]
    outcomes = target.sync(batch)
    first_wave, held_back = outcomes[:8], outcomes[8:]
    assert [Retry(12.0, "HTTP 429")] == [o for o in first_wave if isinstance(o, Retry)]
    assert 7 == sum(isinstance(o, Synced) for o in first_wave)
    assert [Retry(12.0, "not sent: HTTP 429")] * 2 == held_back
    assert 7 == len(deliveries(fresh_emulators))


def test_503_is_a_retry(target: WebhookTarget, fresh_emulators: Emulators) -> None:
    fresh_emulators.webhook.inject("503")
    assert [Retry(None, "HTTP 503")] == target.sync([SyncItem(log(1, "created", "connected"))])


def test_a_delivery_whose_answer_was_lost_is_uncertain_and_keeps_its_idempotency_key(
    target: WebhookTarget, fresh_emulators: Emulators
) -> None:
    fresh_emulators.webhook.inject("drop_after_apply")
    item = SyncItem(log(1, "created", "connected"))
    [lost] = target.sync([item])
    assert isinstance(lost, Retry)
    assert lost.uncertain
    [retried] = target.sync([SyncItem(item.snapshot, next_target_state(item.target_state, lost))])
    assert isinstance(retried, Synced)
    received = deliveries(fresh_emulators)
    keys = [delivery["headers"]["idempotency-key"] for delivery in received]
    assert keys == ["conv-42:v1", "conv-42:v1"]
    assert [webhook_id("conv-42", 1)] * 2 == [delivery["headers"]["webhook-id"] for delivery in received]
    # the receiver dedupes by webhook-id: the redelivery is answered, not processed again
    assert [(True, False), (True, True)] == [(d["signature_valid"], d["duplicate"]) for d in received]
    assert retried == Synced(emulated_receiver_id("conv-42"), 1)


def test_every_delivery_carries_standard_webhooks_headers_that_verify(
    target: WebhookTarget, fresh_emulators: Emulators
) -> None:
    before_s = time.time()
    target.sync([SyncItem(log(1, "created", "connected"))])
    [delivery] = deliveries(fresh_emulators)
    headers = delivery["headers"]
    key = signing_key(fresh_emulators.env["ILOG_WEBHOOK_SECRET"])
    body = json.dumps(delivery["body"], separators=(",", ":"), ensure_ascii=False).encode()
    assert webhook_id("conv-42", 1) == headers["webhook-id"]
    assert before_s - 1 <= int(headers["webhook-timestamp"]) <= time.time()
    assert verify(key, headers, body, now_s=time.time())
    assert not verify(key, headers, body, now_s=time.time() + 301)  # replayed after the tolerance
    assert headers["x-signature"].startswith("sha256=")  # deprecated, still sent


@pytest.mark.parametrize("interaction_id", ["conv-ü-42", "会話-42", "conv 42\r\nX-Injected: 1"])
def test_an_interaction_id_a_header_cannot_carry_as_it_is_is_delivered_with_a_percent_encoded_key(
    target: WebhookTarget, fresh_emulators: Emulators, interaction_id: str,
) -> None:
    [outcome] = target.sync([SyncItem(log(1, "created", "connected", interaction_id=interaction_id))])
    [delivery] = deliveries(fresh_emulators)
    assert Synced(emulated_receiver_id(interaction_id), 1) == outcome
    assert (True, interaction_id) == (delivery["signature_valid"], delivery["body"]["log"]["interaction_id"])
    assert "x-injected" not in delivery["headers"]
    key = delivery["headers"]["idempotency-key"]
    assert (key.isascii() and key.isprintable(), f"{interaction_id}:v1") == (True, unquote(key))
