"""The requests session each client library is handed: CA bundle, timeouts, each thread's last response.

The client libraries turn HTTP errors into exceptions that drop the response headers
(Retry-After, Sforce-Limit-Info); a response hook keeps the last response so the adapter can
read them when translating the exception.

The environment (proxy variables, `REQUESTS_CA_BUNDLE`) is read once per host instead of on every
request: with `trust_env` on, requests re-reads it (and `.netrc`) per call, which was a fifth of
the sync process's CPU under a steady webhook load. `.netrc` credentials are not used; every
client here sends its own.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.utils import get_environ_proxies
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from adapters.base import RetryableSyncError, TargetUnavailableError, parse_retry_after

# Loggers of the HTTP clients the adapters use; at DEBUG they write whole request and response
# bodies (note text, tokens), so the worker never lets them below WARNING.
CLIENT_LOGGERS = ("zenpy", "simple_salesforce", "urllib3", "requests")


class RecordingSession(requests.Session):
    """A session that verifies against `ca_bundle`, applies a default timeout and keeps the last response."""

    def __init__(self, ca_bundle: str | None, timeout_s: float, *, raise_on_429: bool = False) -> None:
        super().__init__()
        self.raise_on_429 = raise_on_429
        self.ca_bundle = ca_bundle
        if ca_bundle:
            self.verify = ca_bundle
        self.timeout_s = timeout_s
        self.trust_env = False
        self._env_verify: bool | str = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        self._proxies_by_origin: dict[str, dict[str, str]] = {}
        self._last = threading.local()  # per thread: a target may have several calls in flight
        self.hooks["response"].append(self._remember)

    @property
    def last_response(self) -> requests.Response | None:
        """The last response this thread received (None before one, or while a request is under way)."""
        response: requests.Response | None = getattr(self._last, "response", None)
        return response

    @last_response.setter
    def last_response(self, response: requests.Response | None) -> None:
        self._last.response = response

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self.timeout_s)
        kwargs.setdefault("verify", self.ca_bundle or self._env_verify)
        if not kwargs.get("proxies"):  # some clients pass proxies=None explicitly
            kwargs["proxies"] = self.proxies_for(url if isinstance(url, str) else url.decode())
        self.last_response = None
        return super().request(method, url, *args, **kwargs)

    def proxies_for(self, url: str) -> dict[str, str]:
        """The proxies the environment names for this URL's origin (honouring NO_PROXY), read once."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        found = self._proxies_by_origin.get(origin)
        if found is None:
            found = self._proxies_by_origin[origin] = dict(get_environ_proxies(url))
        return found

    def _remember(self, response: requests.Response, *args: Any, **kwargs: Any) -> requests.Response:
        self.last_response = response
        if self.raise_on_429 and response.status_code == 429:
            # Some clients (zenpy) sleep on Retry-After inside the call; the sync loop owns back-off.
            response.close()
            raise RetryableSyncError("HTTP 429", self.last_retry_after_s())
        return response

    def last_header(self, name: str) -> str | None:
        return None if self.last_response is None else self.last_response.headers.get(name)

    def last_retry_after_s(self) -> float | None:
        return parse_retry_after(self.last_header("Retry-After"))


def transport_error(exc: requests.RequestException) -> RetryableSyncError | TargetUnavailableError:
    """A request that got no answer: it may have been applied unless it never connected.

    A name that does not resolve, a refused connection or a failed TLS handshake says the target
    cannot be reached at all (nothing was sent): the target pauses. A timeout or a connection
    dropped mid-request is transient and may have been applied.
    """
    unreachable = never_connected(exc)
    if unreachable is not None:
        return TargetUnavailableError(unreachable, f"{type(exc).__name__} (nothing sent)")
    sent = not isinstance(exc, requests.ConnectTimeout)
    kind = "timeout" if isinstance(exc, requests.Timeout) else "connection error"
    return RetryableSyncError(f"{kind}: {type(exc).__name__}", uncertain=sent)


def never_connected(exc: requests.RequestException) -> str | None:
    """`TLS`, `DNS` or `CONNECT` when the request failed before anything was sent; None otherwise."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS"
    if not isinstance(exc, requests.ConnectionError) or isinstance(exc, requests.Timeout):
        return None
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    if isinstance(reason, NameResolutionError):
        return "DNS"
    if isinstance(reason, NewConnectionError):
        return "CONNECT"
    return None
