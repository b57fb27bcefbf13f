"""Shared fixtures. Tests are marked by folder; services start once per session, on demand."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support import isolated_settings, parse_env_lines
from worker.kafka.topics import create_topics
from worker.runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
STACK = REPO / "deploy" / "local" / "stack"
_TIERS = ("unit", "integration", "e2e", "fault", "bench")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(REPO / "tests").parts
        # a parametrised behaviour suite marks its in-memory half `unit` itself: no service needed
        if parts and parts[0] in _TIERS and not any(item.get_closest_marker(tier) for tier in _TIERS):
            item.add_marker(getattr(pytest.mark, parts[0]))


@pytest.fixture(scope="session")
def stack_env() -> Iterator[dict[str, str]]:
    """The local Kafka + Redis: reused when running, else started here and stopped at the end."""
    running = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=False)
    if running.returncode == 0:
        yield parse_env_lines(running.stdout)
        return
    started = subprocess.run([str(STACK), "up"], capture_output=True, text=True, check=False)
    if started.returncode != 0:
        pytest.fail(f"deploy/local/stack up failed:\n{started.stderr}")
    try:
        yield parse_env_lines(started.stdout)
    finally:
        subprocess.run([str(STACK), "down"], capture_output=True, text=True, check=False)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def settings(stack_env: dict[str, str]) -> Settings:
    """Settings against the local stack, with topics and a Redis key prefix of this test's own."""
    built = isolated_settings(stack_env, unique_name("t"))
    create_topics(built)
    return built


@pytest.fixture
def redis_client(stack_env: dict[str, str]) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack_env["ILOG_REDIS_URL"])
    try:
        yield client
    finally:
        client.close()
