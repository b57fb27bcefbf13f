"""Faults under `ilog worker all` with every target on, judged by what the CRMs hold at the end.

Real Kafka and Redis (deploy/local/stack), the real clients against the emulators. The end state of
every test: each interaction has exactly one Task (Completed, with its final notes and wrap-up), exactly
one worker comment on its ticket naming the final version, its final webhook delivery processed once,
and no dead letter anywhere.
"""

from __future__ import annotations

import re
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from adapters.zendesk_render import marker
from tests.conftest import STACK
from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    CONTACT_ID,
    FAST_GROUP,
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
from tests.e2e.test_lookup_replay_e2e import crm_records, webhook_ids_processed_twice
from tests.fault.test_fold_faults import LiveProducer
from tests.support import TopicReader, WorkerProcess, offline_fold, produce
from worker.runtime.settings import Settings

emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators

WINDOW_S = 25.0  # the open group's windows stay open across the fault


def _stack(command: str) -> None:
    done = subprocess.run([str(STACK), command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _call(call: str, at: datetime, ticket_id: int) -> list[dict[str, Any]]:
    """Connect, hold, resume, notes, disconnect at +4 s, wrap-up: version 6 when folded."""
    return [
        event("interaction.connected", call, 1, at,
              connected(name=sf_ref("Contact", CONTACT_ID), related_to=zd_ticket(ticket_id))),
        event("interaction.held", call, 2, at + timedelta(seconds=1)),
        event("interaction.resumed", call, 3, at + timedelta(seconds=2)),
        event("log.updated", call, 4, at + timedelta(seconds=3), {"notes": f"Notes of {call}."}),
        event("interaction.disconnected", call, 5, at + timedelta(seconds=4)),
        event("interaction.wrapup", call, 6, at + timedelta(seconds=4.5), {"code": "Resolved"}),
    ]


def _edit(call: str, at: datetime) -> dict[str, Any]:
    return event("log.updated", call, 7, at, {"notes": f"Edited notes of {call}."})


def _dead_letters(settings: Settings) -> list[Any]:
    letters = []
    for topic in (settings.events_dlq_topic, settings.upserts_dlq_topic):
        reader = TopicReader(settings, topic)
        try:
            letters += reader.read_until(lambda _m: False, timeout_s=2)
        finally:
            reader.close()
    return letters


def _final_everywhere(emus: Emulators, finals: dict[str, int], tickets: dict[str, int]) -> bool:
    """Every call's Task Completed, its comment with the final version posted, its final webhook delivered."""
    found = tasks_by_call(emus)
    if not all(any(t["Status"] == "Completed" for t in found.get(c, [])) for c in finals):
        return False
    by_id = {t["id"]: t for t in emus.zendesk.state()["tickets"]}
    if not all(any(b.endswith(marker(c, v)) for b in worker_comments(by_id[tickets[c]])) for c, v in finals.items()):
        return False
    removed = {d["interaction_id"] for d in emus.webhook.state()["deliveries"]
               if d["status"] == 200 and d["body"]["event"] == "interactionRemoved"}
    return set(finals) <= removed


def _assert_end_state(emus: Emulators, finals: dict[str, int], tickets: dict[str, int], edited: set[str]) -> None:
    found = tasks_by_call(emus)
    assert {c: 1 for c in finals} == {c: len(found.get(c, [])) for c in finals}
    expected = {c: {"Status": "Completed", "CallDisposition": "Resolved", "WhoId": CONTACT_ID,
                    "CallDurationInSeconds": 4, "notes": ("Edited notes" if c in edited else "Notes") + f" of {c}."}
                for c in finals}
    assert expected == {c: {**{k: found[c][0].get(k) for k in expected[c] if k != "notes"},
                            "notes": str(found[c][0]["Description"]).split("\n")[0]} for c in finals}
    comments = {c: worker_comments(ticket(emus, tickets[c])) for c in finals}
    assert {c: [marker(c, v)] for c, v in finals.items()} == {
        c: [found_comment.splitlines()[-1] for found_comment in comments[c]] for c in finals}
    assert [] == webhook_ids_processed_twice(emus)
    delivered_final = {}
    for delivery in emus.webhook.state()["deliveries"]:
        if delivery["status"] == 200 and delivery["body"]["event"] == "interactionRemoved":
            delivered_final[delivery["interaction_id"]] = delivery["body"]["log"]["version"]
    assert finals == {c: delivered_final.get(c) for c in finals}


def _http_port(worker: WorkerProcess) -> int:
    assert wait_for(lambda: '"worker started"' in worker.log_text(), 30), worker.log_text()[-3000:]
    found = re.search(r'"http_port": ?(\d+)', worker.log_text())
    assert found is not None, worker.log_text()[-3000:]
    return int(found.group(1))


def _readiness_body(port: int) -> str:
    return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=3).text


def _ready(port: int) -> bool:
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=3).status_code == 200
    except requests.RequestException:
        return False


@pytest.mark.parametrize("down_s", [0, 10])
def test_redis_restarted_empty_while_both_stages_sync_loses_no_log_and_writes_no_crm_record_twice(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path, down_s: int,
) -> None:
    """Closed logs (A), logs open and synced to Salesforce (B), then redis-server restarts empty while
    the sync stage is at work; in-window edits of B and new calls (C) follow. Sync states, Task Ids
    and logs are all gone from Redis: the fold stage restores the logs from the changelog, the sync
    stage looks up what exists, and nothing is created or posted twice."""
    run = sync_settings(settings, fresh_emulators, edit_window_seconds=WINDOW_S, zendesk_linger_seconds=0.5,
                        store_retry_max_seconds=1.0)
    names = {g: [f"conv-redis-{g}-{n:02d}" for n in range(10)] for g in "ABC"}
    tickets = {c: seed_ticket(fresh_emulators, f"Order {c}") for group in names.values() for c in group}
    now = datetime.now(UTC)
    produce(run, run.events_topic, [e for n, c in enumerate(names["A"])
                                    for e in _call(c, now - timedelta(seconds=60 + n), tickets[c])])
    produce(run, run.events_topic, [e for c in names["B"] for e in _call(c, now - timedelta(seconds=4), tickets[c])])
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **FAST_GROUP)
    try:
        port = _http_port(worker)
        a_finals = {c: 7 for c in names["A"]}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, a_finals, tickets), 40), worker.log_text()[-3000:]
        assert wait_for(lambda: all(tasks_by_call(fresh_emulators).get(c) for c in names["B"]), 20)
        time.sleep(1.5)  # offsets of both groups committed (auto-commit every second)
        _stack("redis-stop")
        try:  # both stages wait (not ready) while Redis is away, then find it empty
            if down_s:
                assert wait_for(lambda: not _ready(port), 10), worker.log_text()[-3000:]
                time.sleep(down_s)
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
        finally:
            _stack("redis-start")
        assert wait_for(lambda: "state restored from the changelog" in worker.log_text(), 30), \
            worker.log_text()[-3000:]
        edit_at = datetime.now(UTC)
        produce(run, run.events_topic, [_edit(c, edit_at) for c in names["B"]])
        produce(run, run.events_topic, [e for c in names["C"] for e in _call(c, edit_at - timedelta(seconds=4),
                                                                                tickets[c])])
        finals = {**a_finals, **{c: 8 for c in names["B"]}, **{c: 7 for c in names["C"]}}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, finals, tickets), 60), worker.log_text()[-3000:]
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert _ready(port)
        time.sleep(2.0)  # anything still on its way would land now
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    _assert_end_state(fresh_emulators, finals, tickets, edited=set(names["B"]))
    assert [] == _dead_letters(run)


def test_redis_restarted_empty_and_the_sync_worker_sigkilled_after_it_writes_no_crm_record_twice(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    """The stages in two processes. redis-server restarts empty, and the sync worker is SIGKILLed right
    after: neither Redis nor any process remembers a Task Id, a ticket or a synced version. The fold worker
    restores the logs; the new sync worker starts a new sync epoch and looks up before every write."""
    run = sync_settings(settings, fresh_emulators, edit_window_seconds=WINDOW_S, zendesk_linger_seconds=0.5,
                        store_retry_max_seconds=1.0)
    names = {g: [f"conv-kill-{g}-{n:02d}" for n in range(10)] for g in "ABC"}
    tickets = {c: seed_ticket(fresh_emulators, f"Order {c}") for group in names.values() for c in group}
    now = datetime.now(UTC)
    produce(run, run.events_topic, [e for n, c in enumerate(names["A"])
                                    for e in _call(c, now - timedelta(seconds=60 + n), tickets[c])])
    produce(run, run.events_topic, [e for c in names["B"] for e in _call(c, now - timedelta(seconds=4), tickets[c])])
    fold = WorkerProcess("fold", run, tmp_path / "fold.log", **FAST_GROUP)
    instance = {"ILOG_GROUP_INSTANCE_ID": "sync-redis-kill", **FAST_GROUP}
    sync = WorkerProcess("sync", run, tmp_path / "sync-0.log", **instance)
    try:
        a_finals = {c: 7 for c in names["A"]}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, a_finals, tickets), 40), sync.log_text()[-3000:]
        assert wait_for(lambda: all(tasks_by_call(fresh_emulators).get(c) for c in names["B"]), 20)
        time.sleep(1.5)  # offsets of both groups committed (auto-commit every second)
        _stack("redis-restart")
        edit_at = datetime.now(UTC)
        produce(run, run.events_topic, [_edit(c, edit_at) for c in names["B"]])
        time.sleep(0.5)
        sync.kill()
        sync = WorkerProcess("sync", run, tmp_path / "sync-1.log", **instance)
        produce(run, run.events_topic, [e for c in names["C"] for e in _call(c, edit_at - timedelta(seconds=4),
                                                                                tickets[c])])
        finals = {**a_finals, **{c: 8 for c in names["B"]}, **{c: 7 for c in names["C"]}}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, finals, tickets), 60), sync.log_text()[-3000:]
        assert fold.proc.poll() is None and sync.proc.poll() is None
        assert "state restored from the changelog" in fold.log_text()
        time.sleep(2.0)  # anything still on its way would land now
    finally:
        assert sync.stop() == 0, sync.log_text()[-3000:]
        assert fold.stop() == 0, fold.log_text()[-3000:]
    _assert_end_state(fresh_emulators, finals, tickets, edited=set(names["B"]))
    assert [] == _dead_letters(run)


def _paused_gauge(port: int, target: str) -> float | None:
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    found = re.search(rf'^ilog_target_paused{{target="{target}"}} ([0-9.]+)$', text, re.MULTILINE)
    return None if found is None else float(found.group(1))


def _finals_without_salesforce(emus: Emulators, finals: dict[str, int], tickets: dict[str, int]) -> bool:
    by_id = {t["id"]: t for t in emus.zendesk.state()["tickets"]}
    removed = {d["interaction_id"] for d in emus.webhook.state()["deliveries"]
               if d["status"] == 200 and d["body"]["event"] == "interactionRemoved"}
    return set(finals) <= removed and all(
        any(b.endswith(marker(c, v)) for b in worker_comments(by_id[tickets[c]])) for c, v in finals.items())


def test_salesforce_refusing_logins_mid_run_pauses_salesforce_only_and_it_resumes_without_dead_letters(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    """The worker holds a session; then the org expires it and refuses every login (`invalid_grant`, a
    rotated password) for 25 s. Salesforce pauses (gauge, readiness body, no dead letter, no Task), Zendesk
    and the webhook sync the calls that arrive meanwhile; when logins work again Salesforce catches up."""
    run = sync_settings(settings, fresh_emulators, zendesk_linger_seconds=0.5,
                        target_pause_base_seconds=1.0, target_pause_ceiling_seconds=4.0)
    names = {g: [f"conv-grant-{g}-{n:02d}" for n in range(10)] for g in "AB"}
    tickets = {c: seed_ticket(fresh_emulators, f"Order {c}") for group in names.values() for c in group}
    past = datetime.now(UTC) - timedelta(seconds=60)
    produce(run, run.events_topic, [e for n, c in enumerate(names["A"]) for e in _call(c, past + timedelta(seconds=n),
                                                                                       tickets[c])])
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **FAST_GROUP)
    try:
        port = _http_port(worker)
        a_finals = {c: 7 for c in names["A"]}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, a_finals, tickets), 40), worker.log_text()[-3000:]
        fresh_emulators.salesforce.inject("invalid_grant", for_s=25, path="/services/oauth2/token")
        fresh_emulators.salesforce.expire_sessions()
        refused_from = time.monotonic()
        produce(run, run.events_topic, [e for n, c in enumerate(names["B"])
                                        for e in _call(c, past + timedelta(seconds=20 + n), tickets[c])])
        b_finals = {c: 7 for c in names["B"]}
        assert wait_for(lambda: _paused_gauge(port, "salesforce") == 1.0, 20), worker.log_text()[-3000:]
        assert wait_for(lambda: _finals_without_salesforce(fresh_emulators, b_finals, tickets), 20), \
            worker.log_text()[-3000:]
        readiness = requests.get(f"http://127.0.0.1:{port}/readyz", timeout=5)
        assert 200 == readiness.status_code and "LOGIN_INVALID_GRANT" in readiness.text, readiness.text
        assert time.monotonic() - refused_from < 25  # the others went on while Salesforce refused us
        assert not any(tasks_by_call(fresh_emulators).get(c) for c in names["B"])
        assert 0.0 == _paused_gauge(port, "zendesk") == _paused_gauge(port, "webhook")
        finals = {**a_finals, **b_finals}
        assert wait_for(lambda: _final_everywhere(fresh_emulators, finals, tickets), 40), worker.log_text()[-3000:]
        assert wait_for(lambda: _paused_gauge(port, "salesforce") == 0.0, 10)
        time.sleep(2.0)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    _assert_end_state(fresh_emulators, finals, tickets, edited=set())
    assert [] == _dead_letters(run)
    text = worker.log_text()
    assert "dead-lettered" not in text
    assert '"code": "LOGIN_INVALID_GRANT"' in text and '"target resumed"' in text


@pytest.mark.parametrize("away", ["stopped", "hung"])
def test_broker_away_for_20_s_while_windows_are_open_every_edit_lands_once_in_every_crm(
    away: str, settings: Settings, fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    """Agents keep working while the broker is away: calls start, hang up and get their notes edited inside
    the window; the edits wait in the platform's producer. After the broker returns every log is final with
    its edit, each interaction has one Task, one ticket (created for it) with one comment, one final webhook.

    Away: stopped (its connections refused at once), or hung (SIGSTOP: its connections stay open and nothing
    answers, no client sees an error for a while; only silence tells the stage its clocks must stop)."""
    leave, come_back = ("kafka-stop", "kafka-start") if away == "stopped" else ("kafka-pause", "kafka-resume")
    run = sync_settings(settings, fresh_emulators, edit_window_seconds=4.0, zendesk_linger_seconds=0.5,
                        broker_settle_seconds=5.0, store_retry_max_seconds=1.0)
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **FAST_GROUP)
    producer = LiveProducer(run)
    try:
        port = _http_port(worker)
        assert wait_for(lambda: worker.log_text().count("partitions assigned") >= 2 and _ready(port), 30), \
            worker.log_text()[-3000:]
        producer.start()
        time.sleep(4)
        _stack(leave)
        try:
            assert wait_for(lambda: not _ready(port), 15)
            time.sleep(20)
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
        finally:
            _stack(come_back)
        assert wait_for(lambda: _ready(port), 60), _readiness_body(port)
        time.sleep(3)
        producer.stop()
        offline = offline_fold(producer.sent, tmp_path, run)
        ids = set(offline)

        def final_everywhere() -> bool:
            records = crm_records(fresh_emulators, ids)
            removed = {d["interaction_id"] for d in fresh_emulators.webhook.state()["deliveries"]
                       if d["status"] == 200 and d["body"]["event"] == "interactionRemoved"}
            return ids <= removed and all(
                any(t["Status"] == "Completed" for t in records["tasks"][i]) and records["comments"][i]
                for i in ids)

        assert wait_for(final_everywhere, 90), worker.log_text()[-3000:]
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        time.sleep(2.0)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    records = crm_records(fresh_emulators, ids)
    versions = {i: e["version"] + 1 for i, e in offline.items()}
    assert {i: [(e["notes"], "Completed")] for i, e in offline.items()} == {
        i: [(str(t["Description"]).split("\n")[0], t["Status"]) for t in records["tasks"][i]] for i in ids}
    assert {i: 1 for i in ids} == {i: len(records["tickets"][i]) for i in ids}
    assert {i: [(records["tickets"][i][0], v)] for i, v in versions.items()} == records["comments"]
    assert [] == webhook_ids_processed_twice(fresh_emulators)
    finals = {d["interaction_id"]: d["body"]["log"]["version"] for d in fresh_emulators.webhook.state()["deliveries"]
              if d["status"] == 200 and d["body"]["event"] == "interactionRemoved"}
    assert versions == {i: finals[i] for i in ids}
    assert [] == _dead_letters(run)
