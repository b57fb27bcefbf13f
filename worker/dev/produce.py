"""`ilog produce`: send a generated event stream to Kafka or write it to a JSON-lines file.

Kafka: key = subject (the interaction id), idempotent producer, a short linger for batching.
Malformed payloads go out byte for byte, keyed by a subject found in them if any.
Paced mode sends each event when its event-time offset from the first event has elapsed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from rich.console import Console
from rich.progress import Progress

from worker.dev.generator import FAST_RATE_PER_S, GeneratorMix, StreamItem, generate_stream
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

LINGER_MS = 10
_SUBJECT_RE = re.compile(rb'"subject"\s*:\s*"([^"\\]{1,255})"')
_POLL_SLICE_S = 0.1


@dataclass
class ProduceCounts:
    """What was sent: valid events, raw malformed payloads, failed deliveries, distinct interactions."""

    events: int = 0
    malformed: int = 0
    failed: int = 0
    interactions: int = 0
    errors: list[str] = field(default_factory=list)


def encode_item(item: StreamItem) -> tuple[str | None, bytes]:
    """(key, value): compact JSON keyed by subject; raw bytes keyed by a best-effort subject."""
    if isinstance(item, bytes):
        return best_effort_subject(item), item
    return str(item["subject"]), json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()


def best_effort_subject(payload: bytes) -> str | None:
    """The `subject` of a possibly broken JSON payload, or None when it cannot be found."""
    match = _SUBJECT_RE.search(payload)
    return match.group(1).decode("utf-8", errors="replace") if match else None


def pacing_offsets_s(stream: Sequence[StreamItem]) -> list[float | None]:
    """Seconds after the first event's time at which each item is due; None: send at once."""
    offsets: list[float | None] = []
    first: datetime | None = None
    for item in stream:
        if isinstance(item, bytes):
            offsets.append(None)
            continue
        moment = datetime.fromisoformat(item["time"])
        first = first or moment
        offsets.append((moment - first).total_seconds())
    return offsets


def produce_to_kafka(
    stream: Sequence[StreamItem], settings: Settings, *, paced: bool, progress: bool | None = None,
    flush_timeout_s: float = 60.0,
) -> ProduceCounts:
    """Send the stream to the events topic; returns counts once every message is acknowledged."""
    bootstrap.require_kafka(settings)
    producer = bootstrap.plain_producer(settings, **{"enable.idempotence": True, "linger.ms": LINGER_MS})
    counts = _counted(stream)

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            counts.failed += 1
            if len(counts.errors) < 10:
                counts.errors.append(f"{message.topic()} key={message.key()!r}: {error}")

    offsets = pacing_offsets_s(stream) if paced else [None] * len(stream)
    started_s = time.monotonic()
    with _progress_bar(progress, len(stream), f"producing to {settings.events_topic}") as advance:
        for item, offset_s in zip(stream, offsets, strict=True):
            if offset_s is not None:
                _poll_until(producer, started_s + offset_s)
            key, value = encode_item(item)
            _produce(producer, settings.events_topic, key, value, on_delivery)
            advance()
        remaining = producer.flush(flush_timeout_s)
    counts.failed += remaining
    return counts


def write_json_lines(stream: Sequence[StreamItem], path: Path) -> ProduceCounts:
    """One item per line: events as compact JSON, malformed payloads as they are."""
    with path.open("wb") as out:
        for item in stream:
            out.write(encode_item(item)[1] + b"\n")
    return _counted(stream)


def _counted(stream: Sequence[StreamItem]) -> ProduceCounts:
    subjects = {item["subject"] for item in stream if isinstance(item, dict)}
    malformed = sum(isinstance(item, bytes) for item in stream)
    return ProduceCounts(events=len(stream) - malformed, malformed=malformed, interactions=len(subjects))


def _poll_until(producer: Producer, due_s: float) -> None:
    """Wait for an event's due time while serving delivery reports."""
    while (left_s := due_s - time.monotonic()) > 0:
        producer.poll(min(left_s, _POLL_SLICE_S))


def _produce(
    producer: Producer, topic: str, key: str | None, value: bytes,
    on_delivery: Callable[[KafkaError | None, Message], None],
) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:
            # The local queue is full: let librdkafka drain it, then try again.
            producer.poll(_POLL_SLICE_S)


def _progress_bar(
    enabled: bool | None, total: int, description: str
) -> AbstractContextManager[Callable[[], None]]:
    console = Console(stderr=True)
    if not (console.is_terminal if enabled is None else enabled):
        return nullcontext(lambda: None)
    return _RichAdvance(Progress(console=console, transient=False), total, description)


class _RichAdvance:
    def __init__(self, progress: Progress, total: int, description: str) -> None:
        self._progress = progress
        self._task = progress.add_task(description, total=total)

    def __enter__(self) -> Callable[[], None]:
        self._progress.start()
        return lambda: self._progress.advance(self._task)

    def __exit__(self, *exc_info: object) -> None:
        self._progress.stop()


def produce_command(
    settings: Settings, *, interactions: int, rate_per_s: float, seed: int | None, out: Path | None,
    edit_window_s: float | None, mix: GeneratorMix, time_scale: float,
) -> tuple[int, dict[str, Any]]:
    """Generate and send; returns (exit code, summary). Wall-clock time is read here, not in the generator."""
    now = datetime.now(UTC)
    seed = int(now.timestamp()) if seed is None else seed
    window_s = settings.edit_window_seconds if edit_window_s is None else edit_window_s
    stream = generate_stream(
        interactions, seed=seed, start=now, rate_per_s=rate_per_s if rate_per_s > 0 else FAST_RATE_PER_S,
        edit_window_s=window_s, mix=mix, time_scale=time_scale,
    )
    if out is not None:
        counts, target = write_json_lines(stream, out), str(out)
    else:
        counts, target = produce_to_kafka(stream, settings, paced=rate_per_s > 0), settings.events_topic
    summary = {"target": target, "seed": seed, **asdict(counts)}
    return (1 if counts.failed else 0), summary
