"""A request that arrived before an emulator reset belongs to the test before: not applied, not logged."""

from __future__ import annotations

import threading

import pytest
import requests

from tests.emulators.faults import Fault
from tests.emulators.server import EmulatorServer
from tests.emulators.webhook import WebhookApp


def test_a_request_waiting_across_a_reset_is_refused_and_left_out_of_the_log(monkeypatch: pytest.MonkeyPatch) -> None:
    server = EmulatorServer(WebhookApp("s"), 0).start()
    arrived = threading.Event()
    take = server.httpd.faults.take

    def noting(method: str, path: str) -> Fault | None:  # called once the request is read
        arrived.set()
        return take(method, path)

    monkeypatch.setattr(server.httpd.faults, "take", noting)
    answers: list[int] = []
    url = server.base_url + "/hooks/interaction-log"
    sender = threading.Thread(target=lambda: answers.append(requests.post(url, data=b"{}", timeout=10).status_code))
    try:
        with server.app.lock:  # the app is busy: the request is read, then waits for it
            sender.start()
            assert arrived.wait(10)
            server.httpd.log.clear()  # what the reset control does, under the same lock
        sender.join(10)
        after = requests.post(url, data=b"{}", timeout=10).status_code
    finally:
        server.stop()
    assert [503] == answers
    assert [after] == [entry["status"] for entry in server.httpd.log.entries()]
    assert 503 != after
