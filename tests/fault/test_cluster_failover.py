"""A Redis Cluster master SIGKILLed mid-stream: its replica takes over, the worker rides it out.

The fold and sync stages run as processes against the 6-node cluster of the tests (3 masters, 3
replicas, `cluster-node-timeout` 2 s) and the CRM emulators. Half the calls are produced, then the
master that holds the first call's state is killed while the stages work, then the other half.
Every log ends as `ilog fold` of the same events, each interaction has exactly one Task and one
Zendesk comment, and neither worker restarts.
"""

from __future__ import annotations

import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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

CALLS = 40
emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators


def _history(call: str, n: int, t0: datetime, ticket_id: int) -> list[dict[str, Any]]:
    at = t0 + timedelta(seconds=n)
    return [
        event("interaction.connected", call, 1, at,
              connected(name=sf_ref("Contact", CONTACT_ID), related_to=zd_ticket(ticket_id))),
        event("interaction.held", call, 2, at + timedelta(seconds=10)),
        event("interaction.resumed", call, 3, at + timedelta(seconds=20)),
        event("log.updated", call, 4, at + timedelta(seconds=25), {"notes": f"Notes of {call}."}),
        event("interaction.disconnected", call, 5, at + timedelta(seconds=40)),
        event("interaction.wrapup", call, 6, at + timedelta(seconds=41), {"code": "Resolved"}),
    ]


def _master_port(settings: Settings, key: str) -> int:
    client = bootstrap.redis_client(settings)
    try:
        client.nodes_manager.initialize()  # type: ignore[union-attr]
        return int(client.nodes_manager.get_node_from_slot(slot_of(key)).port)  # type: ignore[union-attr]
    finally:
        client.close()


def _kill(port: int) -> None:
    done = subprocess.run([str(STACK), "redis-kill", str(port)], capture_output=True, text=True, check=False,
                          env={**os.environ, "ILOG_STACK_DIR": str(CLUSTER_STACK_DIR)})
    assert done.returncode == 0, done.stderr


def _served_by_another(settings: Settings, key: str, port: int) -> bool:
    try:
        return _master_port(settings, key) != port
    except Exception:  # the cluster is still electing: not served yet
        return False


def test_a_master_killed_mid_stream_is_replaced_by_its_replica_and_every_log_and_crm_record_is_whole(
    settings: Settings, redis_cluster_env: dict[str, str], fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    on_cluster = settings.model_copy(update={"redis_url": redis_cluster_env["ILOG_REDIS_URL"], "redis_cluster": "true"})
    run = sync_settings(on_cluster, fresh_emulators, ("salesforce", "zendesk"))
    calls = [f"conv-failover-{n:02d}" for n in range(CALLS)]
    tickets = {call: seed_ticket(fresh_emulators, f"Order {call}") for call in calls}
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    events = [e for n, c in enumerate(calls) for e in _history(c, n, t0, tickets[c])]
    first, second = events[: len(events) // 2], events[len(events) // 2:]
    fold = WorkerProcess("fold", run, tmp_path / "fold.log", **FAST_GROUP)
    sync = WorkerProcess("sync", run, tmp_path / "sync.log", **FAST_GROUP)
    try:
        produce(run, run.events_topic, first)
        assert wait_for(lambda: len(tasks_by_call(fresh_emulators)) >= 5, 60), sync.log_text()[-3000:]
        # a master holding calls' states, not the node ILOG_REDIS_URL names (a new client starts there)
        url_port = int(run.redis_url.rsplit(":", 1)[1].split("/")[0])
        state_key = next(k for k in (keys.state_key(run.key_prefix, c) for c in calls)
                         if _master_port(run, k) != url_port)
        killed = _master_port(run, state_key)
        _kill(killed)
        produce(run, run.events_topic, second)
        assert wait_for(lambda: _served_by_another(run, state_key, killed), 30)
        offline = offline_fold(events, tmp_path, run)
        messages = _all_finalized(run, offline, timeout_s=120)
        _assert_final_logs(messages, offline)
        assert wait_for(lambda: all(worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls), 60)
        found = tasks_by_call(fresh_emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        assert {c: "Completed" for c in calls} == {c: found[c][0]["Status"] for c in calls}
        comments = {c: worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls}
        assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
        assert all(comments[c][0].endswith(marker(c, 7)) for c in calls)
        assert (None, None) == (fold.proc.poll(), sync.proc.poll())
    finally:
        assert sync.stop() == 0, sync.log_text()[-3000:]
        assert fold.stop() == 0, fold.log_text()[-3000:]
