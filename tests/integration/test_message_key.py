"""The Kafka message key is the interaction id: events keyed otherwise are dead-lettered by the running fold stage."""

from __future__ import annotations

import json
import subprocess
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from tests.support import ILOG, REPO, TopicReader, WorkerProcess, event, header, settings_env, snapshots_by_id, wait_for
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7"}


def _versions(settings: Settings, ids: list[str]) -> dict[str, int]:
    store = bootstrap.log_store(settings)
    try:
        return {i: s.state.version for i, s in store.load(ids).items() if s.state is not None}
    finally:
        store.close()


def test_an_event_keyed_by_another_interaction_is_dead_lettered_and_folds_once_replayed_a_keyless_one_folds(
    settings: Settings, tmp_path: Path,
) -> None:
    now = datetime.now(UTC)
    keyed = event("interaction.connected", "conv-key-ok", 1, now, CONNECTED)
    misrouted = event("interaction.connected", "conv-key-other", 1, now, CONNECTED)
    keyless = event("interaction.connected", "conv-key-none", 1, now, CONNECTED)
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True}))
    producer.produce(settings.events_topic, key=b"conv-key-ok", value=json.dumps(keyed).encode())
    producer.produce(settings.events_topic, key=b"conv-key-ok", value=json.dumps(misrouted).encode())
    producer.produce(settings.events_topic, value=json.dumps(keyless).encode())
    assert producer.flush(30) == 0

    worker = WorkerProcess("fold", settings, tmp_path / "worker.log")
    upserts = TopicReader(settings, settings.upserts_topic)
    dlq = TopicReader(settings, settings.events_dlq_topic)
    try:
        dlq.read_until(lambda m: len(m) >= 1, timeout_s=60)
        letters = dlq.read_until(lambda _m: False, timeout_s=2)  # every letter read so far: one is expected
        assert sorted([
            ("invalid", "conv-key-other", "subject: 'conv-key-other' is not the Kafka message key 'conv-key-ok'; the "
             "key must be the interaction id"),
        ]) == sorted((header(m, "reason"), header(m, "subject"), header(m, "message")) for m in letters), \
            worker.log_text()[-3000:]
        upserts.read_until(lambda m: {"conv-key-ok", "conv-key-none"} <= set(snapshots_by_id(m)), timeout_s=30)
        messages = upserts.read_until(lambda _m: False, timeout_s=2)  # every snapshot read so far
        assert ["conv-key-none", "conv-key-ok"] == sorted(snapshots_by_id(messages))
        ids = ["conv-key-ok", "conv-key-other", "conv-key-none"]
        assert {"conv-key-ok": 1, "conv-key-none": 1} == _versions(settings, ids)
        replay = subprocess.run([*ILOG, "dlq", "replay", "--reason", "invalid", "--yes"], cwd=REPO,
                                env=settings_env(settings), capture_output=True, text=True, timeout=120, check=False)
        assert 0 == replay.returncode, replay.stderr
        assert wait_for(lambda: _versions(settings, ids) == dict.fromkeys(ids, 1), timeout_s=30), (
            _versions(settings, ids), worker.log_text()[-3000:])
    finally:
        upserts.close()
        dlq.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
