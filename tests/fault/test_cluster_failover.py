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
from pathlib import Path

from tests.conftest import CLUSTER_STACK_DIR, STACK
from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import wait_for
from tests.fault.cluster_calls import half_synced
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.cluster import slot_of

CALLS = 40
emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators


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
    with half_synced(settings, redis_cluster_env, fresh_emulators, tmp_path, "failover", CALLS) as run:
        # a master holding calls' states, not the node ILOG_REDIS_URL names (a new client starts there)
        url_port = int(run.settings.redis_url.rsplit(":", 1)[1].split("/")[0])
        state_key = next(k for k in (keys.state_key(run.settings.key_prefix, c) for c in run.calls)
                         if _master_port(run.settings, k) != url_port)
        killed = _master_port(run.settings, state_key)
        _kill(killed)
        run.produce_rest()
        assert wait_for(lambda: _served_by_another(run.settings, state_key, killed), 30)
        run.assert_whole(tmp_path, finalized_timeout_s=120, crm_timeout_s=60)
