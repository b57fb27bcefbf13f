"""Shared fixtures. Tests are marked by folder; services start once per session, on demand."""

from __future__ import annotations

import logging
import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import structlog

from tests.support import isolated_settings, parse_env_lines
from worker.core import native
from worker.kafka.topics import create_topics
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "deploy" / "local" / "stack"
# Under pytest-xdist each worker runs its own stack (Kafka, Redis, a cluster) in folders of its own;
# set in the environment so every `deploy/local/stack` call of a test, and the worker processes, see it.
_XDIST_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
_STACK_SUFFIX = f"-{_XDIST_WORKER}" if _XDIST_WORKER else ""
if _XDIST_WORKER:
    os.environ["ILOG_STACK_DIR"] = os.environ.get("ILOG_STACK_DIR", str(REPO / ".stack")) + _STACK_SUFFIX
# The Redis Cluster of the tests (6 nodes, Redis only): its own stack folder beside the main stack.
CLUSTER_STACK_DIR = REPO / f".stack-cluster{_STACK_SUFFIX}"
# `ILOG_TEST_REDIS=cluster`: the tests' Redis is that cluster instead of the stack's single node
# (`make test` runs the store, fold stage and sync tests a second time so).
TEST_REDIS = os.environ.get("ILOG_TEST_REDIS", "single")
_TIERS = ("unit", "integration", "e2e", "fault", "bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        # a parametrised behaviour suite marks its in-memory half `unit` itself: no service needed
        if parts and parts[0] in _TIERS and not any(item.get_closest_marker(tier) for tier in _TIERS):
            item.add_marker(getattr(pytest.mark, parts[0]))


def _stack(args: list[str], env: dict[str, str] | None = None) -> Iterator[dict[str, str]]:
    """A stack's ILOG_* lines: reused when running, else started here and stopped at the end."""
    full_env = {**os.environ, **(env or {})}
    running = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=False, env=full_env)
    if running.returncode == 0:
        yield parse_env_lines(running.stdout)
        return
    started = subprocess.run([str(STACK), "up", *args], capture_output=True, text=True, check=False, env=full_env)
    if started.returncode != 0:
        pytest.fail(f"deploy/local/stack up {' '.join(args)} failed:\n{started.stderr}")
    try:
        yield parse_env_lines(started.stdout)
    finally:
        subprocess.run([str(STACK), "down"], capture_output=True, text=True, check=False, env=full_env)


@pytest.fixture(scope="session")
def redis_cluster_env() -> Iterator[dict[str, str]]:
    """A 6-node Redis Cluster (3 masters, 3 replicas) on loopback: ILOG_REDIS_URL, ILOG_REDIS_CLUSTER."""
    yield from _stack(["--redis-cluster", "--no-kafka"], {"ILOG_STACK_DIR": str(CLUSTER_STACK_DIR)})


@pytest.fixture
def compiled_core() -> Iterator[None]:
    """The compiled core in use for a test of what only it does (its snapshot thread), also where
    `ILOG_NATIVE_CORE` is false; the test fails when the core is not installed, unless that variable is false."""
    installed = native.installed()
    if installed is None:
        if os.environ.get("ILOG_NATIVE_CORE", "").strip().lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false and the compiled core is not installed")
        pytest.fail("the compiled core (ilog_native) is not installed: run `make install`")
    before = native.CORE
    native.use_native_core(True)
    yield
    native.use_native_core(before is not None)


@pytest.fixture(autouse=True)
def _logging_as_it_was() -> Iterator[None]:
    """A command or worker run in-process configures structlog and the root logger globally (level
    filter, handlers); put both back so a later test's `capture_logs` sees what it logs."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        root.handlers, root.level = handlers, level
        structlog.reset_defaults()


@pytest.fixture(scope="session")
def stack_env(request: pytest.FixtureRequest) -> Iterator[dict[str, str]]:
    """The local Kafka + Redis; with `ILOG_TEST_REDIS=cluster` Redis is the tests' cluster."""
    for env in _stack([], {"ILOG_REDIS_CLUSTER": "false"}):
        env["SINGLE_REDIS_URL"] = env["ILOG_REDIS_URL"]  # the stack's own node, whichever Redis the tests use
        if TEST_REDIS == "cluster":
            env = {**env, **request.getfixturevalue("redis_cluster_env")}
        yield env


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(stack_env: dict[str, str]) -> Settings:
    """Settings against the local stack, with topics and a Redis key prefix of this test's own."""
    built = isolated_settings(stack_env, unique_name("t"))
    create_topics(built)
    return built


@pytest.fixture
def redis_client(stack_env: dict[str, str]) -> Iterator[redis.Redis | redis.RedisCluster]:
    """A client of the tests' Redis, built as the worker builds it (a cluster client on the cluster)."""
    client = bootstrap.redis_client(isolated_settings(stack_env, "client"))
    try:
        yield client
    finally:
        client.close()
