"""Salesforce OAuth token: client credentials, or JWT bearer with a private key file.

simple-salesforce's own login helpers build `https://<domain>.salesforce.com` URLs and cannot be
pointed at a configured login URL with a private CA, so the token is fetched here and the client
is built with `session_id` + `instance_url`.

A refused grant (`invalid_client`, `invalid_grant`, ...) is a target-level error: the target
pauses until a later login succeeds. The secret file (and the JWT key file) is read again on
every login, so a rotated Kubernetes secret is picked up without a restart.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import jwt
import requests

from adapters.base import PermanentSyncError, RetryableSyncError, TargetUnavailableError
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
    client_secret_file: str | None = None  # read on every login: a mounted secret that rotates

    def grant(self) -> dict[str, str]:
        """The token request form: JWT bearer when a key file and user are set, else client credentials."""
        if self.private_key_file and self.username:
            return {"grant_type": _JWT_GRANT, "assertion": self._assertion()}
        return {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._secret(),
        }

    def _secret(self) -> str:
        if self.client_secret_file:
            try:
                return Path(self.client_secret_file).read_text().strip()
            except OSError as exc:
                message = f"cannot read the client secret file: {exc.strerror}"
                raise TargetUnavailableError("SECRET_FILE", message) from exc
        if self.client_secret is None:
            raise PermanentSyncError("CONFIG", "Salesforce needs a client secret or a JWT key file and user")
        return self.client_secret

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
    """POST /services/oauth2/token; a refused grant pauses the target, anything else is transient."""
    url = credentials.login_url.rstrip("/") + "/services/oauth2/token"
    try:
        response = session.post(url, data=credentials.grant())
    except requests.RequestException as exc:
        raise transport_error(exc) from exc
    if response.status_code in (400, 401, 403):
        raise token_refused(response.status_code, *_error_fields(response))
    if response.status_code in (404, 405, 410):
        # no token endpoint at the login URL (a wrong or retired My Domain, another service): every
        # login fails the same way, so the target pauses rather than retrying each record
        raise TargetUnavailableError(f"LOGIN_HTTP_{response.status_code}", f"no token endpoint at {url}")
    if response.status_code != 200:
        raise RetryableSyncError(f"token request: HTTP {response.status_code}")
    token = response.json().get("access_token")
    if not isinstance(token, str) or not token:
        raise RetryableSyncError("token response without access_token")
    return token


def token_refused(status: int, error: str, description: str) -> TargetUnavailableError:
    """The token endpoint said no: the credentials (or the connected app) are refused, for every record."""
    detail = f": {description}" if description else ""
    return TargetUnavailableError(f"LOGIN_{error.upper()}", f"login refused (HTTP {status}){detail}")


def _error_fields(response: requests.Response) -> tuple[str, str]:
    """(error, error_description) of an OAuth error answer."""
    try:
        body = response.json()
    except ValueError:
        return "refused", ""
    if not isinstance(body, dict):
        return "refused", ""
    return str(body.get("error") or "refused"), str(body.get("error_description") or "")[:200]
