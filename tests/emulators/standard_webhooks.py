"""A test-only copy of the Standard Webhooks reference receiver (`standardwebhooks` 1.1.0 on PyPI, `Webhook`).

Its key derivation and `verify`, as the reference Python package implements them, so the tests hold the
worker's deliveries against what a receiver built on that package accepts; the package is not a
dependency of the project. Kept as the original behaves, quirks included: the secret (after an
optional `whsec_`) is base64-decoded leniently (`"=="` appended, characters outside the alphabet
skipped), a string it cannot decode or that decodes to nothing is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping

PREFIX = "whsec_"
TOLERANCE_S = 300


class VerificationError(Exception):
    """The reference's WebhookVerificationError (and its refusal of a secret)."""


def reference_key(secret: str) -> bytes:
    """`Webhook(secret)._whsecret`; raises VerificationError where the reference's constructor raises."""
    try:
        key = base64.b64decode(secret.removeprefix(PREFIX) + "==")
    except ValueError as exc:  # binascii.Error, or a string beyond ASCII
        raise VerificationError(f"the reference refuses this secret: {exc}") from exc
    if not key:
        raise VerificationError("webhook secret may not be empty")
    return key


def reference_verify(secret: str, body: bytes, headers: Mapping[str, str], now_s: float | None = None) -> None:
    """`Webhook(secret).verify(body, headers)`: returns when the delivery verifies, else raises."""
    key = reference_key(secret)
    lowered = {name.lower(): value for name, value in headers.items()}
    msg_id, timestamp, offered = (lowered.get(name) for name in
                                  ("webhook-id", "webhook-timestamp", "webhook-signature"))
    if not (msg_id and timestamp and offered):
        raise VerificationError("Missing required headers")
    sent_s = float(timestamp)
    now_s = time.time() if now_s is None else now_s
    if not now_s - TOLERANCE_S <= sent_s <= now_s + TOLERANCE_S:
        raise VerificationError("Message timestamp too old or too new")
    signed = f"{msg_id}.{int(sent_s)}.{body.decode()}".encode()
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for versioned in offered.split(" "):
        version, signature = versioned.split(",")
        if version == "v1" and hmac.compare_digest(expected, base64.b64decode(signature)):
            return
    raise VerificationError("No matching signature found")
