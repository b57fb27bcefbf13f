"""The worker creates the topics it writes to when they are missing: a deployment that made only the topics
CONTRACT.md names (or none, on a broker without auto-creation) still folds, dead-letters and finalizes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]

from tests.conftest import unique_name
from tests.support import (
    TopicReader,
    WorkerProcess,
    event,
    finalized_ids,
    header,
    isolated_settings,
    produce,
    wait_for,
)
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
             "customer": {"address": "+4930123456", "name": "Ada Example"}}


def _topics(settings: Settings) -> dict[str, int]:
    metadata = bootstrap.admin_client(settings).list_topics(timeout=10)
    return {name: len(topic.partitions) for name, topic in metadata.topics.items() if topic.error is None}


def test_a_fold_worker_with_only_the_events_topic_creates_the_ones_it_writes_to(
    stack_env: dict[str, str], tmp_path: Path,
) -> None:
    settings = isolated_settings(stack_env, unique_name("own"), edit_window_seconds=2.0, finalize_grace_seconds=0.5)
    admin = bootstrap.admin_client(settings)
    admin.create_topics([NewTopic(settings.events_topic, num_partitions=3, replication_factor=1)])[
        settings.events_topic].result(30)
    worker = WorkerProcess("fold", settings, tmp_path / "worker.log")
    try:
        wanted = {settings.events_dlq_topic, settings.upserts_topic, settings.state_changelog_topic}
        assert wait_for(lambda: wanted <= set(_topics(settings)), timeout_s=30), worker.log_text()[-3000:]
        # the state changelog is partitioned like the events topic it copies
        assert _topics(settings)[settings.state_changelog_topic] == 3
        start = datetime.now(UTC) - timedelta(seconds=5)
        produce(settings, settings.events_topic, [
            event("interaction.connected", "conv-1", 1, start, CONNECTED),
            event("interaction.disconnected", "conv-1", 2, start + timedelta(seconds=1)),
            event("interaction.survey", "conv-1", 3, start + timedelta(seconds=2)),
        ])
        upserts = TopicReader(settings, settings.upserts_topic)
        dlq = TopicReader(settings, settings.events_dlq_topic)
        assert finalized_ids(upserts.read_until(lambda m: finalized_ids(m) == {"conv-1"}, timeout_s=60)) == {
            "conv-1"}, worker.log_text()[-3000:]
        letters = dlq.read_until(lambda m: len(m) >= 1, timeout_s=30)
        assert [header(m, "reason") for m in letters] == ["unknown_type"]
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        upserts.close()
        dlq.close()
    finally:
        worker.stop()
