"""Prometheus metrics. Defined once at import (no clients, no I/O); served by `worker.runtime.health`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable

from prometheus_client import Counter, Gauge, Histogram

EVENTS_CONSUMED = Counter("ilog_events_consumed_total", "Events read from the events topic")
EVENTS_FOLDED = Counter("ilog_events_folded_total", "Events accepted by the fold", ["trigger"])
EVENTS_DUPLICATE = Counter("ilog_events_duplicate_total", "Events already applied (no-ops)")
EVENTS_REJECTED = Counter("ilog_events_rejected_total", "Events sent to the DLQ", ["reason"])
MESSAGES_REFUSED = Counter(
    "ilog_messages_refused_total", "Messages Kafka refused for their size; a cut copy went to the DLQ", ["topic"]
)
SNAPSHOTS_EMITTED = Counter("ilog_snapshots_emitted_total", "Snapshots produced to the upserts topic", ["trigger"])
FENCED_WRITES = Counter("ilog_fenced_writes_total", "Writes refused because a newer version was stored")
CONSUMER_LAG = Gauge("ilog_consumer_lag", "Messages behind the end of the partition", ["group", "partition"])
OPEN_WINDOWS = Gauge("ilog_open_windows", "Interactions whose edit window is open", ["partition"])
WINDOWS_CLOSED = Counter("ilog_windows_closed_total", "Edit windows closed (finalized logs)")
WINDOWS_CLOSED_LATE = Counter(
    "ilog_windows_closed_late_total", "Windows closed more than grace + 3 s after their deadline (wall-clock)"
)
BATCH_SECONDS = Histogram("ilog_fold_batch_seconds", "Time to fold and persist one batch")
UPSERTS = Counter("ilog_upserts_total", "Snapshots synced to a target", ["target", "outcome"])
TARGET_PAUSED = Gauge(
    "ilog_target_paused", "1 while a target is paused (credentials refused, unreachable), else 0", ["target"]
)
API_BUDGET_LEFT = Gauge("ilog_api_budget_left", "Requests left in the shared API budget", ["target", "window"])
SYNC_LATENCY = Histogram(
    "ilog_sync_latency_seconds",
    "From the snapshot's production to the target's acknowledgement",
    ["target"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
)
STORE_UNAVAILABLE = Gauge("ilog_store_unavailable", "1 while the stage waits for Redis to answer", ["stage"])
BROKER_ERRORS = Counter("ilog_broker_errors_total", "Connection errors the stage's Kafka consumer reported", ["stage"])
STATE_RESTORES = Counter("ilog_state_restores_total", "Partitions whose state was restored from the changelog")
STATE_REGRESSIONS = Counter(
    "ilog_state_regressions_total",
    "States found older than this consumer last wrote (a failover lost acknowledged writes), repaired",
)
STATE_RESTORED = Counter("ilog_state_restored_keys_total", "Interaction states written back from the changelog")
FLUSH_RETRIES = Counter("ilog_flush_retries_total", "Producer flushes retried (Kafka did not acknowledge in time)")
SYNC_QUEUE_DEPTH = Gauge(
    "ilog_sync_queue_depth", "Interactions queued for a target (waiting or in a call)", ["target"]
)
LOOP_HEARTBEAT = Gauge(
    "ilog_loop_heartbeat_timestamp_seconds",
    "Unix time the stage's loop last finished a step (it steps at least every batch timeout, idle or not)",
    ["stage"],
)
BUILD_INFO = Gauge(
    "ilog_build_info", "Always 1: what is running", ["version", "revision", "python", "librdkafka"]
)


def forget_partitions(group: str, partitions: Iterable[int]) -> None:
    """A partition that left this consumer takes its series along (the new owner reports them)."""
    for partition in partitions:
        _remove(CONSUMER_LAG, group, str(partition))
        _remove(OPEN_WINDOWS, str(partition))


def keep_lag_series(group: str, reported: Iterable[int]) -> None:
    """Remove the group's lag series of partitions the latest statistics no longer report."""
    wanted = {str(partition) for partition in reported}
    for labels in _label_sets(CONSUMER_LAG):
        if labels[0] == group and labels[1] not in wanted:
            _remove(CONSUMER_LAG, *labels)


def _label_sets(gauge: Gauge) -> list[tuple[str, ...]]:
    return [tuple(sample.labels[name] for name in gauge._labelnames)
            for metric in gauge.collect() for sample in metric.samples]


def _remove(gauge: Gauge, *labels: str) -> None:
    with contextlib.suppress(KeyError):  # never reported on this process
        gauge.remove(*labels)
