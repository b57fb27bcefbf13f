"""Test plumbing shared by the service tiers: settings as env, worker processes, topic readers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from schemas.snapshot import LogSnapshot
from worker.dev.local_tools import parse_env_lines as parse_env_lines  # the tiers read the scripts as the demo does
from worker.runtime.settings import Settings

REPO = Path(__file__).resolve().parent.parent
ILOG = [sys.executable, "-m", "worker.ops.cli"]


def isolated_settings(env: dict[str, str], run_id: str, **overrides: Any) -> Settings:
    """Settings against a running stack with topics, groups and a Redis key prefix of `run_id`'s own."""
    return Settings(
        _env_file=None,
        kafka_bootstrap=env["ILOG_KAFKA_BOOTSTRAP"],
        redis_url=env["ILOG_REDIS_URL"],
        redis_cluster=env.get("ILOG_REDIS_CLUSTER", "false"),
        events_topic=f"{run_id}.events",
        upserts_topic=f"{run_id}.upserts",
        key_prefix=f"ilog-{run_id}",
        fold_group=f"{run_id}-fold",
        sync_group=f"{run_id}-sync",
        http_port=0,
        **{"partitions": 6, **overrides},
    )


def emulator_settings(env: Mapping[str, str], **overrides: Any) -> Settings:
    """Settings pointing at the CRM emulators (`deploy/local/emulators env`), plus `overrides`."""
    values: dict[str, Any] = {key.removeprefix("ILOG_").lower(): value for key, value in env.items()
                              if key.startswith("ILOG_")}
    return Settings(_env_file=None, **{**values, **overrides})


INBOUND_CALL: dict[str, Any] = {
    "media": "voice", "direction": "inbound", "queue": "Support", "agent_id": "agent-7",
    "customer": {"address": "+4930123456", "name": "Ada Example"}, "subject": "Inbound call from Ada Example",
    "notes": "Customer asked for a refund.", "connected_at": "2026-11-27T10:00:00Z", "attributes": {"tier": "gold"},
}
"""The snapshot fields of the typical call the adapter tests sync (ids, trigger and state are theirs)."""


def snapshot_from(base: Mapping[str, Any], **overrides: Any) -> LogSnapshot:
    """A snapshot of CONTRACT.md: a test module's typical one (`base`) with `overrides`."""
    return LogSnapshot.model_validate({**base, **overrides})


def settings_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment a worker process needs to run with exactly these settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ILOG_")}
    for name, value in settings.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, dict):
            for key, item in value.items():
                env[f"ILOG_{name.upper()}__{key.upper()}"] = str(item)
        else:
            env[f"ILOG_{name.upper()}"] = str(value)
    for field in ("salesforce_client_secret", "zendesk_token", "webhook_secret"):
        secret = getattr(settings, field)
        if secret is not None:
            env[f"ILOG_{field.upper()}"] = secret.get_secret_value()
    env.setdefault("ILOG_LOG_FORMAT", "json")
    env.update(extra)
    return env


class WorkerProcess:
    """`ilog worker <stage>` as a child process, its stderr captured to a file."""

    def __init__(self, stage: str, settings: Settings, log_path: Path, **extra_env: str) -> None:
        self.log_path = log_path
        self._log = log_path.open("ab")
        self.proc = subprocess.Popen(
            [*ILOG, "worker", stage], cwd=REPO, env=settings_env(settings, **extra_env),
            stdout=self._log, stderr=self._log,
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout_s: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def produce(settings: Settings, topic: str, items: Iterable[dict[str, Any] | bytes]) -> int:
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "linger.ms": 5}))
    count = 0
    for item in items:
        if isinstance(item, bytes):
            producer.produce(topic, value=item)
        else:
            producer.produce(topic, key=item["subject"], value=json.dumps(item).encode())
        count += 1
        if count % 10_000 == 0:
            producer.flush(30)
    assert producer.flush(30) == 0
    return count


class TopicReader:
    """Reads a topic from the beginning with its own group, accumulating messages across calls."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.messages: list[Message] = []
        self._consumer = Consumer(
            settings.kafka_config(**{
                "group.id": f"reader-{topic}-{time.monotonic_ns()}", "auto.offset.reset": "earliest",
                "enable.auto.commit": False,
            })
        )
        self._consumer.subscribe([topic])

    def wait_assigned(self, timeout_s: float = 30.0) -> None:
        """Poll until the reader's group gave it its partitions (messages read meanwhile are kept)."""
        deadline = time.monotonic() + timeout_s
        while not self._consumer.assignment():
            assert time.monotonic() < deadline, "the reader got no partitions"
            self.read_until(lambda _m: True, timeout_s=0.2)

    def read_until(self, done: Callable[[list[Message]], bool], timeout_s: float) -> list[Message]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self._consumer.consume(1000, timeout=0.2):
                if message.error() is None:
                    self.messages.append(message)
            if done(self.messages):
                break
        return self.messages

    def close(self) -> None:
        self._consumer.close()


def snapshots_by_id(messages: Iterable[Message]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for message in messages:
        value = message.value()
        assert value is not None
        snap = json.loads(value)
        found.setdefault(snap["interaction_id"], []).append(snap)
    return found


def finalized_ids(messages: Iterable[Message]) -> set[str]:
    return {sid for sid, snaps in snapshots_by_id(messages).items() if any(s["finalized"] for s in snaps)}


def headers_of(message: Message) -> list[tuple[str, object]]:
    """A message's headers as (name, value) pairs (confluent-kafka types them loosely)."""
    return list(message.headers() or [])  # type: ignore[arg-type]


def header(message: Message, name: str) -> str | None:
    for key, value in headers_of(message):
        if key == name:
            return None if value is None else value.decode() if isinstance(value, bytes) else str(value)
    return None


def wait_for(predicate: Callable[[], bool], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll until `predicate()` holds or `timeout_s` passes; the last answer is returned."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())


def event(kind: str, subject: str, n: int, at: datetime, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """A structured-mode CloudEvent of CONTRACT.md with `sequence` = n."""
    return {
        "specversion": "1.0", "id": f"{subject}-{n}", "source": "/test", "type": kind, "subject": subject,
        "time": at.isoformat().replace("+00:00", "Z"), "sequence": n, "data": data or {},
    }


def offline_fold(events: Iterable[dict[str, Any] | bytes], tmp: Path, settings: Settings) -> dict[str, dict[str, Any]]:
    """What `ilog fold` gives for the same events, by interaction id."""
    path = tmp / "events.jsonl"
    with path.open("wb") as out:
        for item in events:
            out.write((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n")
    result = subprocess.run(
        [*ILOG, "fold", str(path)], cwd=REPO, env=settings_env(settings), capture_output=True, check=True
    )
    logs = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    return {entry["interaction_id"]: entry for entry in logs}


def without(snapshot: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in snapshot.items() if k not in names}


def exited(pid: int) -> bool:
    """True once `pid` has exited: gone, or a zombie its parent has not reaped yet (Linux /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(") ", 1)[1][:1] in ("Z", "X")
