"""OAuth 2.0 token endpoint of the emulated org: client credentials and JWT bearer flows.

Responses follow the Salesforce Help pages "OAuth 2.0 Client Credentials Flow for
Server-to-Server Integration" and "OAuth 2.0 JWT Bearer Flow for Server-to-Server Integration".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from tests.emulators.server import Request, Response

ORG_ID = "00D5g000004ILOGEAA"
USER_ID = "0055g00000ILOGuAAA"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
INVALID_CLIENT = {"error": "invalid_client", "error_description": "invalid client credentials"}


@dataclass
class TokenIssuer:
    client_id: str
    client_secret: str
    tokens: set[str] = field(default_factory=set)
    logins: int = 0

    def token_endpoint(self, request: Request, instance_url: str) -> Response:
        form = {k: v[0] for k, v in parse_qs(request.body.decode(errors="replace")).items()}
        grant = form.get("grant_type")
        if grant == "client_credentials":
            if not self._client_ok(form, request.headers.get("authorization", "")):
                return Response(400, INVALID_CLIENT)
        elif grant == JWT_GRANT:
            if not _jwt_well_formed(form.get("assertion", "")):
                return Response(400, {"error": "invalid_grant", "error_description": "invalid assertion"})
        else:
            return Response(400, {"error": "unsupported_grant_type",
                                  "error_description": "grant type not supported"})
        return Response(200, self._issue(instance_url))

    def valid(self, request: Request) -> bool:
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        return scheme.lower() in ("bearer", "oauth") and token in self.tokens

    def expire_all(self) -> None:
        self.tokens.clear()

    def _client_ok(self, form: dict[str, str], authorization: str) -> bool:
        client_id, client_secret = form.get("client_id"), form.get("client_secret")
        if authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:]).decode()
            except (binascii.Error, UnicodeDecodeError):
                return False
            client_id, _, client_secret = decoded.partition(":")
        return client_id == self.client_id and client_secret == self.client_secret

    def _issue(self, instance_url: str) -> dict[str, Any]:
        token = f"{ORG_ID}!AQ{secrets.token_urlsafe(40)}"
        self.tokens.add(token)
        self.logins += 1
        issued_at = str(int(time.time() * 1000))
        identity = f"{instance_url}/id/{ORG_ID}/{USER_ID}"
        digest = hmac.new(self.client_secret.encode(), (identity + issued_at).encode(), hashlib.sha256)
        return {
            "access_token": token,
            "instance_url": instance_url,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(digest.digest()).decode(),
            "scope": "api",
        }


def _b64json(segment: str) -> Any:
    padded = segment + "=" * (-len(segment) % 4)
    return json.loads(base64.urlsafe_b64decode(padded))


def _jwt_well_formed(assertion: str) -> bool:
    """Three segments, JSON header and claims with iss, sub and aud; the signature is not checked."""
    parts = assertion.split(".")
    if len(parts) != 3 or not parts[2]:
        return False
    try:
        header, claims = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, binascii.Error):
        return False
    return isinstance(header, dict) and isinstance(claims, dict) and all(
        claims.get(name) for name in ("iss", "sub", "aud"))
