"""Standard Webhooks signatures (https://www.standardwebhooks.com): what the webhook target signs.

Every delivery carries `webhook-id` (the same for every attempt of one interaction version, so a
receiver can drop a redelivery), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The key is what the
reference Python package (`standardwebhooks`, `Webhook(secret)`) derives from the same string, so a
receiver built on it and given the operator's `ILOG_WEBHOOK_SECRET` verifies every delivery: an optional
`whsec_` stripped, the rest base64-decoded as that package does (padding optional, characters outside
the base64 alphabet skipped). Only a string the package refuses (beyond ASCII, a length no base64 has,
nothing left after decoding) is keyed with its UTF-8 bytes; a `whsec_` secret it refuses is a bad setting.
A receiver rejects a timestamp outside its tolerance (5 minutes) and an id it has already processed,
so a delivery replayed later no longer verifies.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping

SECRET_PREFIX = "whsec_"
ID_PREFIX = "msg_"
TOLERANCE_S = 300
ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"


def reference_key(secret: str) -> bytes | None:
    """The key `standardwebhooks.Webhook(secret)` uses, or None where that constructor raises.

    The package appends `==` and decodes without validation (b64decode skips surplus padding and
    characters outside the alphabet), so most ASCII strings decode to some key."""
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==")
    except (binascii.Error, ValueError):  # a length no base64 has, or characters beyond ASCII
        return None
    return key or None


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: the reference package's key, else (a plain string it refuses) the UTF-8 bytes."""
    key = reference_key(secret)
    if key is not None:
        return key
    if secret.startswith(SECRET_PREFIX):
        raise ValueError("a whsec_ webhook secret must be base64 after the prefix, and not empty")
    return secret.encode()


def webhook_id(interaction_id: str, version: int) -> str:
    """Deterministic per interaction version: `msg_` + the first 32 hex digits of
    SHA-256("<interaction id>:v<version>"), the same on every attempt and after a restart."""
    digest = hashlib.sha256(f"{interaction_id}:v{version}".encode()).hexdigest()
    return f"{ID_PREFIX}{digest[:32]}"


def signature(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp_s}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


def signed_headers(key: bytes, message_id: str, timestamp_s: int, body: bytes) -> dict[str, str]:
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp_s),
        SIGNATURE_HEADER: signature(key, message_id, timestamp_s, body),
    }


def verify(key: bytes, headers: Mapping[str, str], body: bytes, now_s: float, tolerance_s: float = TOLERANCE_S) -> bool:
    """What a receiver checks (headers by lower-case name): a fresh timestamp and one matching
    `v1` signature among the space-separated ones (several while a secret is being rotated)."""
    message_id, timestamp = headers.get(ID_HEADER), headers.get(TIMESTAMP_HEADER, "")
    if not message_id or not timestamp.isdigit() or abs(now_s - int(timestamp)) > tolerance_s:
        return False
    expected = signature(key, message_id, int(timestamp), body)
    offered = headers.get(SIGNATURE_HEADER, "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)
