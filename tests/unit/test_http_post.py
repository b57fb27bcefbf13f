"""The webhook's poster against real sockets on loopback: answers, and what each transport failure means."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Generator, Iterator

import pytest

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
