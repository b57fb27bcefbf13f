"""Salesforce OAuth token: client credentials, or JWT bearer with a private key file.

simple-salesforce's own login helpers build `https://<domain>.salesforce.com` URLs and cannot be
pointed at a configured login URL with a private CA, so the token is fetched here and the client
is built with `session_id` + `instance_url`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import requests

from adapters.base import PermanentSyncError, RetryableSyncError
from adapters.http_session import transport_error

_JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_JWT_LIFETIME_S = 180


@dataclass(frozen=True)
class SalesforceCredentials:
    login_url: str
    client_id: str
    client_secret: str | None = None
    username: str | None = None
    private_key_file: str | None = None

    def grant(self) -> dict[str, str]:
        """The token request form: JWT bearer when a key file and user are set, else client credentials."""
        if self.private_key_file and self.username:
            return {"grant_type": _JWT_GRANT, "assertion": self._assertion()}
        if self.client_secret is None:
            raise PermanentSyncError("CONFIG", "Salesforce needs a client secret or a JWT key file and user")
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self.client_secret,
        }

    def _assertion(self) -> str:
        assert self.private_key_file is not None
        claims = {
            "iss": self.client_id,
            "sub": self.username,
            "aud": self.login_url.rstrip("/"),
            "exp": int(time.time()) + _JWT_LIFETIME_S,
        }
        key = Path(self.private_key_file).read_text()
        return jwt.encode(claims, key, algorithm="RS256")


def fetch_access_token(session: requests.Session, credentials: SalesforceCredentials) -> str:
    """POST /services/oauth2/token; a refused grant is permanent, anything else transient."""
    url = credentials.login_url.rstrip("/") + "/services/oauth2/token"
    try:
        response = session.post(url, data=credentials.grant())
    except requests.RequestException as exc:
        raise transport_error(exc) from exc
    if response.status_code in (400, 401, 403):
        error = _error_code(response)
        raise PermanentSyncError(f"LOGIN_{error.upper()}", f"token request refused ({response.status_code})")
    if response.status_code != 200:
        raise RetryableSyncError(f"token request: HTTP {response.status_code}")
    token = response.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise RetryableSyncError("token response without access_token")
    return token


def _error_code(response: requests.Response) -> str:
    try:
        return str(response.json().get("error", "refused"))
    except ValueError:
        return "refused"
