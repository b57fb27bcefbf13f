"""A missing sync state means "unknown": replays after the sync state is lost duplicate nothing.

`ilog worker all` (real Kafka and Redis) against the emulators with the real simple-salesforce and
zenpy clients over HTTP. The worker's sync epoch is an hour old (a worker that has been running),
so the first sync of these young interactions creates without looking (`worker.sync.epoch`). Then
the sync state is lost — the first time the Redis hash of every interaction is deleted, as
retention expiry does; the second time Redis is flushed (FLUSHALL, as a restart without
persistence loses it), the fold stage restores its logs from the changelog, the sync epoch starts
again — and the events topic is replayed (`ilog replay`, each time into a group and key prefix of its own,
snapshots to the live upserts topic the running worker syncs): every absence is unknown again.

Deleting single `s:<target>` fields while the hash and the epoch stay is outside the contract:
Redis loses whole keys (expiry, eviction, flush, restart, failover), never one field of a hash.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.e2e.conftest import Emulators
from tests.e2e.test_replay_e2e import _ilog, _settings, _stream
from tests.support import WorkerProcess, produce
from worker.dev.demo import seed_zendesk_tickets, wait_settled
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.sync_state import RedisSyncStateStore, parse_epoch

_MARKER_RE = re.compile(r"^\[interaction (.+) · log v(\d+)\]$", re.MULTILINE)
_MOVING = ("LastModifiedDate", "SystemModstamp")  # a look-up finds the Task and updates it again
TARGETS = ("salesforce", "zendesk", "webhook")


def crm_records(emulators: Emulators, ids: set[str]) -> dict[str, Any]:
    """Per interaction: its Tasks (minus the modification stamps), its tickets by external_id, the
    worker comments naming it (ticket id, version)."""
    tasks: dict[str, list[dict[str, Any]]] = {i: [] for i in ids}
    for task in emulators.salesforce.state()["tasks"]:
        if task.get("CallObject") in ids:
            tasks[task["CallObject"]].append({k: v for k, v in task.items() if k not in _MOVING})
    tickets: dict[str, list[int]] = {i: [] for i in ids}
    comments: dict[str, list[tuple[int, int]]] = {i: [] for i in ids}
    for ticket in emulators.zendesk.state()["tickets"]:
        if ticket.get("external_id") in ids:
            tickets[ticket["external_id"]].append(ticket["id"])
        for comment in ticket["comments"]:
            for interaction_id, version in _MARKER_RE.findall(str(comment["body"])):
                if interaction_id in ids:
                    comments[interaction_id].append((ticket["id"], int(version)))
    return {"tasks": tasks, "tickets": tickets, "comments": comments}


def webhook_ids_processed_twice(emulators: Emulators) -> list[str]:
    """The receiver processes a webhook-id once; a redelivery is answered as a duplicate."""
    processed = [d["headers"]["webhook-id"] for d in emulators.webhook.state()["deliveries"]
                 if d["status"] == 200 and not d["duplicate"]]
    return sorted({i for i in processed if processed.count(i) > 1})


def delete_states(client: redis.Redis, settings: Settings, ids: set[str]) -> int:
    """DEL every interaction's hash (log and sync state, as expiry does); how many are left (0)."""
    for interaction_id in sorted(ids):
        client.delete(keys.state_key(settings.key_prefix, interaction_id))
    return sum(int(client.exists(keys.state_key(settings.key_prefix, i))) for i in sorted(ids))


def look_ups(emulators: Emulators) -> dict[str, int]:
    """Requests that ask a target what exists: SOQL queries, Zendesk searches and comment reads."""
    return {
        "salesforce": sum(1 for r in emulators.salesforce.requests() if "/query" in r["path"]),
        "zendesk": sum(1 for r in emulators.zendesk.requests()
                       if r["method"] == "GET" and ("search" in r["path"] or "comments" in r["path"])),
    }


@pytest.fixture
def synced(
    settings: Settings, fresh_emulators: Emulators, redis_client: redis.Redis, tmp_path: Path
) -> Iterator[tuple[Settings, WorkerProcess, set[str]]]:
    run = _settings(settings)
    stream = _stream(40, seed=43)  # from ten minutes ago
    seed_zendesk_tickets(fresh_emulators.zendesk.base_url, list(stream))
    epoch_ms = int(time.time() * 1000) - 3_600_000  # a worker that has been running for an hour
    assert epoch_ms == RedisSyncStateStore(redis_client, run.key_prefix, 60).start_epoch(epoch_ms)
    produce(run, run.events_topic, stream)
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **fresh_emulators.env)
    ids = {e["subject"] for e in stream}
    try:
        assert wait_settled(run, sorted(ids), timeout_s=120), worker.log_text()[-3000:]
        yield run, worker, ids
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_with_the_sync_state_deleted_two_replays_leave_one_task_ticket_and_comment_per_interaction(
    synced: tuple[Settings, WorkerProcess, set[str]], fresh_emulators: Emulators, redis_client: redis.Redis,
) -> None:
    run, worker, ids = synced
    fields = [keys.sync_field(target) for target in TARGETS]
    stored = [redis_client.hmget(keys.state_key(run.key_prefix, i), fields) for i in sorted(ids)]
    assert all(None not in row for row in stored)  # every target synced every interaction first
    before = crm_records(fresh_emulators, ids)
    # Every interaction: one Completed Task, one worker comment (on its linked ticket or on the one
    # created for it with external_id = interaction id), and the webhook.
    assert all(len(tasks) == 1 and tasks[0]["Status"] == "Completed" for tasks in before["tasks"].values())
    assert all(len(found) == 1 for found in before["comments"].values()), before["comments"]
    assert all(len(found) <= 1 for found in before["tickets"].values())
    assert any(before["tickets"].values()) and not all(before["tickets"].values())  # both kinds present
    # The first sync trusted every absence: created and posted without a single look-up.
    assert {"salesforce": 0, "zendesk": 0} == look_ups(fresh_emulators)

    epoch_key = keys.sync_epoch_key(run.key_prefix)
    for attempt in (1, 2):
        if attempt == 1:  # as retention expiry does: the hashes go, the sync epoch stays
            assert 0 == delete_states(redis_client, run, ids)
        else:  # Redis lost everything: the fold stage restores its logs (field v) from the
            # changelog, the sync states stay lost; only the new sync epoch says "unknown"
            assert redis_client.flushall()
        result = _ilog(run, "replay", "--from", "earliest", "--group", f"e2e-lost-state-{attempt}")
        assert 0 == result.returncode, result.stderr[-3000:]
        assert 0 == json.loads(result.stdout.strip().splitlines()[-1])["remaining_lag"]
        # The live hashes are gone: the replay's own key prefix holds the closed logs.
        replayed = run.model_copy(update={"key_prefix": f"{run.key_prefix}-replay-e2e-lost-state-{attempt}"})
        assert wait_settled(replayed, sorted(ids), timeout_s=180), worker.log_text()[-3000:]
        after = crm_records(fresh_emulators, ids)
        # The same records, with the final values: nothing created or posted again.
        assert before == after, f"replay {attempt} without sync state changed the CRM records"
    assert "state restored from the changelog" in worker.log_text()
    restored = [redis_client.hexists(keys.state_key(run.key_prefix, i), keys.FIELD_VERSION) for i in sorted(ids)]
    # Logs are back without the targets' states: for those, the new sync epoch alone said "unknown".
    assert sum(restored) >= len(ids) // 2, restored
    counted = look_ups(fresh_emulators)
    assert counted["salesforce"] > 0 and counted["zendesk"] > 0, counted  # the replays looked first
    assert int(time.time() * 1000) - 600_000 < (parse_epoch(redis_client.get(epoch_key), None) or 0)  # a new one
    assert [] == webhook_ids_processed_twice(fresh_emulators)
    assert "dead-lettered" not in worker.log_text()
    assert [list(TARGETS)] == targets_logged_at_start(worker.log_text())


def targets_logged_at_start(log_text: str) -> list[list[str]]:
    lines = [json.loads(line) for line in log_text.splitlines() if line.startswith("{")]
    return [line["targets"] for line in lines if line.get("event") == "sync targets on"]
