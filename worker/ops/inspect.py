"""`ilog inspect ID`: the log as Redis holds it, in the snapshot shape of CONTRACT.md.

A finalized interaction keeps only a compact tombstone in Redis. For it the command prints the final
snapshot the fold stage produced to the upserts topic (found from the finalization time on), or, when
that is not there any more (retention) or Kafka does not answer, the tombstone's facts in the same
shape (`interaction_id`, `version`, `finalized: true`, `finalized_at`) with a note on stderr.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict
from typing import Any, TypeVar

import typer
from confluent_kafka import KafkaException, TopicPartition

from adapters.base import TargetState
from worker.core.fold import snapshot
from worker.core.state import InteractionLog, Tombstone, to_us
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.runtime.targets import TARGET_NAMES

T = TypeVar("T")

FINAL_SNAPSHOT_SEARCH_S = 30.0
"""Longest look for a tombstone's final snapshot on the upserts topic before the tombstone is shown."""


def inspect_interaction(interaction_id: str, settings: Settings) -> int:
    """Exit 0 with the log as JSON; 1 with a clear sentence when there is no log."""
    bootstrap.require_redis(settings)
    store = bootstrap.log_store(settings)
    try:
        stored = store.load([interaction_id])[interaction_id]
        states = bootstrap.sync_state_store(settings, store.client).load([interaction_id], TARGET_NAMES)
        synced = {target: asdict(state) for (_id, target), state in states.items() if state != TargetState()}
    finally:
        store.close()
    state = stored.state
    if isinstance(state, InteractionLog):
        _print(snapshot(state).model_dump(mode="json"), synced)
        return 0
    if isinstance(state, Tombstone):
        final, note = final_snapshot(settings, state)
        if final is None:
            typer.echo(f"{interaction_id}: finalized; Redis keeps only a tombstone and {note}: showing what the "
                       "tombstone holds", err=True)
            final = {"interaction_id": interaction_id, "version": state.version, "finalized": True,
                     "finalized_at": state.finalized_at.isoformat().replace("+00:00", "Z")}
        _print(final, synced)
        return 0
    typer.echo(f"{interaction_id}: no log in Redis (never seen, or expired after its retention)", err=True)
    return 1


def final_snapshot(settings: Settings, tombstone: Tombstone) -> tuple[dict[str, Any] | None, str]:
    """The tombstone's final snapshot from the upserts topic, or None and why it is not shown.

    Read from the first message produced at or after the finalization time (the edit deadline, in event
    time: the final snapshot is produced once the partition clock passed it, which runs at most the allowed
    clock skew ahead of the worker's wall clock, so the read starts that much earlier) up to the topic's
    ends at the start, on every partition; the read stops at the tombstone's own version."""
    topic, key = settings.upserts_topic, tombstone.interaction_id.encode()
    consumer = bootstrap.plain_consumer(settings, **{
        "group.id": f"ilog-inspect-{uuid.uuid4().hex[:8]}", "enable.auto.commit": False,
        "enable.partition.eof": False,
    })
    try:
        timeout_s = settings.connect_timeout_seconds
        metadata = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
        if metadata is None or metadata.error is not None:
            return None, f"the upserts topic {topic} was not found"
        since_ms = to_us(tombstone.finalized_at) // 1000 - int(settings.max_clock_skew_seconds * 1000)
        starts = _retrying(lambda: consumer.offsets_for_times(
            [TopicPartition(topic, p, since_ms) for p in metadata.partitions], timeout=timeout_s))
        ends = {p: _end_offset(consumer, TopicPartition(topic, p), timeout_s) for p in metadata.partitions}
        wanted = [start for start in starts if 0 <= start.offset < ends[start.partition]]
        found = _newest_for_key(consumer, wanted, ends, key, tombstone.version) if wanted else None
    except KafkaException as error:
        return None, f"Kafka did not answer ({error})"
    finally:
        consumer.close()
    if found is None:
        return None, f"its final snapshot (v{tombstone.version}) is not on {topic} any more"
    return found, ""


def _retrying(call: Callable[[], T], attempts: int = 20, pause_s: float = 0.25) -> T:
    """`call()`, again after a broker error: a new topic's partitions answer `NOT_LEADER_FOR_PARTITION`
    (which librdkafka does not flag retriable) until their leaders are elected."""
    for _ in range(attempts - 1):
        try:
            return call()
        except KafkaException:
            time.sleep(pause_s)
    return call()


def _end_offset(consumer: Any, partition: TopicPartition, timeout_s: float) -> int:
    low_high: tuple[int, int] = _retrying(lambda: consumer.get_watermark_offsets(partition, timeout=timeout_s))
    return low_high[1]


def _newest_for_key(consumer: Any, starts: list[TopicPartition], ends: dict[int, int], key: bytes,
                    version: int) -> dict[str, Any] | None:
    consumer.assign(starts)
    left = {start.partition for start in starts}
    newest: dict[str, Any] | None = None
    deadline = time.monotonic() + FINAL_SNAPSHOT_SEARCH_S
    while left and time.monotonic() < deadline:
        for message in consumer.consume(1000, 0.5):
            if message.error() is not None:
                continue
            partition, offset = message.partition(), message.offset()
            if offset + 1 >= ends[partition]:
                left.discard(partition)
            if message.key() != key or offset >= ends[partition]:
                continue
            document = json.loads(message.value())
            if newest is None or document.get("version", 0) > newest.get("version", 0):
                newest = document
            if document.get("version") == version:
                return newest
    return newest if newest is not None and newest.get("version") == version else None


def _print(document: dict[str, Any], synced: dict[str, Any]) -> None:
    if synced:
        document["synced"] = synced
    typer.echo(json.dumps(document, indent=2, ensure_ascii=False))
