"""`ilog worker all` against real Kafka and Redis and the Zendesk emulator: final logs only."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from adapters.zendesk_render import marker
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    connected,
    custom_values,
    event,
    seed_ticket,
    sync_settings,
    ticket,
    wait_assigned,
    wait_for,
    worker_comments,
    zd_ticket,
)
from tests.support import TopicReader, WorkerProcess, produce
from worker.runtime.settings import Settings

ATTRIBUTES = {"holds": 360002, "talk_minutes": 360003, "tier": 360004}


def _ticket_writes(emulators: Emulators, ticket_id: int) -> list[dict[str, object]]:
    return [e for e in emulators.zendesk.requests()
            if e["method"] == "PUT" and f"/tickets/{ticket_id}" in str(e["path"]) and e["fault"] is None]


def test_one_private_comment_lands_on_the_related_ticket_only_after_the_window_closes(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("zendesk",), zendesk_attribute_fields=ATTRIBUTES)
    ticket_id = seed_ticket(fresh_emulators, "Order 1")
    call = "conv-zd-comment"
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        disconnect_at = datetime.now(UTC)
        start = disconnect_at - timedelta(seconds=45)
        produce(run, run.events_topic, [
            event("interaction.connected", call, 1, start, connected(related_to=zd_ticket(ticket_id))),
            event("interaction.attributes", call, 2, start + timedelta(seconds=1),
                  {"attributes": {"holds": "one", "talk_minutes": "3.5", "tier": "gold"}}),
            event("log.updated", call, 3, start + timedelta(seconds=5), {"notes": "Order located."}),
            event("interaction.disconnected", call, 4, disconnect_at),
        ])
        deadline_s = (disconnect_at + timedelta(seconds=run.edit_window_seconds)).timestamp()
        time.sleep(max(0.0, deadline_s - 1.0 - time.time()))
        assert [] == worker_comments(ticket(fresh_emulators, ticket_id))
        assert [] == _ticket_writes(fresh_emulators, ticket_id)
        assert wait_for(lambda: bool(worker_comments(ticket(fresh_emulators, ticket_id))), 30), \
            worker.log_text()[-3000:]
        time.sleep(1.0)
        found = ticket(fresh_emulators, ticket_id)
        [comment] = [c for c in found["comments"] if "[interaction " in c["body"]]
        assert comment["public"] is False
        assert comment["body"].startswith("Order located.")
        assert comment["body"].endswith(marker(call, 5))  # four accepted events, then the final version
        [write] = _ticket_writes(fresh_emulators, ticket_id)
        assert float(str(write["time"])) >= deadline_s
        assert {360003: 3.5, 360004: "gold"} == custom_values(found)
        dropped = [json.loads(line) for line in worker.log_text().splitlines()
                   if "zendesk.attribute_dropped" in line]
        assert [("holds", 360002)] == [(d["attribute"], d["field_id"]) for d in dropped]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_field_mode_puts_the_log_in_the_field_and_writes_no_comment(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("zendesk",), zendesk_mode="field", zendesk_log_field_id=360001)
    ticket_id = seed_ticket(fresh_emulators, "Order 2")
    call = "conv-zd-field"
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    produce(run, run.events_topic, [
        event("interaction.connected", call, 1, t0, connected(related_to=zd_ticket(ticket_id))),
        event("log.updated", call, 2, t0 + timedelta(seconds=5), {"notes": "Billing address changed."}),
        event("interaction.disconnected", call, 3, t0 + timedelta(seconds=50)),
    ])
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        assert wait_for(lambda: 360001 in custom_values(ticket(fresh_emulators, ticket_id)), 40), \
            worker.log_text()[-3000:]
        time.sleep(1.0)
        found = ticket(fresh_emulators, ticket_id)
        assert [] == worker_comments(found)
        assert 1 == len(found["comments"])  # the seeded description only
        log_text = custom_values(found)[360001]
        assert log_text.startswith("Billing address changed.")
        assert log_text.endswith(marker(call, 4))
        assert 1 == len(_ticket_writes(fresh_emulators, ticket_id))
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_log_linked_to_a_closed_ticket_lands_on_one_follow_up_and_nothing_is_dead_lettered(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("zendesk",))
    fresh_emulators.zendesk.seed({"tickets": [{"subject": "Printer overheats", "description": "It overheats.",
                                               "status": "closed"}]})
    [closed_id] = [int(t["id"]) for t in fresh_emulators.zendesk.state()["tickets"]]
    call = "conv-zd-closed"
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    produce(run, run.events_topic, [
        event("interaction.connected", call, 1, t0, connected(related_to=zd_ticket(closed_id))),
        event("log.updated", call, 2, t0 + timedelta(seconds=5), {"notes": "Still overheats after the fix."}),
        event("interaction.disconnected", call, 3, t0 + timedelta(seconds=50)),
    ])
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    dead_letters = TopicReader(run, run.upserts_dlq_topic)
    try:
        def follow_ups() -> list[dict[str, object]]:
            return [t for t in fresh_emulators.zendesk.state()["tickets"] if t["via"]["source"]["rel"] == "follow_up"]

        assert wait_for(lambda: any(worker_comments(t) for t in follow_ups()), 40), worker.log_text()[-3000:]
        time.sleep(1.0)
        [follow_up] = follow_ups()
        [comment] = worker_comments(follow_up)
        assert comment.startswith("Still overheats after the fix.") and comment.endswith(marker(call, 4))
        closed = ticket(fresh_emulators, closed_id)
        assert ([], [follow_up["id"]]) == (worker_comments(closed), closed["followup_ids"])
        assert [] == dead_letters.read_until(lambda found: bool(found), 2.0)
    finally:
        dead_letters.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
