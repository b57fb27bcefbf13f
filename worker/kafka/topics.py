"""Topic bootstrap: the events, upserts and DLQ topics, created idempotently."""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from worker.runtime import bootstrap
from worker.runtime.settings import Settings


def project_topics(settings: Settings) -> list[str]:
    return [
        settings.events_topic,
        settings.events_dlq_topic,
        settings.upserts_topic,
        settings.upserts_dlq_topic,
    ]


def create_topics(settings: Settings, timeout_s: float = 30.0) -> dict[str, str]:
    """Create the project's topics; returns topic → "created" | "exists". Raises on other errors."""
    admin = bootstrap.admin_client(settings)
    wanted = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
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
    return outcome
