"""Neither note text nor any secret ever appears in the worker's log output of a full run."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    CASE_ID,
    CONTACT_ID,
    connected,
    event,
    seed_ticket,
    sf_ref,
    sync_settings,
    tasks_by_call,
    ticket,
    wait_assigned,
    wait_for,
    worker_comments,
    zd_ticket,
)
from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings

NOTE = "Customer disclosed card ending 4242 and asked for a refund"
WRAPUP_NOTE = "Refund approved after long discussion"


def test_full_run_logs_no_note_text_and_no_secret(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    configured = sync_settings(settings, fresh_emulators, log_level="DEBUG")
    ticket_id = seed_ticket(fresh_emulators, "Refund request")
    now = datetime.now(UTC)
    conv = "conv-leak"
    history: list[dict[str, Any] | bytes] = [
        event("interaction.connected", conv, 1, now, connected(queue="Billing", name=sf_ref("Contact", CONTACT_ID))),
        event("record.viewed", conv, 2, now + timedelta(milliseconds=200), {"record": sf_ref("Case", CASE_ID)}),
        event("log.updated", conv, 3, now + timedelta(milliseconds=400),
              {"notes": NOTE, "related_to": zd_ticket(ticket_id)}),
        event("interaction.held", conv, 4, now + timedelta(milliseconds=500)),
        event("interaction.resumed", conv, 5, now + timedelta(milliseconds=700)),
        event("interaction.disconnected", conv, 6, now + timedelta(seconds=1)),
        event("interaction.wrapup", conv, 7, now + timedelta(seconds=1.5), {"code": "Resolved", "note": WRAPUP_NOTE}),
        event("log.updated", conv, 8, now + timedelta(seconds=60), {"notes": "late " + NOTE}),
        b'{"specversion": "1.0", "id": "broken", "type": "log.updated", "data": {"notes": "' + NOTE.encode(),
    ]
    worker = WorkerProcess("all", configured, tmp_path / "worker.log")
    try:
        wait_assigned(worker, stages=2)
        produce(configured, configured.events_topic, history)
        synced = wait_for(
            lambda: any(t.get("Status") == "Completed" for t in tasks_by_call(fresh_emulators).get(conv, []))
            and bool(worker_comments(ticket(fresh_emulators, ticket_id))),
            timeout_s=60,
        )
        assert synced, worker.log_text()[-3000:]
    finally:
        worker.stop()
    output = worker.log_text()
    assert "rejected" in output and "window closed" in output  # the run did log about the events
    secrets = [fresh_emulators.env[k] for k in (
        "ILOG_SALESFORCE_CLIENT_SECRET", "ILOG_ZENDESK_TOKEN", "ILOG_WEBHOOK_SECRET")]
    for forbidden in [NOTE, "card ending 4242", WRAPUP_NOTE, *secrets]:
        assert forbidden not in output, forbidden
