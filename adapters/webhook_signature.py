"""Standard Webhooks signatures (https://www.standardwebhooks.com): what the webhook target signs.

Every delivery carries `webhook-id` (the same for every attempt of one interaction version, so a
receiver can drop a redelivery), `webhook-timestamp` (Unix seconds of this attempt) and
`webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`. The key is the
base64-decoded rest of a `whsec_…` secret, as the specification's secrets are written, or the
UTF-8 bytes of any other secret. A receiver rejects a timestamp outside its tolerance (5 minutes)
and an id it has already processed, so a delivery replayed later no longer verifies.
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


def signing_key(secret: str) -> bytes:
    """The HMAC key of a secret: `whsec_<base64>` decoded, else the secret's UTF-8 bytes."""
    if not secret.startswith(SECRET_PREFIX):
        return secret.encode()
    try:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("a whsec_ webhook secret must be base64 after the prefix") from exc
    if not key:
        raise ValueError("a whsec_ webhook secret must not be empty after the prefix")
    return key


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
