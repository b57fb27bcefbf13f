"""One shard of the Redis Cluster loses its data while the others keep theirs.

A master without persistence restarts empty (SIGKILL, started again at once with its cluster
config, before its replica could take over): it keeps its slots, its replica resyncs from it and is
emptied too. The shard chosen holds neither the sync epoch nor the node the worker's URL names, so
the epoch (on another shard) survives: only the per-slot state marks and what the interactions'
own hashes say can tell the stages what was lost.

The fold and sync stages run as processes against the 6-node cluster of the tests and the CRM
emulators; every interaction begins after the sync epoch (the margin is 1 s), so a missing sync
state would be trusted as "never synced" if nothing said otherwise. Before the loss, one group of
calls is finalized (a Task completed, one Zendesk comment each) and another group is open (a Task
each); after it, the open calls end and every finalized call gets a late edit. Every log ends as
`ilog fold` of the same events (the late edits rejected, no log restarted from a partial state),
and each interaction has exactly one Task and one Zendesk comment.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import redis

from adapters.zendesk_render import marker
from tests.conftest import CLUSTER_STACK_DIR, STACK
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
    wait_assigned,
    wait_for,
    worker_comments,
    zd_ticket,
)
from tests.fault.test_fold_faults import _all_finalized, _assert_final_logs
from tests.support import WorkerProcess, offline_fold, produce
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.cluster import slot_of

CALLS = 45  # about 15 a shard
emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators


def _opening(call: str, at: datetime, ticket_id: int) -> list[dict[str, Any]]:
    return [
        event("interaction.connected", call, 1, at,
              connected(name=sf_ref("Contact", CONTACT_ID), related_to=zd_ticket(ticket_id))),
        event("interaction.held", call, 2, at + timedelta(milliseconds=100)),
        event("interaction.resumed", call, 3, at + timedelta(milliseconds=200)),
        event("log.updated", call, 4, at + timedelta(milliseconds=300), {"notes": f"Notes of {call}."}),
    ]


def _ending(call: str, at: datetime, first: int) -> list[dict[str, Any]]:
    return [
        event("interaction.disconnected", call, first, at),
        event("interaction.wrapup", call, first + 1, at + timedelta(milliseconds=100), {"code": "Resolved"}),
    ]


def _masters(settings: Settings, state_keys: list[str]) -> dict[str, int]:
    """The port of the master serving each key's slot."""
    client = bootstrap.redis_client(settings)
    try:
        nodes = client.nodes_manager  # type: ignore[union-attr]
        nodes.initialize()
        return {key: int(nodes.get_node_from_slot(slot_of(key)).port) for key in state_keys}
    finally:
        client.close()


def _replicas_of(master_port: int) -> list[int]:
    """The ports of the master's attached replicas (none after an earlier test killed its replica's master
    and the replica took over: the cluster of the tests is shared)."""
    client = redis.Redis(port=master_port)
    try:
        found = client.info("replication")
    finally:
        client.close()
    return [int(v["port"]) for k, v in found.items() if k.startswith("slave") and isinstance(v, dict)]


def _holds(port: int, key: str) -> bool:
    """Whether the node on `port` (a master, or a replica read in READONLY mode) holds `key`."""
    client = redis.Redis(port=port)
    try:
        client.execute_command("READONLY")  # type: ignore[no-untyped-call]
        return bool(client.exists(key))
    except redis.RedisError:
        return True  # not answering yet: not known to be empty
    finally:
        client.close()


def _set(settings: Settings, key: str) -> None:
    client = bootstrap.redis_client(settings)
    try:
        assert client.set(key, 1)
    finally:
        client.close()


def _restart_empty(port: int) -> None:
    done = subprocess.run([str(STACK), "redis-restart-empty", str(port)], capture_output=True, text=True,
                          check=False, env={**os.environ, "ILOG_STACK_DIR": str(CLUSTER_STACK_DIR)})
    assert done.returncode == 0, done.stderr


def _synced(settings: Settings, calls: list[str], target: str) -> bool:
    """Every call's hash holds its sync state for `target` (the Task Id or the comment's version)."""
    client = bootstrap.redis_client(settings)
    try:
        return all(client.hget(keys.state_key(settings.key_prefix, c), keys.sync_field(target)) for c in calls)
    finally:
        client.close()


def test_a_shard_restarted_empty_beside_a_surviving_sync_epoch_loses_no_log_and_writes_no_record_twice(
    settings: Settings, redis_cluster_env: dict[str, str], fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    on_cluster = settings.model_copy(update={"redis_url": redis_cluster_env["ILOG_REDIS_URL"], "redis_cluster": "true",
                                             "sync_epoch_margin_seconds": 1.0})
    run = sync_settings(on_cluster, fresh_emulators, ("salesforce", "zendesk"))
    calls = [f"conv-shard-{n:02d}" for n in range(CALLS)]
    done, still_open = calls[: CALLS // 3], calls[CALLS // 3:]
    tickets = {call: seed_ticket(fresh_emulators, f"Order {call}") for call in calls}
    # the lost shard: not the sync epoch's, not the URL's (a new client starts there); the most calls
    url_port = int(run.redis_url.rsplit(":", 1)[1].split("/")[0])
    epoch_key = keys.sync_epoch_key(run.key_prefix)
    masters = _masters(run, [epoch_key, *(keys.state_key(run.key_prefix, c) for c in calls)])
    spared = {masters[epoch_key], url_port}
    candidates = {port for port in masters.values() if port not in spared}
    assert candidates, masters
    lost = max(candidates, key=lambda port: list(masters.values()).count(port))
    on_lost = [c for c in calls if masters[keys.state_key(run.key_prefix, c)] == lost]
    assert {c for c in on_lost if c in done} and {c for c in on_lost if c in still_open}, on_lost
    fold = WorkerProcess("fold", run, tmp_path / "fold.log", **FAST_GROUP)
    sync = WorkerProcess("sync", run, tmp_path / "sync.log", **FAST_GROUP)
    events: list[dict[str, Any]] = []
    try:
        wait_assigned(fold, 1)
        wait_assigned(sync, 1)
        assert wait_for(lambda: _epoch_started(run), 30)
        begun = datetime.now(UTC) + timedelta(seconds=1.5)  # every call begins after epoch + margin
        first = [e for c in calls for e in _opening(c, begun, tickets[c])]
        first += [e for c in done for e in _ending(c, begun + timedelta(seconds=1), 5)]
        produce(run, run.events_topic, first)
        events += first
        # before the loss: the finished calls commented, every call's Task Id stored
        assert wait_for(lambda: all(worker_comments(ticket(fresh_emulators, tickets[c])) for c in done), 90), \
            sync.log_text()[-3000:]
        assert wait_for(lambda: _synced(run, calls, "salesforce") and _synced(run, done, "zendesk"), 60)
        # a key of the lost shard that nothing else writes (the fold stage soon restores the states)
        probe = f"{run.key_prefix}:probe:{{{on_lost[0]}}}"
        _set(run, probe)
        replicas = _replicas_of(lost)
        assert wait_for(lambda: all(_holds(port, probe) for port in replicas), 10)
        _restart_empty(lost)
        # the shard's data is gone on its master and (after the resync) on its replica; it still serves its slots
        assert wait_for(lambda: not any(_holds(port, probe) for port in [lost, *replicas]), 30)
        assert {lost} == set(_masters(run, [probe]).values())
        later = datetime.now(UTC)
        second = [event("log.updated", c, 5, later, {"notes": f"More notes of {c}."}) for c in still_open]
        second += [e for c in still_open for e in _ending(c, later + timedelta(milliseconds=500), 6)]
        second += [event("log.updated", c, 7, later, {"notes": "Too late."}) for c in done]  # window closed
        produce(run, run.events_topic, second)
        events += second
        offline = offline_fold(events, tmp_path, run)
        messages = _all_finalized(run, offline, timeout_s=120)
        _assert_final_logs(messages, offline)
        assert wait_for(lambda: all(worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls), 60)
        wait_for(lambda: all(t[-1]["Status"] == "Completed" for t in tasks_by_call(fresh_emulators).values()), 30)
        found = tasks_by_call(fresh_emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        assert {c: "Completed" for c in calls} == {c: found[c][0]["Status"] for c in calls}
        comments = {c: worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls}
        assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
        assert all(comments[c][0].endswith(marker(c, offline[c]["version"] + 1)) for c in calls)
        assert (None, None) == (fold.proc.poll(), sync.proc.poll())
    finally:
        assert sync.stop() == 0, sync.log_text()[-3000:]
        assert fold.stop() == 0, fold.log_text()[-3000:]


def _epoch_started(settings: Settings) -> bool:
    client = bootstrap.redis_client(settings)
    try:
        return bool(client.exists(keys.sync_epoch_key(settings.key_prefix)))
    finally:
        client.close()
