"""W3C trace context from the events through the upserts topic to the log lines and the webhook."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import connected, event, sync_settings, wait_assigned, wait_for
from tests.support import TopicReader, WorkerProcess, header, produce
from worker.runtime.settings import Settings

STRUCTURED = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
BINARY = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
ON_HEADER = "00-1234567890abcdef1234567890abcdef-1234567890abcdef-00"
REJECTED = "00-fedcba9876543210fedcba9876543210-0123456789abcdef-01"


def _log_lines(worker: WorkerProcess) -> list[dict[str, Any]]:
    lines = []
    for line in worker.log_text().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def _webhook_traces(emulators: Emulators, interaction_id: str) -> list[tuple[int, str | None]]:
    return [(d["body"]["log"]["version"], d["headers"].get("traceparent"))
            for d in emulators.webhook.state()["deliveries"] if d["interaction_id"] == interaction_id]


def test_a_traceparent_reaches_the_upserts_headers_the_webhook_and_the_log_lines(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("webhook",))
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    now = datetime.now(UTC)
    try:
        wait_assigned(worker, 2)
        structured = event("interaction.connected", "conv-trace-1", 1, now, connected())
        structured["traceparent"] = STRUCTURED
        untraced = event("interaction.connected", "conv-trace-4", 1, now, connected())
        untraced["traceparent"] = STRUCTURED.upper()  # malformed (upper case): ignored, the event applies
        rejected = event("interaction.held", "conv-trace-1", 9, now + timedelta(days=1))
        rejected["traceparent"] = REJECTED  # a day ahead: future_time
        produce(run, run.events_topic, [structured, untraced, rejected])
        producer = Producer(run.kafka_config())
        binary = event("interaction.connected", "conv-trace-2", 1, now, connected())
        producer.produce(run.events_topic, key=b"conv-trace-2", value=json.dumps(binary["data"]).encode(), headers=[
            *((f"ce_{name}", str(binary[name]).encode()) for name in
              ("specversion", "id", "source", "type", "subject", "time", "sequence")),
            ("ce_traceparent", BINARY.encode()), ("content-type", b"application/json")])
        on_header = event("interaction.connected", "conv-trace-3", 1, now, connected())
        producer.produce(run.events_topic, key=b"conv-trace-3", value=json.dumps(on_header).encode(),
                         headers=[("traceparent", ON_HEADER.encode())])
        assert producer.flush(30) == 0
        expected = {"conv-trace-1": STRUCTURED, "conv-trace-2": BINARY, "conv-trace-3": ON_HEADER,
                    "conv-trace-4": None}
        assert wait_for(lambda: all(_webhook_traces(fresh_emulators, i) for i in expected), 30), \
            worker.log_text()[-3000:]
        assert {i: [(1, trace)] for i, trace in expected.items()} == {
            i: _webhook_traces(fresh_emulators, i) for i in expected}

        reader = TopicReader(run, run.upserts_topic)
        try:
            upserts = reader.read_until(lambda messages: len(messages) >= 4, 20)
        finally:
            reader.close()
        assert expected == {(m.key() or b"").decode(): header(m, "traceparent") for m in upserts}

        lines = _log_lines(worker)
        refused = [line for line in lines if line.get("event") == "event rejected"]
        assert [("future_time", "fedcba9876543210fedcba9876543210", "0123456789abcdef")] == [
            (line["reason"], line.get("trace_id"), line.get("span_id")) for line in refused]
        synced = {line["interaction_id"]: line.get("trace_id") for line in lines
                  if line.get("event") == "synced" and line.get("target") == "webhook"}
        assert {i: None if trace is None else trace.split("-")[1] for i, trace in expected.items()} == synced
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
