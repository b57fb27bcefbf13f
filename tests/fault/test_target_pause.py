"""A target that refuses us pauses: nothing is dead-lettered, every record lands once the target answers.

The real simple-salesforce and zenpy clients against the emulators, the real broker and Redis; the
worker is `ilog worker all` in a child process.
"""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests
from pydantic import SecretStr

from adapters.zendesk_render import marker
from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    CONTACT_ID,
    connected,
    event,
    seed_ticket,
    sf_ref,
    sync_settings,
    tasks_by_call,
    ticket,
    wait_for,
    worker_comments,
    zd_ticket,
)
from tests.fault.test_sync_faults import _dead_letters
from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings

emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators

CALLS = 12
REFUSED_S = 30.0
PAUSE = {"target_pause_base_seconds": 1.0, "target_pause_ceiling_seconds": 4.0}


def _history(call: str, n: int, t0: datetime, related: dict[str, str] | None) -> list[dict[str, Any]]:
    at = t0 + timedelta(seconds=n)
    return [
        event("interaction.connected", call, 1, at, connected(name=sf_ref("Contact", CONTACT_ID), related_to=related)),
        event("log.updated", call, 2, at + timedelta(seconds=5), {"notes": f"Notes of {call}."}),
        event("interaction.disconnected", call, 3, at + timedelta(seconds=40)),
        event("interaction.wrapup", call, 4, at + timedelta(seconds=41), {"code": "Resolved"}),
    ]


def _http_port(worker: WorkerProcess) -> int:
    assert wait_for(lambda: '"worker started"' in worker.log_text(), 30), worker.log_text()[-3000:]
    found = re.search(r'"http_port": ?(\d+)', worker.log_text())
    assert found is not None, worker.log_text()[-3000:]
    return int(found.group(1))


def _paused_gauge(port: int, target: str) -> float | None:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(rf'^ilog_target_paused{{target="{target}"}} ([0-9.]+)$', text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def _readiness(port: int) -> tuple[int, str]:
    response = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
    return response.status_code, response.text


def _log_lines(worker: WorkerProcess, name: str) -> list[dict[str, Any]]:
    lines = []
    for line in worker.log_text().splitlines():
        if line.startswith("{") and f'"{name}"' in line:
            entry = json.loads(line)
            if entry.get("event") == name:
                lines.append(entry)
    return lines


def _tasks_final(emus: Emulators, calls: list[str]) -> bool:
    found = tasks_by_call(emus)
    return all(any(t["Status"] == "Completed" for t in found.get(c, [])) for c in calls)


def test_a_refused_salesforce_secret_pauses_the_target_until_the_rotated_secret_file_is_read(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    secret_file = tmp_path / "client-secret"
    right = fresh_emulators.env["ILOG_SALESFORCE_CLIENT_SECRET"]
    secret_file.write_text("a-wrong-secret-value\n")
    run = sync_settings(settings, fresh_emulators, ("salesforce",), salesforce_client_secret=None,
                        salesforce_client_secret_file=str(secret_file), **PAUSE)
    calls = [f"conv-sfpause-{n:02d}" for n in range(CALLS)]
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    produce(run, run.events_topic, [e for n, c in enumerate(calls) for e in _history(c, n, t0, None)])
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        port = _http_port(worker)
        assert wait_for(lambda: _paused_gauge(port, "salesforce") == 1.0, 30), worker.log_text()[-3000:]
        status, body = _readiness(port)
        assert 200 == status and "target salesforce paused" in body and "LOGIN_INVALID_CLIENT" in body, body
        time.sleep(REFUSED_S)
        assert 1.0 == _paused_gauge(port, "salesforce")
        assert {} == tasks_by_call(fresh_emulators)
        secret_file.write_text(right + "\n")  # the mounted secret rotates; no restart
        assert wait_for(lambda: _tasks_final(fresh_emulators, calls), 30), worker.log_text()[-3000:]
        assert wait_for(lambda: _paused_gauge(port, "salesforce") == 0.0, 10)
        assert "ready" == _readiness(port)[1].strip()
        time.sleep(1.0)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    found = tasks_by_call(fresh_emulators)
    assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
    expected = {c: {"Status": "Completed", "CallDisposition": "Resolved", "WhoId": CONTACT_ID,
                    "CallDurationInSeconds": 40} for c in calls}
    assert expected == {c: {k: found[c][0].get(k) for k in expected[c]} for c in calls}
    assert all(found[c][0]["Description"].startswith(f"Notes of {c}.") for c in calls)
    assert [] == _dead_letters(run, 3.0)
    refused_logins = [e for e in fresh_emulators.salesforce.requests()
                      if e["path"].startswith("/services/oauth2/token") and e["status"] == 400]
    paused = _log_lines(worker, "target paused")
    # One line per wait (one refused login each), none per record; never the secret.
    assert len(refused_logins) == len(paused) >= 5
    assert {("salesforce", "LOGIN_INVALID_CLIENT", "LOGIN_INVALID_CLIENT: login refused (HTTP 400): "
             "invalid client credentials")} == {(e["target"], e["code"], e["error"]) for e in paused}
    assert max(e["next_try_in_s"] for e in paused) <= 4.0
    assert [] == _log_lines(worker, "sync failed; dead-lettered") + _log_lines(worker, "sync retry")
    assert ["salesforce"] == [e["target"] for e in _log_lines(worker, "target resumed")]
    assert "a-wrong-secret-value" not in worker.log_text() and right not in worker.log_text()


def test_a_zendesk_401_pauses_the_target_and_it_resumes_by_itself_when_the_token_is_accepted(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("zendesk",), zendesk_linger_seconds=0.5, **PAUSE)
    assert isinstance(run.zendesk_token, SecretStr)
    calls = [f"conv-zdpause-{n:02d}" for n in range(CALLS)]
    tickets = {call: seed_ticket(fresh_emulators, f"Order {call}") for call in calls}
    fresh_emulators.zendesk.inject("unauthorized", for_s=600)  # every call answered 401 until cleared
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    produce(run, run.events_topic,
            [e for n, c in enumerate(calls) for e in _history(c, n, t0, zd_ticket(tickets[c]))])
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        port = _http_port(worker)
        assert wait_for(lambda: _paused_gauge(port, "zendesk") == 1.0, 40), worker.log_text()[-3000:]
        assert "target zendesk paused" in _readiness(port)[1]
        time.sleep(REFUSED_S / 2)
        assert 1.0 == _paused_gauge(port, "zendesk")
        fresh_emulators.zendesk.clear_faults()
        assert wait_for(lambda: all(worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls), 40), \
            worker.log_text()[-3000:]
        assert wait_for(lambda: _paused_gauge(port, "zendesk") == 0.0, 10)
        time.sleep(1.0)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    comments = {c: worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls}
    assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
    assert all(comments[c][0].endswith(marker(c, 5)) for c in calls)
    assert [] == _dead_letters(run, 3.0)
    paused = _log_lines(worker, "target paused")
    refused = [e for e in fresh_emulators.zendesk.requests() if e["status"] == 401]
    assert 3 <= len(paused) <= len(refused)
    assert {("zendesk", "HTTP_401", "HTTP_401: Couldn't authenticate you")} == {
        (e["target"], e["code"], e["error"]) for e in paused}
    assert [] == _log_lines(worker, "sync failed; dead-lettered") + _log_lines(worker, "sync retry")
    assert run.zendesk_token.get_secret_value() not in worker.log_text()
