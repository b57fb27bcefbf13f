"""Backfill of a range that cuts interactions, after their sync state expired: the CRMs keep what they hold.

`ilog worker all` (real Kafka and Redis) against the emulators; `ilog replay` as a process. Every
interaction's history is produced in two halves, and the range's end falls between them: `--from` after
the first halves, or `--to` before the second. By then the sync state is gone (retention).

Emitted, such a partial log would overwrite the closed Task found by the look-up with less (customer, Name
and Related to gone), and without its Related-to ticket Zendesk would get a new ticket for the requester
with a second comment. The replay reads a lead-in before the range and emits only the interactions first
seen in it; and
after --to a lead-out, folding the later events of the range's interactions before their windows close.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

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
    zd_ticket,
)
from tests.e2e.test_lookup_replay_e2e import crm_records, delete_states, webhook_ids_processed_twice
from tests.e2e.test_replay_e2e import _ilog
from tests.support import WorkerProcess, produce
from worker.dev.demo import wait_settled
from worker.runtime.settings import Settings

emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators

CALLS = 12


def _halves(call: str, at: datetime, ticket_id: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(connect, hold, resume), (notes, disconnect, wrap-up) of one call."""
    first = [
        event("interaction.connected", call, 1, at,
              connected(name=sf_ref("Contact", CONTACT_ID), related_to=zd_ticket(ticket_id))),
        event("interaction.held", call, 2, at + timedelta(seconds=10)),
        event("interaction.resumed", call, 3, at + timedelta(seconds=20)),
    ]
    second = [
        event("log.updated", call, 4, at + timedelta(seconds=25), {"notes": f"Notes of {call}."}),
        event("interaction.disconnected", call, 5, at + timedelta(seconds=40)),
        event("interaction.wrapup", call, 6, at + timedelta(seconds=41), {"code": "Resolved"}),
    ]
    return first, second


@pytest.mark.parametrize("cut_end", ["from", "to"])
def test_a_backfill_whose_range_cuts_interactions_whose_sync_state_expired_changes_no_crm_record(
    settings: Settings, fresh_emulators: Emulators, redis_client: Any, tmp_path: Path, cut_end: str,
) -> None:
    run = sync_settings(settings, fresh_emulators, edit_window_seconds=5.0, zendesk_linger_seconds=0.5)
    calls = [f"conv-cut-{n:02d}" for n in range(CALLS)]
    tickets = {c: seed_ticket(fresh_emulators, f"Order {c}") for c in calls}
    t0 = datetime.now(UTC) - timedelta(minutes=10)
    halves = {c: _halves(c, t0 + timedelta(seconds=n), tickets[c]) for n, c in enumerate(calls)}
    begin = datetime.now(UTC) - timedelta(seconds=1)
    produce(run, run.events_topic, [e for c in calls for e in halves[c][0]])
    time.sleep(1.5)
    cut = datetime.now(UTC)
    time.sleep(1.5)
    produce(run, run.events_topic, [e for c in calls for e in halves[c][1]])
    ids = set(calls)
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **FAST_GROUP)
    try:
        assert wait_settled(run, sorted(ids), timeout_s=60), worker.log_text()[-3000:]
        time.sleep(2.0)
        before = crm_records(fresh_emulators, ids)
        assert all(len(t) == 1 and t[0]["Status"] == "Completed" and t[0]["WhoId"] == CONTACT_ID
                   for t in before["tasks"].values()), before["tasks"]
        assert {c: [(tickets[c], 7)] for c in calls} == before["comments"]
        assert 0 == delete_states(redis_client, run, ids)  # the sync state expired (retention)
        cut_range = ["--from", cut.isoformat()] if cut_end == "from" else [
            "--from", begin.isoformat(), "--to", cut.isoformat()]
        result = _ilog(run, "replay", *cut_range, "--group", "cut-backfill")
        assert 0 == result.returncode, result.stderr[-3000:]
        assert 0 == json.loads(result.stdout.strip().splitlines()[-1])["remaining_lag"]
        replayed = run.model_copy(update={"key_prefix": f"{run.key_prefix}-replay-cut-backfill"})
        assert wait_settled(replayed, sorted(ids), timeout_s=60), worker.log_text()[-3000:]
        time.sleep(2.0)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    after = crm_records(fresh_emulators, ids)
    assert before["tasks"] == after["tasks"]
    assert before["comments"] == after["comments"]
    assert [] == webhook_ids_processed_twice(fresh_emulators)
