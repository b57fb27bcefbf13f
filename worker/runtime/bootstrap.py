"""The composition root: the one place Kafka and Redis clients are built, with their timeouts.

Stages, commands and tools receive clients from here; nothing else constructs one (a test keeps it so).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
import structlog
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient
from redis.backoff import ExponentialBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from worker.core.native import use_native_core
from worker.errors import ConfigError, UnreachableError
from worker.fold.stage import FoldOptions, FoldStage
from worker.kafka.clients import consumer_config, log_kafka_error, producer_config, record_lag
from worker.runtime.settings import Settings
from worker.runtime.status import StageStatus
from worker.runtime.targets import build_targets
from worker.store.budget import ApiBudget
from worker.store.cluster import RedisClient, unreachable_as_connection_errors
from worker.store.redis_store import RedisStore
from worker.store.sync_state import RedisSyncStateStore
from worker.sync.stage import SyncStage

log = structlog.get_logger("ilog.bootstrap")

REDIS_TIMEOUT_S = 10.0
REDIS_PROBE_TIMEOUT_S = 2.0
REDIS_HEALTH_CHECK_S = 30
REDIS_CONNECT_TIMEOUT_S = 2.0
# A cluster command that meets a dead node, MOVED/ASK or CLUSTERDOWN refreshes the slot map and
# retries: 0.1, 0.2, 0.4, 0.8 then 1 s apart, 25 times (~21 s), longer than a failover takes with
# the default cluster-node-timeout of 15 s, so a master's replica takes over without a restart.
REDIS_CLUSTER_RETRIES = 25
REDIS_CLUSTER_BACKOFF_BASE_S = 0.1
REDIS_CLUSTER_BACKOFF_CAP_S = 1.0
# librdkafka's own log lines arrive here (served by poll/consume/flush) instead of raw on stderr;
# worker.runtime.logs renders them like every other line.
KAFKA_LOGGER = logging.getLogger("librdkafka")
_KAFKA_HINT = "check ILOG_KAFKA_BOOTSTRAP (and any ILOG_KAFKA__ TLS/SASL options) and that the brokers are up"
_REDIS_HINT = "check ILOG_REDIS_URL and that Redis is up"


def kafka_hooks() -> dict[str, Any]:
    """Every Kafka client logs and reports errors through the worker's logging."""
    return {"logger": KAFKA_LOGGER, "error_cb": log_kafka_error}


_cluster_mode: dict[str, bool] = {}  # ILOG_REDIS_URL → cluster mode, asked once per process


def redis_client(settings: Settings, *, timeout_s: float = REDIS_TIMEOUT_S) -> RedisClient:
    """`RedisCluster` when cluster mode is on (`ILOG_REDIS_CLUSTER`), else `Redis`; TLS (`rediss://`)
    and credentials come from the URL either way."""
    options: dict[str, Any] = {"socket_timeout": timeout_s, "health_check_interval": REDIS_HEALTH_CHECK_S,
                               "socket_connect_timeout": min(timeout_s, REDIS_CONNECT_TIMEOUT_S)}
    try:
        if not redis_cluster_on(settings):
            return redis.Redis.from_url(settings.redis_url, **options)
        retry = Retry(ExponentialBackoff(cap=REDIS_CLUSTER_BACKOFF_CAP_S, base=REDIS_CLUSTER_BACKOFF_BASE_S),
                      retries=REDIS_CLUSTER_RETRIES)
        client = RedisCluster.from_url(settings.redis_url, retry=retry, **options)
        unreachable_as_connection_errors(client.nodes_manager)  # a cluster that no node answers for: wait
        return client
    except ValueError as exc:
        raise ConfigError(f"ILOG_REDIS_URL={redacted_url(settings.redis_url)!r} is not a Redis URL ({exc})") from exc
    except (redis.RedisError, redis.exceptions.RedisClusterException) as exc:
        raise UnreachableError("Redis Cluster", redacted_url(settings.redis_url), str(exc), _REDIS_HINT) from exc


def redis_cluster_on(settings: Settings) -> bool:
    """`ILOG_REDIS_CLUSTER`: true/false as set; auto asks the node (`INFO cluster` → cluster_enabled:1).

    A node that does not answer is taken for a single node, not remembered, and said so: commands report the
    unreachable Redis in one line next. A worker does not get this far without an answer: it waits for one
    (`worker.runtime.runner.wait_for_redis_cluster`), since a single-node client it made while the node was down
    would fail for good on the first redirection of a cluster node coming back."""
    if settings.redis_cluster != "auto":
        return settings.redis_cluster == "true"
    known = ask_cluster_mode(settings)
    if known is None:
        log.warning("redis cluster mode unknown; using a single-node client (set ILOG_REDIS_CLUSTER to skip asking)",
                    redis_url=redacted_url(settings.redis_url))
        return False
    return known


def ask_cluster_mode(settings: Settings) -> bool | None:
    """Whether the node of `ILOG_REDIS_URL` is a cluster node (remembered once it answered); None while it does
    not answer."""
    known = _cluster_mode.get(settings.redis_url)
    if known is not None:
        return known
    probe = redis.Redis.from_url(settings.redis_url, socket_timeout=REDIS_PROBE_TIMEOUT_S,
                                 socket_connect_timeout=REDIS_PROBE_TIMEOUT_S)
    try:
        known = int(probe.info("cluster").get("cluster_enabled", 0)) == 1
    except redis.RedisError:
        return None
    finally:
        probe.close()
    _cluster_mode[settings.redis_url] = known
    return known


def redacted_url(url: str) -> str:
    """The URL without its password, fit for a message."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def require_redis(settings: Settings) -> None:
    """Commands: one sentence instead of a traceback when Redis does not answer (the stages wait instead)."""
    client = redis_client(settings, timeout_s=settings.connect_timeout_seconds)
    try:
        client.ping()
    except redis.RedisError as exc:
        raise UnreachableError("Redis", redacted_url(settings.redis_url), str(exc), _REDIS_HINT) from exc
    finally:
        client.close()


def require_kafka(settings: Settings) -> None:
    """Commands: wait `connect_timeout_seconds` for a broker's answer, then say so in one sentence."""
    try:
        admin_client(settings).list_topics(timeout=settings.connect_timeout_seconds)
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        detail = error.str() if hasattr(error, "str") else str(error)
        if isinstance(error, KafkaError) and error.code() == KafkaError._INVALID_ARG:
            raise ConfigError(f"bad Kafka client option ({detail}); check the ILOG_KAFKA__ settings") from exc
        raise UnreachableError("Kafka", settings.kafka_bootstrap, detail, _KAFKA_HINT) from exc


def check_kafka_options(settings: Settings) -> None:
    """A worker's `ILOG_KAFKA__` options, checked by librdkafka before the worker logs anything: a bad one is then
    the one line of a bad setting (exit 2), as every other bad setting is. Clients without brokers to reach
    (nothing connects) and without logs are made and dropped."""
    quiet = {"bootstrap.servers": "", "log_level": 0}
    try:
        Producer({**producer_config(settings), **quiet})
        Consumer({**consumer_config(settings, settings.fold_group), **quiet}).close()
    except KafkaException as exc:
        error = exc.args[0] if exc.args else exc
        if isinstance(error, KafkaError) and error.code() == KafkaError._INVALID_ARG:
            raise ConfigError(f"bad Kafka client option ({error.str()}); check the ILOG_KAFKA__ settings") from exc
        raise


def log_store(settings: Settings, prefix: str | None = None) -> RedisStore:
    return RedisStore(redis_client(settings), prefix or settings.key_prefix)


def stage_consumer(settings: Settings, group: str, status: StageStatus | None = None, **extra: Any) -> Consumer:
    """A stage's consumer: offsets stored by the stage after its effects are durable; lag reported;
    connection errors logged and reported to the stage's status (readiness, partition clocks)."""
    if status is None:
        return Consumer(consumer_config(settings, group, stats_cb=partial(record_lag, group), **kafka_hooks(),
                                        **extra))
    hooks = kafka_hooks()
    hooks["error_cb"] = partial(_report_kafka_error, status)
    stats_cb = partial(record_lag, group, sink=status.stats)
    return Consumer(consumer_config(settings, group, status.name, stats_cb=stats_cb, **hooks, **extra))


def _report_kafka_error(status: StageStatus, error: KafkaError) -> None:
    log_kafka_error(error)
    status.kafka_error(error)


def stage_producer(settings: Settings, **extra: Any) -> Producer:
    return Producer(producer_config(settings, **kafka_hooks(), **extra))


def plain_consumer(settings: Settings, **config: Any) -> Consumer:
    """A tool's consumer (replay planning, DLQ reading): the settings' Kafka options plus `config`."""
    return Consumer(settings.kafka_config(**kafka_hooks(), **config))


def plain_producer(settings: Settings, **config: Any) -> Producer:
    return Producer(settings.kafka_config(**kafka_hooks(), **config))


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(settings.kafka_config(**kafka_hooks()))


def kafka_probe(settings: Settings, timeout_s: float = 2.0) -> Callable[[], str | None]:
    """A cheap check that the brokers answer (a metadata request for the events topic): None, or why not."""
    admin = admin_client(settings)

    def probe() -> str | None:
        try:
            metadata = admin.list_topics(settings.events_topic, timeout=timeout_s)
        except KafkaException as exc:
            return f"kafka unreachable: {exc}"
        return None if metadata.brokers else "kafka: no broker in the metadata"

    return probe


def fold_stage(settings: Settings, options: FoldOptions | None = None, *, prefix: str | None = None) -> FoldStage:
    group = (options.group if options else None) or settings.fold_group
    core = use_native_core(settings.native_core)
    log.info(
        "fold core", compiled=core is not None, version=None if core is None else core.__version__,
        setting=settings.native_core)
    status = StageStatus("fold")
    store = log_store(settings, prefix)
    changelog_reader = plain_consumer(settings, **{
        "group.id": f"{group}-restore", "enable.auto.commit": False, "enable.partition.eof": False,
    })
    return FoldStage(settings, store, stage_consumer(settings, group, status), stage_producer(settings), options,
                     status=status, changelog_reader=changelog_reader)


def sync_state_store(settings: Settings, client: RedisClient) -> RedisSyncStateStore:
    return RedisSyncStateStore(client, settings.key_prefix, settings.retention_seconds)


def sync_stage(settings: Settings) -> SyncStage:
    """The real clients, built once: targets from settings, Redis for states and the budget."""
    client = redis_client(settings)
    states = sync_state_store(settings, client)
    targets = build_targets(settings)
    limits = {target.name: target.traits.budget for target in targets if target.traits.budget is not None}
    budget = ApiBudget(client, settings.key_prefix, limits)
    status = StageStatus("sync")
    stage = SyncStage(settings, targets, states, budget,
                      stage_consumer(settings, settings.sync_group, status), stage_producer(settings))
    stage.status = status
    return stage
