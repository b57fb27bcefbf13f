"""Receiver for the customer's own system: stores each signed delivery in order.

It answers `{"id": "<receiver-id>"}` (stable per interaction id) to the first accepted delivery
of an interaction and `{}` to later ones. Started with a secret, it checks
`X-Signature: sha256=<hex HMAC-SHA256(secret, body)>` and answers 401 when it does not match;
every delivery, rejected or not, is recorded with `signature_valid`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

from tests.emulators.faults import Fault
from tests.emulators.server import EmulatorApp, Request, Response


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


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

    def __init__(self, secret: str | None = None) -> None:
        super().__init__()
        self.secret = secret
        self.reset()

    def reset(self) -> None:
        self.deliveries: list[dict[str, Any]] = []
        self.answered: set[str] = set()

    def state(self) -> dict[str, Any]:
        return {"deliveries": list(self.deliveries)}

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.name in ("429", "request_limit"):
            return Response(429, {"error": "rate limited"}, {"Retry-After": str(fault.retry_after_s)})
        if fault.name == "invalid_session":
            return Response(401, {"error": "unauthorized"})
        return Response(503, {"error": "unavailable"})

    def handle(self, request: Request) -> Response:
        if request.method != "POST":
            return Response(405, {"error": "POST only"})
        signature = request.headers.get("x-signature")
        valid = None if self.secret is None else hmac.compare_digest(
            signature or "", sign(self.secret, request.body))
        try:
            body: Any = json.loads(request.body)
        except ValueError:
            body = None
        interaction = _interaction_id(body)
        status = 401 if valid is False else (400 if body is None else 200)
        self.deliveries.append({
            "path": request.path, "headers": request.headers, "body": body, "received_at": time.time(),
            "signature_valid": valid, "interaction_id": interaction, "status": status,
        })
        if status == 401:
            return Response(401, {"error": "invalid signature"})
        if status == 400:
            return Response(400, {"error": "body is not JSON"})
        if interaction is None or interaction in self.answered:
            return Response(200, {})
        self.answered.add(interaction)
        return Response(200, {"id": receiver_id(interaction)})
