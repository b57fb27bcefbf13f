"""Webhook deliveries held against the Standard Webhooks reference receiver, configured with the operator's string.

The worker posts through its real HTTP client to a receiver emulator of its own; every delivery it recorded is
then verified with the reference package's algorithm (`tests.emulators.standard_webhooks`) given the same
secret string as `ILOG_WEBHOOK_SECRET`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from pydantic import SecretStr

from adapters.base import Synced, SyncItem, TargetState, next_target_state
from schemas.snapshot import LogSnapshot
from tests.emulators.server import EmulatorServer
from tests.emulators.standard_webhooks import VerificationError, reference_verify
from tests.emulators.webhook import WebhookApp
from tests.support import INBOUND_CALL, snapshot_from
from worker.runtime.settings import Settings
from worker.runtime.targets import build_webhook

REFERENCE_SECRETS = [
    "whsec_aWxvZy1lbXVsYXRvci13ZWJob29rLXNlY3JldA==",  # whsec_ + padded base64, as the specification writes it
    "whsec_c2VjcmV0LWtleQ",  # whsec_ + base64 without its padding (the reference adds it)
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",  # plain base64: the reference decodes it too
    "0123456789abcdef0123456789abcdef",  # hex, as `openssl rand -hex 16` prints: also base64 to the reference
    "my-webhook-secret",  # the reference skips `-` and decodes the rest
]


@pytest.fixture
def receiver() -> Iterator[EmulatorServer]:
    server = EmulatorServer(WebhookApp()).start()
    try:
        yield server
    finally:
        server.stop()


def lifecycle() -> list[LogSnapshot]:
    base: dict[str, Any] = {**INBOUND_CALL, "interaction_id": "conv-ref-1"}
    return [
        snapshot_from(base, version=1, trigger="created", state="connected"),
        snapshot_from(base, version=2, trigger="state_changed", state="disconnected", notes="Ünïcode notes ✓"),
        snapshot_from(base, version=3, trigger="finalized", state="disconnected", finalized=True),
    ]


def deliver(receiver: EmulatorServer, secret: str) -> list[dict[str, Any]]:
    """Posts the lifecycle through the target built from settings; what the receiver recorded."""
    app = receiver.app
    assert isinstance(app, WebhookApp)
    app.secret = secret
    settings = Settings(_env_file=None, webhook_url=receiver.base_url + "/hooks", webhook_secret=SecretStr(secret))
    target = build_webhook(settings)
    state = TargetState()
    try:
        for snapshot in lifecycle():
            [outcome] = target.sync([SyncItem(snapshot, state)])
            assert isinstance(outcome, Synced), outcome
            state = next_target_state(state, outcome)
    finally:
        target.close()
    return list(app.deliveries)


@pytest.mark.parametrize("secret", REFERENCE_SECRETS)
def test_the_reference_receiver_with_the_operators_secret_accepts_every_delivery(
    receiver: EmulatorServer, secret: str
) -> None:
    delivered = deliver(receiver, secret)
    for delivery in delivered:
        reference_verify(secret, delivery["raw_body"].encode(), delivery["headers"])
    assert [(200, True)] * 3 == [(d["status"], d["signature_valid"]) for d in delivered]


@pytest.mark.parametrize("secret", REFERENCE_SECRETS[:3])
def test_the_reference_receiver_refuses_a_changed_body_and_another_secret(
    receiver: EmulatorServer, secret: str
) -> None:
    [first, *_] = deliver(receiver, secret)
    body, headers = first["raw_body"].encode(), first["headers"]
    with pytest.raises(VerificationError):
        reference_verify(secret, body.replace(b"conv-ref-1", b"conv-ref-2"), headers)
    with pytest.raises(VerificationError):
        reference_verify("whsec_YW5vdGhlciBrZXk=", body, headers)
    with pytest.raises(VerificationError):
        reference_verify(secret, body, headers, now_s=time.time() + 301)
