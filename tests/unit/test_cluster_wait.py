"""A worker in cluster mode waits for a node to answer before it builds its stages, serving its health port
meanwhile; what counts as "no node answers" against a refusal; the health server's checks replaced while it
serves. No service runs here: the cluster URL names a port nothing listens on."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import redis
from redis.exceptions import RedisClusterException, SlotNotCoveredError

from worker.errors import UnreachableError
from worker.runtime.health import HealthServer
from worker.runtime.runner import wait_for_redis_cluster
from worker.runtime.settings import Settings
from worker.store.cluster import no_node_answers


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _chained(message: str, cause: BaseException) -> RedisClusterException:
    try:
        raise RedisClusterException(message) from cause
    except RedisClusterException as exc:
        return exc


@pytest.mark.parametrize(("error", "waits"), [
    (redis.ConnectionError("Error 111 connecting"), True),
    (redis.TimeoutError("Timeout reading from socket"), True),
    (_chained("Redis Cluster cannot be connected. Please provide at least one reachable node: Error 111",
              redis.ConnectionError("Error 111")), True),
    (RedisClusterException("All slots are not covered after query all startup_nodes. 5461 of 16384 covered..."),
     True),
    (_chained("Redis Cluster cannot be connected. Please provide at least one reachable node: Cluster mode is not "
              "enabled on this node", RedisClusterException("Cluster mode is not enabled on this node")), False),
    (SlotNotCoveredError('Slot "7" is not covered by the cluster.'), False),
    (ValueError("not a Redis error"), False),
], ids=["refused", "timeout", "cannot-be-connected", "not-covered", "not-cluster-mode", "slot-not-covered", "other"])
def test_no_node_answering_is_told_from_a_refusal(error: BaseException, waits: bool) -> None:
    assert no_node_answers(error) is waits


def test_the_worker_waits_serving_its_health_port_and_a_stop_ends_the_wait() -> None:
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{_closed_port()}/0", redis_cluster="true")
    health, stop = HealthServer("127.0.0.1", 0), threading.Event()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(wait_for_redis_cluster(settings, stop, health)))
    waiter.start()
    try:
        deadline, found = time.monotonic() + 10, (0, "")
        while time.monotonic() < deadline:
            try:
                found = _get(health.port, "/readyz")
                break
            except OSError:  # not serving yet
                time.sleep(0.05)
        assert found == (503, "waiting for the Redis Cluster: no node answers\n")
        assert _get(health.port, "/healthz") == (200, "ok\n")
        assert waiter.is_alive()
    finally:
        stop.set()
        waiter.join(10)
        health.stop()
    assert outcome == [False]


def test_a_single_node_setting_does_not_wait() -> None:
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{_closed_port()}/0", redis_cluster="false")
    health = HealthServer("127.0.0.1", 0)
    try:
        assert wait_for_redis_cluster(settings, threading.Event(), health) is True
    finally:
        health.stop()  # never started: returns at once


def test_a_node_that_refuses_cluster_mode_is_a_bad_setting_not_a_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    refusal = _chained("Redis Cluster cannot be connected. Please provide at least one reachable node: Cluster mode "
                       "is not enabled on this node", RedisClusterException("Cluster mode is not enabled on this node"))

    def refused(*_args: object, **_kwargs: object) -> None:
        raise UnreachableError("Redis Cluster", "redis://node", str(refusal), "check") from refusal

    monkeypatch.setattr("worker.runtime.bootstrap.redis_client", refused)
    settings = Settings(_env_file=None, redis_cluster="true")
    health = HealthServer("127.0.0.1", 0)
    try:
        with pytest.raises(UnreachableError, match="Cluster mode is not enabled"):
            wait_for_redis_cluster(settings, threading.Event(), health)
    finally:
        health.stop()


def test_the_health_server_takes_new_checks_while_it_serves() -> None:
    health = HealthServer("127.0.0.1", 0).start(lambda: (False, "first"))
    try:
        assert _get(health.port, "/readyz") == (503, "first\n")
        health.start(lambda: (True, "second"))
        assert _get(health.port, "/readyz") == (200, "second\n")
    finally:
        health.stop()


def test_auto_waits_for_the_node_to_say_whether_it_is_a_cluster_node_serving_its_health_port() -> None:
    """A single-node client made while the node was down would fail for good at the first redirection of a cluster
    node coming back (the worker exited on it): auto waits for the answer instead, not ready meanwhile."""
    settings = Settings(_env_file=None, redis_url=f"redis://127.0.0.1:{_closed_port()}/0", redis_cluster="auto")
    health, stop = HealthServer("127.0.0.1", 0), threading.Event()
    outcome: list[bool] = []
    waiter = threading.Thread(target=lambda: outcome.append(wait_for_redis_cluster(settings, stop, health)))
    waiter.start()
    try:
        deadline, found = time.monotonic() + 10, (0, "")
        while time.monotonic() < deadline:
            try:
                found = _get(health.port, "/readyz")
                break
            except OSError:  # not serving yet
                time.sleep(0.05)
        assert found == (503, "redis unreachable: waiting for it to answer whether it is a cluster node "
                              "(ILOG_REDIS_CLUSTER=auto)\n")
        assert _get(health.port, "/healthz") == (200, "ok\n")
        assert waiter.is_alive()
    finally:
        stop.set()
        waiter.join(10)
        health.stop()
    assert outcome == [False]


@pytest.mark.parametrize("cluster", [False, True])
def test_auto_goes_on_once_the_node_answers(cluster: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[bool | None] = [None, None, cluster]
    asked: list[int] = []

    def ask(_settings: Settings) -> bool | None:
        asked.append(1)
        return answers[min(len(asked), len(answers)) - 1]

    monkeypatch.setattr("worker.runtime.bootstrap.ask_cluster_mode", ask)
    monkeypatch.setattr("worker.runtime.bootstrap.redis_cluster_on", lambda _settings: cluster)
    monkeypatch.setattr("worker.runtime.bootstrap.redis_client", lambda *_a, **_k: redis.Redis())  # never connects
    settings = Settings(_env_file=None, redis_cluster="auto")
    health = HealthServer("127.0.0.1", 0)
    try:
        assert wait_for_redis_cluster(settings, threading.Event(), health) is True
    finally:
        health.stop()
    assert len(asked) == 3
