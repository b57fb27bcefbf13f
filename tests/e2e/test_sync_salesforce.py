"""`ilog worker all` (fold + sync) against real Kafka and Redis and the Salesforce emulator."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    ACCOUNT_ID,
    CASE_ID,
    CONTACT_ID,
    connected,
    event,
    sf_ref,
    sync_settings,
    task_writes,
    tasks_by_call,
    wait_assigned,
    wait_for,
)
from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings


def _sleep_until(moment: datetime) -> None:
    time.sleep(max(0.0, (moment - datetime.now(UTC)).total_seconds()))


def test_a_voice_call_is_one_task_created_at_connect_updated_per_state_change_and_finalized(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("salesforce",))
    call = "conv-voice-1"
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        start = datetime.now(UTC) - timedelta(seconds=20)
        disconnect_at = start + timedelta(seconds=32)
        produce(run, run.events_topic, [
            event("interaction.connected", call, 1, start, connected(name=sf_ref("Contact", CONTACT_ID))),
        ])
        assert wait_for(lambda: task_writes(fresh_emulators) == ["POST"], 30), worker.log_text()[-3000:]
        produce(run, run.events_topic, [
            event("record.viewed", call, 2, start + timedelta(seconds=2), {"record": sf_ref("Account", ACCOUNT_ID)}),
            event("record.viewed", call, 3, start + timedelta(seconds=4), {"record": sf_ref("Case", CASE_ID)}),
            event("log.updated", call, 4, start + timedelta(seconds=6), {"notes": "Asked for a refund."}),
            event("interaction.held", call, 5, start + timedelta(seconds=10)),
        ])
        assert wait_for(lambda: task_writes(fresh_emulators) == ["POST", "PATCH"], 20)
        produce(run, run.events_topic, [event("interaction.resumed", call, 6, start + timedelta(seconds=20))])
        assert wait_for(lambda: len(task_writes(fresh_emulators)) == 3, 20)
        produce(run, run.events_topic, [
            event("log.updated", call, 7, start + timedelta(seconds=25), {"notes": "Refund issued."}),
        ])
        _sleep_until(disconnect_at)
        produce(run, run.events_topic, [
            event("interaction.disconnected", call, 8, disconnect_at, {"reason": "customer"}),
            event("interaction.wrapup", call, 9, disconnect_at + timedelta(seconds=1), {"code": "Resolved"}),
        ])
        assert wait_for(lambda: any(t["Status"] == "Completed" for t in tasks_by_call(fresh_emulators).get(call, [])),
                        30), worker.log_text()[-3000:]
        time.sleep(1.0)  # nothing more may arrive
        assert ["POST", "PATCH", "PATCH", "PATCH", "PATCH"] == task_writes(fresh_emulators)
        [task] = tasks_by_call(fresh_emulators)[call]
        expected = {
            "Subject": "Inbound call from Ada Example", "WhoId": CONTACT_ID, "WhatId": CASE_ID,
            "CallType": "Inbound", "CallDurationInSeconds": 32, "CallDisposition": "Resolved",
            "Status": "Completed", "TaskSubtype": "Call", "CallObject": call,
        }
        assert expected == {key: task.get(key) for key in expected}
        assert task["Description"].startswith("Refund issued.")
        assert "Asked for a refund." not in task["Description"]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_chat_and_an_email_are_each_logged_as_one_completed_task(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("salesforce",))
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    chat, mail = "conv-chat-1", "conv-mail-1"
    produce(run, run.events_topic, [
        event("interaction.connected", chat, 1, t0, connected("chat", name=sf_ref("Contact", CONTACT_ID))),
        event("log.updated", chat, 2, t0 + timedelta(seconds=30), {"notes": "Password reset explained."}),
        event("interaction.disconnected", chat, 3, t0 + timedelta(seconds=90)),
        event("interaction.connected", mail, 1, t0, connected("email", "outbound", related_to=sf_ref("Case", CASE_ID))),
        event("log.updated", mail, 2, t0 + timedelta(seconds=5), {"subject": "Your refund"}),
        event("interaction.disconnected", mail, 3, t0 + timedelta(seconds=60)),
        event("interaction.wrapup", mail, 4, t0 + timedelta(seconds=61), {"code": "Answered"}),
    ])
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        def completed() -> bool:
            found = tasks_by_call(fresh_emulators)
            return all(any(t["Status"] == "Completed" for t in found.get(i, [])) for i in (chat, mail))

        assert wait_for(completed, 40), worker.log_text()[-3000:]
        found = tasks_by_call(fresh_emulators)
        [chat_task], [mail_task] = found[chat], found[mail]
        fields = ("Subject", "WhoId", "WhatId", "CallType", "CallDurationInSeconds", "TaskSubtype", "Status",
                  "CallDisposition")
        assert {
            "Subject": "Inbound chat from Ada Example", "WhoId": CONTACT_ID, "WhatId": None, "CallType": "Inbound",
            "CallDurationInSeconds": 90, "TaskSubtype": "Task", "Status": "Completed", "CallDisposition": None,
        } == {key: chat_task.get(key) for key in fields}
        assert {
            "Subject": "Your refund", "WhoId": None, "WhatId": CASE_ID, "CallType": "Outbound",
            "CallDurationInSeconds": 60, "TaskSubtype": "Email", "Status": "Completed",
            "CallDisposition": "Answered",
        } == {key: mail_task.get(key) for key in fields}
        assert chat_task["Description"].startswith("Password reset explained.")
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_call_whose_first_event_comes_before_its_connect_gets_its_task_at_the_connect_as_a_call(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    """Events can arrive out of order: an attribute or a viewed record before the connect creates the log,
    but the Task is created at the first connect (the seed: "when the interaction connects"), as a Call
    (TaskSubtype cannot be changed once the Task exists)."""
    run = sync_settings(settings, fresh_emulators, ("salesforce",))
    call = "conv-early-attributes"
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        start = datetime.now(UTC) - timedelta(seconds=30)
        produce(run, run.events_topic, [
            event("interaction.attributes", call, 1, start, {"attributes": {"tier": "gold"}}),
        ])
        time.sleep(3.0)  # the sync stage has had the snapshot of the attributes alone
        produce(run, run.events_topic, [
            event("interaction.connected", call, 2, start + timedelta(seconds=1), connected()),
        ])
        assert wait_for(lambda: bool(tasks_by_call(fresh_emulators).get(call)), 20), worker.log_text()[-3000:]
        produce(run, run.events_topic, [
            event("interaction.disconnected", call, 3, start + timedelta(seconds=20)),
        ])
        assert wait_for(lambda: [t["Status"] for t in tasks_by_call(fresh_emulators).get(call, [])] == ["Completed"],
                        30), worker.log_text()[-3000:]
        [task] = tasks_by_call(fresh_emulators)[call]
        assert ("Call", "Inbound", 19) == (task["TaskSubtype"], task["CallType"], task["CallDurationInSeconds"])
        assert "POST" == task_writes(fresh_emulators)[0]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
