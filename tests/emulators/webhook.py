"""Receiver for the customer's own system: verifies, dedupes and stores each signed delivery in order.

It answers `{"id": "<receiver-id>"}` (stable per interaction id) to the first accepted delivery
of an interaction and `{}` to later ones. Started with a secret, it verifies the Standard Webhooks
headers: `webhook-signature` must hold a `v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">`
(key: what the Standard Webhooks reference package derives from the secret string, `whsec_` or not; the
secret's UTF-8 bytes only where that package cannot take the string, `tests.emulators.standard_webhooks`) and
`webhook-timestamp` must lie within `tolerance_s` (5 minutes) of its clock, else 401. A
`webhook-id` already accepted is a redelivery or a replay: answered as the first time, recorded
with `duplicate: true`, not processed again. The deprecated `X-Signature: sha256=<hex HMAC of the
body>` is checked and recorded (`legacy_signature_valid`) but decides nothing. Every delivery,
rejected or not, is recorded with `signature_valid` and `rejected` (the reason, or null), and its body
as received (`raw_body`, UTF-8 text) for checks of the exact signed bytes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from tests.emulators.faults import Fault
from tests.emulators.server import EmulatorApp, Request, Response
from tests.emulators.standard_webhooks import VerificationError, reference_key

TOLERANCE_S = 300.0


def sign(secret: str, body: bytes) -> str:
    """The deprecated X-Signature value."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def key_of(secret: str) -> bytes:
    """The reference package's key of the secret, else (a string it refuses) the secret's UTF-8 bytes."""
    try:
        return reference_key(secret)
    except VerificationError:
        return b"" if secret.startswith("whsec_") else secret.encode()


def standard_signature(secret: str, message_id: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(key_of(secret), f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def standard_headers(secret: str, message_id: str, body: bytes, timestamp_s: float | None = None) -> dict[str, str]:
    """Headers as a Standard Webhooks sender makes them (for tests that post by hand)."""
    timestamp = str(int(time.time() if timestamp_s is None else timestamp_s))
    return {"webhook-id": message_id, "webhook-timestamp": timestamp,
            "webhook-signature": standard_signature(secret, message_id, timestamp, body)}


def receiver_id(interaction_id: str) -> str:
    return "rcv-" + hashlib.sha256(interaction_id.encode()).hexdigest()[:16]


def _interaction_id(body: Any) -> str | None:
    """Top-level `interaction_id`, else one nested object deep (e.g. {"log": {...}})."""
    if not isinstance(body, dict):
        return None
    if isinstance(body.get("interaction_id"), str):
        return str(body["interaction_id"])
    for value in body.values():
        if isinstance(value, dict) and isinstance(value.get("interaction_id"), str):
            return str(value["interaction_id"])
    return None


class WebhookApp(EmulatorApp):
    name = "webhook"

    def __init__(self, secret: str | None = None, tolerance_s: float = TOLERANCE_S) -> None:
        super().__init__()
        self.secret = secret
        self.tolerance_s = tolerance_s
        self.reset()

    def reset(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.answered: set[str] = set()
        self.processed: dict[str, dict[str, Any]] = {}  # webhook-id → the answer it got

    def state(self) -> dict[str, Any]:
        return {"deliveries": list(self.deliveries)}

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.name in ("429", "request_limit"):
            return Response(429, {"error": "rate limited"}, {"Retry-After": str(fault.retry_after_s)})
        if fault.name == "invalid_session":
            return Response(401, {"error": "unauthorized"})
        return Response(503, {"error": "unavailable"})

    def rejection(self, request: Request) -> str | None:
        """Why the Standard Webhooks headers do not verify (None: they do, or no secret is set)."""
        if self.secret is None:
            return None
        headers = request.headers
        message_id, timestamp = headers.get("webhook-id"), headers.get("webhook-timestamp", "")
        if not message_id or not timestamp.isdigit():
            return "missing webhook-id or webhook-timestamp"
        if abs(time.time() - int(timestamp)) > self.tolerance_s:
            return "timestamp outside the tolerance"
        expected = standard_signature(self.secret, message_id, timestamp, request.body)
        offered = headers.get("webhook-signature", "").split()
        if not any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return "invalid signature"
        return None

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, {"error": "POST only"})
        rejected = self.rejection(request)
        legacy = None if self.secret is None else hmac.compare_digest(
            request.headers.get("x-signature") or "", sign(self.secret, request.body))
        try:
            body: Any = json.loads(request.body)
        except ValueError:
            body = None
        interaction = _interaction_id(body)
        message_id = request.headers.get("webhook-id")
        duplicate = rejected is None and message_id is not None and message_id in self.processed
        status = 401 if rejected else (400 if body is None else 200)
        self.deliveries.append({
            "path": request.path, "headers": request.headers, "body": body, "received_at": time.time(),
            "raw_body": request.body.decode("utf-8", errors="replace"),
            "signature_valid": None if self.secret is None else rejected is None,
            "legacy_signature_valid": legacy, "rejected": rejected, "duplicate": duplicate,
            "interaction_id": interaction, "status": status,
        })
        if rejected:
            return Response(401, {"error": rejected})
        if status == 400:
            return Response(400, {"error": "body is not JSON"})
        if duplicate:
            return Response(200, self.processed[str(message_id)])
        answer = self._answer(interaction)
        if message_id is not None:
            self.processed[message_id] = answer
        return Response(200, answer)

    def _answer(self, interaction: str | None) -> dict[str, Any]:
        if interaction is None or interaction in self.answered:
            return {}
        self.answered.add(interaction)
        return {"id": receiver_id(interaction)}
