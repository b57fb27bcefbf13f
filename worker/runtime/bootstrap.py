"""The composition root: the one place Kafka and Redis clients are built, with their timeouts.

Stages, commands and tools receive clients from here; nothing else constructs one (a test keeps it so).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import redis
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from worker.fold.stage import FoldOptions, FoldStage
from worker.kafka.clients import consumer_config, producer_config, record_lag
from worker.runtime.settings import Settings
from worker.runtime.targets import build_targets
from worker.store.budget import ApiBudget
from worker.store.redis_store import RedisStore
from worker.store.sync_state import RedisSyncStateStore
from worker.sync.stage import SyncStage

REDIS_TIMEOUT_S = 10.0
REDIS_PROBE_TIMEOUT_S = 2.0
REDIS_HEALTH_CHECK_S = 30


def redis_client(settings: Settings, *, timeout_s: float = REDIS_TIMEOUT_S) -> redis.Redis:
    return redis.Redis.from_url(settings.redis_url, socket_timeout=timeout_s,
                                health_check_interval=REDIS_HEALTH_CHECK_S)


def log_store(settings: Settings, prefix: str | None = None) -> RedisStore:
    return RedisStore(redis_client(settings), prefix or settings.key_prefix)


def stage_consumer(settings: Settings, group: str, **extra: Any) -> Consumer:
    """A stage's consumer: offsets stored by the stage after its effects are durable; lag reported."""
    return Consumer(consumer_config(settings, group, stats_cb=partial(record_lag, group), **extra))


def stage_producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(producer_config(settings, **extra))


def plain_consumer(settings: Settings, **config: Any) -> Consumer:
    """A tool's consumer (replay planning, DLQ reading): the settings' Kafka options plus `config`."""
    return Consumer(settings.kafka_config(**config))


def plain_producer(settings: Settings, **config: Any) -> Producer:
    return Producer(settings.kafka_config(**config))


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(dict(settings.kafka_config()))


def fold_stage(settings: Settings, options: FoldOptions | None = None, *, prefix: str | None = None) -> FoldStage:
    group = (options.group if options else None) or settings.fold_group
    return FoldStage(settings, log_store(settings, prefix), stage_consumer(settings, group),
                     stage_producer(settings), options)


def sync_stage(settings: Settings) -> SyncStage:
    """The real clients, built once: targets from settings, Redis for states and the budget."""
    client = redis_client(settings)
    states = RedisSyncStateStore(client, settings.key_prefix, settings.retention_seconds)
    targets = build_targets(settings)
    limits = {target.name: target.traits.budget for target in targets if target.traits.budget is not None}
    budget = ApiBudget(client, settings.key_prefix, limits)
    return SyncStage(settings, targets, states, budget,
                     stage_consumer(settings, settings.sync_group), stage_producer(settings))
