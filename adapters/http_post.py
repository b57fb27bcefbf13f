"""The webhook's HTTP client: signed POSTs over a urllib3 connection pool, no requests session.

The webhook target posts one request per snapshot, many per second, from a process that also runs
the other targets and the consumer loop on the same interpreter lock. A requests session costs
about twice the CPU of the urllib3 pool under it (per call it merges settings, prepares the
request, dispatches hooks, keeps cookies); the webhook needs none of that, so it posts through
urllib3 directly (`python -m tests.bench.webhook_posts`, numbers in docs/benchmarks.md).

What stays as with the session: the CA bundle (`ILOG_WEBHOOK_CA_BUNDLE`, else `REQUESTS_CA_BUNDLE`
or `CURL_CA_BUNDLE`, else certifi's, as requests chooses), the proxy the environment names for
the URL (read once), one timeout for connect and read. Redirects are not followed (a signed post
is not sent elsewhere) and nothing is retried here: the sync loop owns retries. Transport errors
come back as the adapters' errors, with the same meaning as `adapters.http_session.transport_error`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import certifi
import urllib3
from requests.utils import get_environ_proxies
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NameResolutionError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
    SSLError,
)

from adapters.base import RetryableSyncError, TargetUnavailableError


@dataclass(frozen=True)
class Answer:
    """The receiver's answer: status, headers (case-insensitive `get`) and body."""

    status_code: int
    headers: urllib3.HTTPHeaderDict
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body as JSON; ValueError when it is not."""
        return json.loads(self.content)


class Poster:
    """POSTs to one receiver through a pool of `maxsize` kept-alive connections; thread-safe."""

    def __init__(self, url: str, ca_bundle: str | None, timeout_s: float, *, maxsize: int = 10) -> None:
        self.timeout_s = timeout_s
        ca_certs = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or certifi.where()
        options: dict[str, Any] = {
            "maxsize": maxsize, "block": False, "ca_certs": ca_certs, "retries": False,
            "timeout": urllib3.Timeout(connect=timeout_s, read=timeout_s),
        }
        proxy = get_environ_proxies(url).get(url.split(":", 1)[0].lower())
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options))

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> Answer:
        """The answer, whatever its status; transport failures raise `RetryableSyncError` (may have been
        applied unless nothing was sent) or `TargetUnavailableError` (nothing could be sent)."""
        try:
            response = self._pool.request("POST", url, body=data, headers=headers, redirect=False)
        except HTTPError as exc:
            raise post_error(exc) from exc
        return Answer(response.status, response.headers, response.data)

    def close(self) -> None:
        self._pool.clear()


def post_error(exc: HTTPError) -> RetryableSyncError | TargetUnavailableError:
    """urllib3's failure of one POST (no retries, so the error itself, never wrapped) as the adapters'
    error: `TLS`, `DNS`, `CONNECT` or a proxy refusing pause the target; a timeout or a connection
    lost after connecting is transient and may have been applied; a connect timeout sent nothing."""
    if isinstance(exc, SSLError):
        return TargetUnavailableError("TLS", f"{type(exc).__name__} (nothing sent)")
    if isinstance(exc, NameResolutionError):
        return TargetUnavailableError("DNS", f"{type(exc).__name__} (nothing sent)")
    if isinstance(exc, NewConnectionError):  # before its base class ConnectTimeoutError
        return TargetUnavailableError("CONNECT", f"{type(exc).__name__} (nothing sent)")
    if isinstance(exc, ConnectTimeoutError):
        return RetryableSyncError(f"timeout: {type(exc).__name__}", uncertain=False)
    if isinstance(exc, ProxyError):
        return TargetUnavailableError("CONNECT", f"{type(exc).__name__} (nothing sent)")
    kind = "timeout" if isinstance(exc, ReadTimeoutError) else "connection error"
    return RetryableSyncError(f"{kind}: {type(exc).__name__}", uncertain=True)
