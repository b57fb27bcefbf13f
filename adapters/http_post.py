"""The webhook's HTTP client: signed POSTs through libcurl (pycurl), one kept-alive handle per posting thread.

The webhook target posts one request per snapshot, many per second, from a process that also runs
the other targets and the consumer loop on the same interpreter lock. Through urllib3's pool a post
cost about 0.4 to 0.6 ms of the process's CPU, nearly all of it Python holding the lock (the pool, the
request line and headers, `http.client`'s response parser); a requests session cost twice that. libcurl
does the exchange in C with the lock released: about a quarter of urllib3's CPU per post
(`python -m tests.bench.webhook_posts`, numbers in docs/benchmarks.md).

What stays as with a requests session: the CA bundle (`ILOG_WEBHOOK_CA_BUNDLE`, else `REQUESTS_CA_BUNDLE`
or `CURL_CA_BUNDLE`, else certifi's, as requests chooses), the proxy the environment names for the URL
(read once, as requests reads it; libcurl is told that proxy or none, it reads no environment itself).
`timeout_s` is the longest one post may take, connect, send and answer together.
Redirects are not followed (a signed post is not sent elsewhere), no `Expect: 100-continue` (one round
trip per post), and nothing is retried here: the sync loop owns retries. libcurl itself may send a post
again on a fresh connection when a kept-alive one turned out closed by the receiver before anything came
back, as browsers do; the `webhook-id` makes that a duplicate the receiver recognises. Transport errors
come back as the adapters' errors, with the same meaning as `adapters.http_session.transport_error`.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from typing import Any

import certifi
import pycurl
import urllib3
from requests.utils import get_environ_proxies

from adapters.base import RetryableSyncError, TargetUnavailableError

_TLS_ERRORS = frozenset(
    getattr(pycurl, name) for name in (
        "E_SSL_CONNECT_ERROR", "E_PEER_FAILED_VERIFICATION", "E_SSL_CERTPROBLEM", "E_SSL_CIPHER",
        "E_SSL_CACERT_BADFILE", "E_SSL_ENGINE_NOTFOUND", "E_SSL_ENGINE_SETFAILED", "E_SSL_ENGINE_INITFAILED",
        "E_SSL_CRL_BADFILE", "E_SSL_ISSUER_ERROR", "E_SSL_PINNEDPUBKEYNOTMATCH", "E_SSL_INVALIDCERTSTATUS",
        "E_SSL_SHUTDOWN_FAILED", "E_USE_SSL_FAILED", "E_SSL_CACERT",
    ) if hasattr(pycurl, name)
)
"""libcurl's codes for a TLS handshake or certificate that failed: nothing was sent."""
_CONNECT_ERRORS = frozenset({pycurl.E_COULDNT_CONNECT, pycurl.E_COULDNT_RESOLVE_PROXY})
_NO_EXPECT = "Expect:"  # an empty value removes the header libcurl adds to larger bodies


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


class _Exchange:
    """What one post collects: the last response's header lines (a `100 Continue` or a proxy's `200` comes
    first and is forgotten at the next status line) and the body chunks."""

    __slots__ = ("body", "header_lines")

    def __init__(self) -> None:
        self.header_lines: list[bytes] = []
        self.body: list[bytes] = []

    def header(self, line: bytes) -> None:
        if line.startswith(b"HTTP/"):
            self.header_lines.clear()
        else:
            self.header_lines.append(line)

    def headers(self) -> urllib3.HTTPHeaderDict:
        found = urllib3.HTTPHeaderDict()
        for line in self.header_lines:
            name, colon, value = line.decode("latin-1").partition(":")
            if colon:
                found.add(name.strip(), value.strip())
        return found


class Poster:
    """POSTs to one receiver; thread-safe: each calling thread has a libcurl handle of its own (its own
    kept-alive connection), so at most as many connections as threads post at once (`maxsize` is kept for
    the callers' sake: the webhook target never posts from more threads than that)."""

    def __init__(self, url: str, ca_bundle: str | None, timeout_s: float, *, maxsize: int = 10) -> None:
        self.timeout_s = timeout_s
        self.maxsize = maxsize
        self._ca_certs = ca_bundle or os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") \
            or certifi.where()
        self._proxy = get_environ_proxies(url).get(url.split(":", 1)[0].lower()) or ""
        self._local = threading.local()
        self._handles: list[pycurl.Curl] = []
        self._lock = threading.Lock()
        self._closed = False

    def _handle(self) -> pycurl.Curl:
        handle: pycurl.Curl | None = getattr(self._local, "handle", None)
        if handle is None:
            handle = pycurl.Curl()
            timeout_ms = max(1, round(self.timeout_s * 1000))
            handle.setopt(pycurl.NOSIGNAL, 1)  # timeouts without SIGALRM: the handle is used off the main thread
            handle.setopt(pycurl.CONNECTTIMEOUT_MS, timeout_ms)
            handle.setopt(pycurl.TIMEOUT_MS, timeout_ms)  # the whole post: connect, send, answer
            handle.setopt(pycurl.FOLLOWLOCATION, 0)
            handle.setopt(pycurl.CAINFO, self._ca_certs)
            handle.setopt(pycurl.PROXY, self._proxy)  # "": no proxy (libcurl would read the environment itself)
            handle.setopt(pycurl.POST, 1)
            with self._lock:
                if self._closed:
                    handle.close()
                    raise TargetUnavailableError("CONNECT", "the webhook's poster is closed (nothing sent)")
                self._handles.append(handle)
            self._local.handle = handle
        return handle

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> Answer:
        """The answer, whatever its status; transport failures raise `RetryableSyncError` (may have been
        applied unless nothing was sent) or `TargetUnavailableError` (nothing could be sent)."""
        handle = self._handle()
        exchange = _Exchange()
        handle.setopt(pycurl.URL, url)
        handle.setopt(pycurl.POSTFIELDS, data)
        handle.setopt(pycurl.HTTPHEADER, [f"{name}: {value}" for name, value in headers.items()] + [_NO_EXPECT])
        handle.setopt(pycurl.HEADERFUNCTION, exchange.header)
        handle.setopt(pycurl.WRITEFUNCTION, exchange.body.append)
        try:
            handle.perform()
        except pycurl.error as exc:
            code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else -1
            message = str(exc.args[1]) if len(exc.args) > 1 else ""
            raise post_error(code, message, float(handle.getinfo(pycurl.PRETRANSFER_TIME)) > 0) from exc
        return Answer(int(handle.getinfo(pycurl.RESPONSE_CODE)), exchange.headers(), b"".join(exchange.body))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            handles, self._handles = self._handles, []
        for handle in handles:
            handle.close()


def post_error(code: int, message: str, sent: bool) -> RetryableSyncError | TargetUnavailableError:
    """libcurl's failure of one POST (`code`, `CURLE_*`) as the adapters' error. `sent`: the request
    was on its way (the connection and any TLS handshake were done). A failed TLS handshake, a name that
    does not resolve, a refused connection or a proxy that cannot be reached pause the target; a timeout
    before anything was sent is transient; a timeout or a connection lost after sending is transient and
    may have been applied."""
    detail = f"curl error {code}: {message}"
    if code in _TLS_ERRORS:
        return TargetUnavailableError("TLS", f"{detail} (nothing sent)")
    if code == pycurl.E_COULDNT_RESOLVE_HOST:
        return TargetUnavailableError("DNS", f"{detail} (nothing sent)")
    if code in _CONNECT_ERRORS:
        return TargetUnavailableError("CONNECT", f"{detail} (nothing sent)")
    kind = "timeout" if code == pycurl.E_OPERATION_TIMEDOUT else "connection error"
    return RetryableSyncError(f"{kind}: {detail}", uncertain=sent)
