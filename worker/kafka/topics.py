"""Topic bootstrap: the events, upserts and DLQ topics with the configs operators run them with.

- events: deleted after `events_retention_seconds` (default 14 days). That is the backfill horizon
  (`ilog replay --from` reaches back no further), so it is at least the open-log TTL: the events of
  every log still open are in the topic.
- upserts: compacted, then deleted after `upserts_retention_seconds`: the sync stage only needs each
  interaction's latest snapshot; records younger than `min.compaction.lag.ms` (1 h) are never compacted
  away, so a sync stage less than an hour behind still sees every version (the webhook's events).
- state changelog (`<events topic>.state`): the fold stage's copy of its Redis state (see
  `worker.fold.recovery`), one partition per events partition; compacted, and deleted after the
  longest a state lives in Redis (open-log TTL + retention).
- DLQs: deleted after `dlq_retention_seconds` (default 30 days), time to look at them and replay.
Every topic gets `min.insync.replicas`; with `acks=all` a write needs that many replicas.
`ilog topics create` sets these on new topics and applies them to existing ones.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (  # type: ignore[attr-defined]
    AlterConfigOpType,
    ConfigEntry,
    ConfigResource,
    NewTopic,
)

from worker.errors import ConfigError
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

UPSERTS_MIN_COMPACTION_LAG_MS = 3_600_000


def project_topics(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.events_dlq_topic,
        settings.upserts_topic,
        settings.upserts_dlq_topic,
        settings.state_changelog_topic,
    ]


def topic_configs(settings: Settings) -> dict[str, dict[str, str]]:
    """Topic name → the configs `ilog topics create` sets (documented in the module docstring)."""
    if settings.events_retention_seconds < settings.open_log_ttl_seconds:
        raise ConfigError(
            f"ILOG_EVENTS_RETENTION_SECONDS ({settings.events_retention_seconds:.0f}) is shorter than "
            f"ILOG_OPEN_LOG_TTL_SECONDS ({settings.open_log_ttl_seconds:.0f}): the events of open logs would be "
            "deleted before their logs; raise the retention"
        )
    common = {"min.insync.replicas": str(settings.min_insync_replicas)}
    dlq = {**common, "cleanup.policy": "delete", "retention.ms": _ms(settings.dlq_retention_seconds)}
    return {
        settings.events_topic: {**common, "cleanup.policy": "delete",
                                "retention.ms": _ms(settings.events_retention_seconds)},
        settings.events_dlq_topic: dlq,
        settings.upserts_topic: {**common, "cleanup.policy": "compact,delete",
                                 "retention.ms": _ms(settings.upserts_retention_seconds),
                                 "min.compaction.lag.ms": str(UPSERTS_MIN_COMPACTION_LAG_MS)},
        settings.upserts_dlq_topic: dlq,
        settings.state_changelog_topic: {
            **common, "cleanup.policy": "compact,delete",
            "retention.ms": _ms(settings.open_log_ttl_seconds + settings.retention_seconds),
        },
    }


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create the project's topics; returns topic → "created" | "exists, configs applied". Raises on other
    errors (an unreachable cluster within `connect_timeout_seconds`)."""
    configs = topic_configs(settings)
    if settings.min_insync_replicas > settings.replication_factor:
        raise ConfigError(f"ILOG_MIN_INSYNC_REPLICAS ({settings.min_insync_replicas}) is above "
                          f"ILOG_REPLICATION_FACTOR ({settings.replication_factor}): no write could succeed")
    bootstrap.require_kafka(settings)
    admin = bootstrap.admin_client(settings)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor,
                 config=configs[name])
        for name in project_topics(settings)
    ]
    outcome: dict[str, str] = {}
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            outcome[name] = "created"
        except KafkaException as exc:
            error = exc.args[0]
            if isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                outcome[name] = "exists"
            else:
                raise
    existing = [name for name, state in outcome.items() if state == "exists"]
    for name in existing:
        outcome[name] = "exists, configs applied"
    _apply_configs(admin, {name: configs[name] for name in existing}, timeout_s)
    return outcome


def _apply_configs(admin: object, configs: dict[str, dict[str, str]], timeout_s: float) -> None:
    """Set (only) our keys on existing topics; other configs an operator set stay as they are."""
    if not configs:
        return
    resources = [
        ConfigResource(ConfigResource.Type.TOPIC, name, incremental_configs=[
            ConfigEntry(key, value, incremental_operation=AlterConfigOpType.SET) for key, value in entries.items()
        ])
        for name, entries in configs.items()
    ]
    for future in admin.incremental_alter_configs(resources).values():  # type: ignore[attr-defined]
        future.result(timeout=timeout_s)


def missing_topics(admin: Any, settings: Settings, names: list[str], timeout_s: float,
                   ) -> tuple[list[str], int | None]:
    """(those of `names` the cluster does not have, the events topic's partition count or None)."""
    metadata = admin.list_topics(timeout=timeout_s)
    present = {name: topic for name, topic in metadata.topics.items() if topic.error is None}
    events = present.get(settings.events_topic)
    return [name for name in names if name not in present], None if events is None else len(events.partitions)


def ensure_topics(settings: Settings, names: list[str], timeout_s: float = 10.0) -> list[str]:
    """Create those of `names` that are missing, with the configs of `ilog topics create`; returns them.

    What a stage writes to must exist before it writes (a broker without auto-creation refuses the
    messages, and the stage stops on it). Existing topics are left as they are (their configs are the
    operator's; `ilog topics create` applies ours). The state changelog gets the events topic's partition
    count: partition p of the one is the copy of partition p of the other."""
    admin = bootstrap.admin_client(settings)  # one client, kept until its futures are answered
    missing, events_partitions = missing_topics(admin, settings, names, timeout_s)
    if not missing:
        return []
    configs = topic_configs(settings)
    changelog_partitions = events_partitions or settings.partitions
    wanted = [NewTopic(name, replication_factor=settings.replication_factor, config=configs.get(name, {}),
                       num_partitions=changelog_partitions if name == settings.state_changelog_topic
                       else settings.partitions)
              for name in missing]
    created = []
    for name, future in admin.create_topics(wanted, request_timeout=timeout_s).items():
        try:
            future.result(timeout=timeout_s)
            created.append(name)
        except KafkaException as exc:
            error = exc.args[0]
            if not (isinstance(error, KafkaError) and error.code() == KafkaError.TOPIC_ALREADY_EXISTS):
                raise
    return created
