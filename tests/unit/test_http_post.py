"""The webhook's poster against real sockets on loopback: answers, and what each transport failure means."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path

import pytest
import trustme

from adapters.base import RetryableSyncError, SyncError, TargetUnavailableError
from adapters.http_post import Poster

pytestmark = pytest.mark.unit


def _server(handle: Callable[[socket.socket], None]) -> Generator[int, None, None]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)

    def serve() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            with connection:
                handle(connection)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()[1]
    finally:
        listener.close()


def _answer(connection: socket.socket) -> None:
    request = connection.recv(65536)
    body = b'{"id": "rcv-7"}' if b"POST /hook" in request else b"{}"
    connection.sendall(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Type: application/json\r\n"
                       b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))


def _drop(connection: socket.socket) -> None:
    connection.recv(65536)


def _silent(connection: socket.socket) -> None:
    connection.recv(65536)
    threading.Event().wait(2.0)


@pytest.fixture
def answering() -> Iterator[int]:
    yield from _server(_answer)


def _failure(url: str, timeout_s: float = 0.5) -> SyncError:
    poster = Poster(url, None, timeout_s)
    try:
        with pytest.raises(SyncError) as raised:
            poster.post(url, data=b"{}", headers={"Content-Type": "application/json"})
    finally:
        poster.close()
    return raised.value


def test_an_answer_of_any_status_is_returned_with_headers_and_body(answering: int) -> None:
    url = f"http://127.0.0.1:{answering}/hook"
    poster = Poster(url, None, 2.0)
    try:
        answer = poster.post(url, data=b'{"a":1}', headers={"Content-Type": "application/json"})
    finally:
        poster.close()
    assert (429, "3", {"id": "rcv-7"}) == (answer.status_code, answer.headers.get("retry-after"), answer.json())


def test_nothing_listening_pauses_the_target() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # bound once, now closed: nothing listens there
    error = _failure(f"http://127.0.0.1:{port}/hook")
    assert isinstance(error, TargetUnavailableError)
    assert "CONNECT" == error.code


def test_a_name_that_does_not_resolve_pauses_the_target() -> None:
    error = _failure("https://no-such-receiver.invalid/hook")
    assert isinstance(error, TargetUnavailableError)
    assert "DNS" == error.code


def test_tls_to_a_receiver_that_does_not_speak_it_pauses_the_target(answering: int) -> None:
    error = _failure(f"https://127.0.0.1:{answering}/hook")
    assert isinstance(error, TargetUnavailableError)
    assert "TLS" == error.code


@pytest.mark.parametrize(("handle", "kind"), [(_drop, "connection error"), (_silent, "timeout")])
def test_a_request_sent_without_an_answer_is_an_uncertain_retry(
    handle: Callable[[socket.socket], None], kind: str
) -> None:
    port = next(server := _server(handle))
    try:
        error = _failure(f"http://127.0.0.1:{port}/hook", timeout_s=0.3)
    finally:
        server.close()
    assert isinstance(error, RetryableSyncError)
    assert (True, kind) == (error.uncertain, str(error).split(":")[0])


def _read_request(connection: socket.socket | ssl.SSLSocket, pending: bytearray) -> bytes | None:
    """One HTTP/1.1 request (head and Content-Length body) from the connection; None once it is closed."""
    while b"\r\n\r\n" not in pending:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        pending.extend(chunk)
    head_end = pending.index(b"\r\n\r\n") + 4
    length = next((int(line.split(b":", 1)[1]) for line in bytes(pending[:head_end]).split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)
    while len(pending) < head_end + length:
        chunk = connection.recv(65536)
        if not chunk:
            return None
        pending.extend(chunk)
    request = bytes(pending[: head_end + length])
    del pending[: head_end + length]
    return request


class _KeepAlive:
    """Answers every request on a connection with 200 and `{"n": <requests so far>}`, keeping it open;
    counts connections and keeps the requests as received."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self.context = context
        self.connections = 0
        self.requests: list[bytes] = []

    def __call__(self, connection: socket.socket) -> None:
        self.connections += 1
        stream: socket.socket | ssl.SSLSocket = connection
        if self.context is not None:
            try:
                stream = self.context.wrap_socket(connection, server_side=True)
            except (ssl.SSLError, OSError):
                return
        pending = bytearray()
        while (request := _read_request(stream, pending)) is not None:
            self.requests.append(request)
            body = b'{"n": %d}' % len(self.requests)
            stream.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Answer: a\r\nX-Answer: b\r\n"
                           b"Content-Length: %d\r\n\r\n%s" % (len(body), body))


def test_posts_from_one_thread_share_one_kept_alive_connection() -> None:
    receiver = _KeepAlive()
    port = next(server := _server(receiver))
    url = f"http://127.0.0.1:{port}/hook"
    poster = Poster(url, None, 2.0)
    try:
        answers = [poster.post(url, data=b'{"n":%d}' % n, headers={"Content-Type": "application/json"})
                   for n in range(3)]
    finally:
        poster.close()
        server.close()
    assert [{"n": 1}, {"n": 2}, {"n": 3}] == [answer.json() for answer in answers]
    assert 1 == receiver.connections
    assert "a, b" == answers[0].headers.get("x-answer")


def test_a_large_body_goes_without_waiting_for_100_continue_and_with_the_headers_given() -> None:
    receiver = _KeepAlive()
    port = next(server := _server(receiver))
    url = f"http://127.0.0.1:{port}/hook"
    body = b'{"notes":"' + b"x" * 50_000 + b'"}'
    poster = Poster(url, None, 2.0)
    try:
        answer = poster.post(url, data=body, headers={"Content-Type": "application/json", "webhook-id": "msg_1"})
    finally:
        poster.close()
        server.close()
    head, _, received = receiver.requests[0].partition(b"\r\n\r\n")
    lines = head.lower().split(b"\r\n")
    assert (200, body) == (answer.status_code, received)
    assert b"post /hook http/1.1" == lines[0]
    assert b"webhook-id: msg_1" in lines and b"content-type: application/json" in lines
    assert not any(line.startswith(b"expect:") for line in lines)


def test_tls_verifies_against_the_private_ca_given_and_refuses_an_unknown_one(tmp_path: Path) -> None:
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    ca_path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_path))
    port = next(server := _server(_KeepAlive(context)))
    url = f"https://127.0.0.1:{port}/hook"
    trusting, stranger = Poster(url, str(ca_path), 2.0), Poster(url, None, 2.0)  # certifi's bundle only
    try:
        answer = trusting.post(url, data=b"{}", headers={})
        trusting.close()  # the receiver serves one connection at a time
        with pytest.raises(TargetUnavailableError) as refused:
            stranger.post(url, data=b"{}", headers={})
    finally:
        trusting.close()
        stranger.close()
        server.close()
    assert 200 == answer.status_code
    assert "TLS" == refused.value.code


def test_the_proxy_the_environment_names_carries_the_post(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = _KeepAlive()
    port = next(server := _server(proxy))
    for name in ("HTTP_PROXY", "http_proxy"):  # the lowercase one wins where both are set
        monkeypatch.setenv(name, f"http://127.0.0.1:{port}")
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    url = "http://receiver.example/hook"
    poster = Poster(url, None, 2.0)
    try:
        answer = poster.post(url, data=b"{}", headers={})
    finally:
        poster.close()
        server.close()
    assert 200 == answer.status_code
    assert proxy.requests[0].startswith(b"POST http://receiver.example/hook HTTP/1.1\r\n")


def test_a_closed_poster_sends_nothing() -> None:
    poster = Poster("http://127.0.0.1:9/hook", None, 1.0)
    poster.close()
    with pytest.raises(TargetUnavailableError):
        poster.post("http://127.0.0.1:9/hook", data=b"{}", headers={})


def _trickle(connection: socket.socket) -> None:
    """Reads the request, then answers one byte every 0.1 s: each read is quick, the answer takes seconds."""
    connection.recv(65536)
    for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}":
        try:
            connection.sendall(bytes([byte]))
        except OSError:
            return
        threading.Event().wait(0.1)


def test_the_timeout_bounds_the_whole_post_not_each_read() -> None:
    port = next(server := _server(_trickle))
    started_s = time.monotonic()
    try:
        error = _failure(f"http://127.0.0.1:{port}/hook", timeout_s=0.5)
    finally:
        server.close()
    assert isinstance(error, RetryableSyncError)
    assert (True, "timeout") == (error.uncertain, str(error).split(":")[0])
    assert time.monotonic() - started_s < 2.0  # the answer would have taken ~4 s
