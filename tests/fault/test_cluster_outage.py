"""The whole Redis Cluster goes away at once and comes back empty.

Every node is SIGKILLed and no node answers until the test has seen what it waits for; then each starts
again without its data and with its cluster config (the masters keep their slots; `deploy/local/stack
redis-cluster-kill` and `redis-cluster-start-empty`: the outage lasts as long as the test needs, however
slow the machine, rather than a fixed number of seconds).
While no node answers, redis-py's cluster client fails to refresh its slot map with an error that is not
a `RedisError`; the stages must wait it out like any Redis outage (DESIGN.md: they do not exit), then find
that the cluster lost everything — the logs, the state marks, the sync states, the sync epoch — and
rebuild from Kafka: the fold stage restores the logs from its changelog, the sync stage looks up what the
CRM holds before creating anything.

The fold and sync stages run as processes against the 6-node cluster of the tests and the CRM emulators.
Half the calls are produced and some synced before the outage, the other half after it. Every log ends as
`ilog fold` of the same events, each interaction has exactly one Task and one Zendesk comment, and neither
worker exits.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis
import requests
from redis.backoff import ConstantBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from tests.conftest import CLUSTER_STACK_DIR, STACK
from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import wait_for
from tests.fault.cluster_calls import half_synced
from tests.fault.test_fold_faults import _http_port, _ready
from tests.support import TopicReader, WorkerProcess, event, produce, snapshots_by_id
from worker.runtime.settings import Settings
from worker.store.cluster import unreachable_as_connection_errors

CALLS = 30
emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators


def _cluster(command: str) -> None:
    done = subprocess.run([str(STACK), command], capture_output=True, text=True, check=False,
                          env={**os.environ, "ILOG_STACK_DIR": str(CLUSTER_STACK_DIR)})
    assert done.returncode == 0, done.stderr


@contextmanager
def _cluster_down() -> Iterator[None]:
    """Every node SIGKILLed for the block; then each starts again, empty, and the cluster answers."""
    _cluster("redis-cluster-kill")
    try:
        yield
    finally:
        _cluster("redis-cluster-start-empty")


def test_a_cluster_no_node_answers_for_is_a_connection_error_to_its_client(
    redis_cluster_env: dict[str, str],
) -> None:
    """What the stores wait out is a `redis.ConnectionError`; redis-py raises a plain `RedisClusterException`."""
    def client() -> RedisCluster:
        return RedisCluster.from_url(redis_cluster_env["ILOG_REDIS_URL"], socket_timeout=2, socket_connect_timeout=1,
                                     retry=Retry(ConstantBackoff(0.05), retries=2))

    plain, wrapped = client(), client()
    unreachable_as_connection_errors(wrapped.nodes_manager)
    assert plain.set("{outage}probe", 1) and wrapped.get("{outage}probe") == b"1"
    try:
        with _cluster_down():
            assert wait_for(lambda: not _answers(redis_cluster_env), 10)
            with pytest.raises(redis.exceptions.RedisClusterException) as unwrapped:
                plain.get("{outage}probe")
            assert not isinstance(unwrapped.value, redis.RedisError)  # what escaped every handler before
            with pytest.raises(redis.ConnectionError, match="Redis Cluster cannot be connected"):
                wrapped.get("{outage}probe")
    finally:
        plain.close()
    try:
        assert wait_for(lambda: _get(wrapped) is None, 30)  # back, and empty
    finally:
        wrapped.close()


def _readiness(port: int) -> str:
    """The body of `/readyz` when it answers within 3 s, else ""."""
    try:
        return requests.get(f"http://127.0.0.1:{port}/readyz", timeout=3).text
    except requests.RequestException:
        return ""


def _answers(env: dict[str, str]) -> bool:
    probe = redis.Redis.from_url(env["ILOG_REDIS_URL"], socket_timeout=0.5, socket_connect_timeout=0.5)
    try:
        return bool(probe.ping())
    except redis.RedisError:
        return False
    finally:
        probe.close()


def _get(client: RedisCluster) -> object:
    try:
        return client.get("{outage}probe")
    except (redis.RedisError, redis.exceptions.RedisClusterException):
        return "unanswered"


def test_the_whole_cluster_down_then_back_empty_loses_no_log_and_writes_no_record_twice(
    settings: Settings, redis_cluster_env: dict[str, str], fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    with half_synced(settings, redis_cluster_env, fresh_emulators, tmp_path, "outage", CALLS) as run:
        port = _http_port(run.fold)
        with _cluster_down():  # the fold worker's readiness answers at once while no node answers, and says why
            assert wait_for(lambda: "redis unreachable" in _readiness(port), 15), run.fold.log_text()[-3000:]
        assert wait_for(lambda: _ready(port), 60), run.fold.log_text()[-3000:]
        run.produce_rest()
        run.assert_whole(tmp_path, finalized_timeout_s=150, crm_timeout_s=90)
        # the fold stage saw the state go and rebuilt it from its changelog
        assert "state restored from the changelog" in run.fold.log_text()


def test_a_worker_started_while_no_cluster_node_answers_waits_alive_and_not_ready_then_folds(
    settings: Settings, redis_cluster_env: dict[str, str], tmp_path: Path,
) -> None:
    """On one Redis node a worker starts and waits; on a cluster, whose client learns the slot map when it is made,
    the worker waits for a node to answer before it builds its stages (it exited with "cannot reach" before)."""
    run = settings.model_copy(update={"redis_url": redis_cluster_env["ILOG_REDIS_URL"], "redis_cluster": "true"})
    worker: WorkerProcess | None = None
    try:
        with _cluster_down():
            assert wait_for(lambda: not _answers(redis_cluster_env), 10)
            worker = WorkerProcess("fold", run, tmp_path / "fold.log")
            assert wait_for(lambda: '"http_port"' in worker.log_text(), 30), worker.log_text()[-2000:]
            port = _http_port(worker)  # logged with the wait
            assert wait_for(lambda: "waiting for the Redis Cluster" in _readiness(port), 5), worker.log_text()[-2000:]
            assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=3).status_code == 200
            assert worker.proc.poll() is None
        assert wait_for(lambda: _ready(port), 60), _readiness(port) + worker.log_text()[-2000:]
        at = datetime.now(UTC)
        produce(run, run.events_topic, [event("log.opened", "conv-started-waiting", 1, at),
                                        event("log.updated", "conv-started-waiting", 2, at, {"notes": "after"})])
        reader = TopicReader(run, run.upserts_topic)
        try:
            found = reader.read_until(
                lambda m: any(s["version"] == 2 for s in snapshots_by_id(m).get("conv-started-waiting", [])), 60)
        finally:
            reader.close()
        assert [s["notes"] for s in snapshots_by_id(found)["conv-started-waiting"] if s["version"] == 2] == ["after"]
    finally:
        if worker is not None:
            assert worker.stop() == 0, worker.log_text()[-3000:]
