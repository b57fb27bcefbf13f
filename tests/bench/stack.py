"""What the service benchmarks share: the local stack, settings of their own, test data on Kafka, RSS."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import subprocess
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient

from tests.support import isolated_settings, parse_env_lines
from worker.dev.generator import generate_histories, rfc3339_ms
from worker.kafka.topics import create_topics
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

STACK = Path(__file__).resolve().parents[2] / "deploy" / "local" / "stack"
BENCH_START = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)
"""Event time origin of generated data: fixed, so every run folds the same histories."""


def stack_env() -> dict[str, str]:
    """`deploy/local/stack env` when the stack runs, else `up` (left running for the next run)."""
    running = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=False)
    result = running if running.returncode == 0 else subprocess.run(
        [str(STACK), "up"], capture_output=True, text=True, check=True
    )
    return parse_env_lines(result.stdout)


def bench_settings(env: dict[str, str], name: str, **overrides: object) -> Settings:
    """Settings with topics, groups and a Redis key prefix of this run's own; topics created."""
    settings = isolated_settings(env, f"bench-{name}-{uuid.uuid4().hex[:8]}", **overrides)
    create_topics(settings)
    return settings


def cleanup(settings: Settings) -> None:
    """Delete the run's topics and Redis keys so repeated runs do not fill the shared stack."""
    admin = AdminClient(settings.kafka_config())
    topics = [settings.events_topic, settings.upserts_topic, settings.events_dlq_topic,
              settings.upserts_dlq_topic, settings.state_changelog_topic]
    for future in admin.delete_topics(topics, request_timeout=30).values():
        with contextlib.suppress(Exception):  # already gone or slow: the names are unique anyway
            future.result(timeout=30)
    client = bootstrap.redis_client(settings)  # a cluster client scans every master
    try:
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{settings.key_prefix}:*", count=5000):
            batch.append(key)
            if len(batch) >= 5000:
                client.unlink(*batch)
                batch = []
        if batch:
            client.unlink(*batch)
    finally:
        client.close()


def produce_histories(settings: Settings, n_interactions: int, *, seed: int, rate_per_s: float) -> int:
    """Generate and produce in a child process, so the caller's memory never holds the data set."""
    context = multiprocessing.get_context("fork")
    counts = context.Queue()
    child = context.Process(target=_produce_child, args=(settings, n_interactions, seed, rate_per_s, counts))
    child.start()
    produced = int(counts.get())
    child.join()
    if child.exitcode != 0 or produced < 0:
        raise RuntimeError(f"producing the benchmark data failed (exit code {child.exitcode})")
    return produced


def _produce_child(
    settings: Settings, n_interactions: int, seed: int, rate_per_s: float, counts: multiprocessing.Queue[int]
) -> None:
    produced = -1
    try:
        producer = Producer(settings.kafka_config(**{
            "enable.idempotence": True, "linger.ms": 20, "batch.size": 1_000_000,
            "queue.buffering.max.messages": 500_000,
        }))
        events = _time_ordered_events(n_interactions, seed=seed, rate_per_s=rate_per_s)
        produced = sum(
            _produce_one(producer, settings.events_topic, event["subject"], json.dumps(event).encode())
            for event in events
        )
        if producer.flush(120) != 0:
            produced = -1
    finally:
        counts.put(produced)


def _time_ordered_events(n_interactions: int, *, seed: int, rate_per_s: float) -> Iterator[dict[str, Any]]:
    """Histories merged by event time, generated a chunk at a time so a million events fit in memory.

    Events later than the next chunk's first start are carried into that chunk's merge, so the
    stream is ordered by event time across chunks too (windows then close by event time as live).
    """
    chunk = 5_000
    carry: list[dict[str, Any]] = []
    for first in range(0, n_interactions, chunk):
        start = BENCH_START + timedelta(seconds=first / rate_per_s)
        histories = generate_histories(min(chunk, n_interactions - first), seed=seed + first, start=start,
                                       rate_per_s=rate_per_s)
        pool = carry + [event for history in histories for event in history]
        pool.sort(key=lambda event: (event["time"], event["subject"], event["sequence"]))
        is_last = first + chunk >= n_interactions
        boundary = rfc3339_ms(BENCH_START + timedelta(seconds=(first + chunk) / rate_per_s))
        cut = len(pool) if is_last else next(
            (index for index, event in enumerate(pool) if event["time"] >= boundary), len(pool)
        )
        yield from pool[:cut]
        carry = pool[cut:]


def _produce_one(producer: Producer, topic: str, key: str, value: bytes) -> int:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return 1
        except BufferError:
            producer.poll(0.05)


def rss_bytes(pid: int | None = None) -> int:
    """Resident set size of a process (this one by default), from /proc."""
    status = Path(f"/proc/{pid or os.getpid()}/status").read_text()
    line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024
