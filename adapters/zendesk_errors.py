"""What the Zendesk target makes of zenpy's location and errors: zenpy / requests exceptions → the adapters'
error tree (`adapters.base`), with Zendesk's own error code and, for a 422, what it refused."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests
from zenpy.lib.exception import RecordNotFoundException

from adapters.base import (
    PermanentSyncError,
    RetryableSyncError,
    SyncError,
    TargetUnavailableError,
    parse_retry_after,
)
from adapters.http_session import transport_error


def zenpy_location(url: str) -> tuple[str, str, str | None]:
    """(subdomain, domain, forced netloc) for a Zendesk URL; zenpy itself only builds https://sub.domain."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    labels = host.split(".")
    if parts.scheme == "https" and parts.port is None and len(labels) >= 3:
        return labels[0], ".".join(labels[1:]), None
    return "local", host, parts.netloc


def translate_zenpy_error(exc: Exception) -> SyncError:
    """zenpy / requests exceptions → the adapters' error tree."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status == 401:
        return TargetUnavailableError("HTTP_401", _api_error_code(_error_body(response)))
    if isinstance(exc, RecordNotFoundException):
        return PermanentSyncError("RecordNotFound", "ticket not found")
    if status is not None and (status == 429 or status >= 500):
        retry_after = response.headers.get("Retry-After") if response is not None else None
        return RetryableSyncError(f"HTTP {status}", parse_retry_after(retry_after))  # seconds or an HTTP date
    if status is not None:
        body = _error_body(response)
        details = _api_error_details(body)
        return PermanentSyncError(_api_error_code(body), f"HTTP {status}" + (f": {details}" if details else ""))
    if isinstance(exc, requests.RequestException):
        return transport_error(exc)
    return RetryableSyncError(f"{type(exc).__name__}: {exc}")


def _error_body(response: Any) -> dict[str, Any] | None:
    """The JSON object of an error answer, or None when it is not one."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def _api_error_code(body: dict[str, Any] | None) -> str:
    if body is None:
        return "HTTPError"
    error = body.get("error")
    return str(error.get("title", "Error") if isinstance(error, dict) else error or "Error")


def _api_error_details(body: dict[str, Any] | None) -> str:
    """The descriptions in a 422's `details` ({"status": [{"description": "…"}], …}), joined: what to fix."""
    details = body.get("details") if body is not None else None
    if not isinstance(details, dict):
        return ""
    found = [str(entry.get("description")) for entries in details.values() if isinstance(entries, list)
             for entry in entries if isinstance(entry, dict) and entry.get("description")]
    return "; ".join(found)
