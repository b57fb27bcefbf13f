"""What a stage reports about itself to `/healthz` and `/readyz`: its heartbeat and what it waits for.

A stage beats once per loop iteration and while it waits on purpose (Redis down, a flush retried),
so `/healthz` fails only when the loop is stuck. `/readyz` is false while the stage waits for Redis,
restores state, or its consumer reports every broker down; it is ready again as soon as the consumer
fetches or its statistics (every second) show a broker up, so an idle stage does not stay not-ready
after an outage for want of a message to fetch.

The statistics also say whether the consumer has its group coordinator (`cgrp.state` is `up`; a rebalance
in progress keeps it). A consumer without one while the brokers answer other clients is wedged: librdkafka
(2.10 and later) drops every broker it knows, bootstrap ones included, when a metadata answer lists
none (a cluster whose every broker is fenced for a moment, e.g. after a pause), and may then never find
its group coordinator again. `/healthz` fails then (`worker.runtime.runner.liveness`), so the pod is
restarted with fresh clients; docs/runbook.md has the case.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import KafkaError

from worker.runtime import metrics

_BROKERS_DOWN = {KafkaError._ALL_BROKERS_DOWN}
_BROKER_TROUBLE = {KafkaError._ALL_BROKERS_DOWN, KafkaError._TRANSPORT, KafkaError._RESOLVE,
                   KafkaError._TIMED_OUT, KafkaError.NETWORK_EXCEPTION}


class StageStatus:
    """Thread-safe enough for probes: single assignments of immutable values, read from another thread."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.beat_at = time.monotonic()
        self.store_down_since: float | None = None
        self.store_down_detail = ""  # the store's last answer while down (unreachable, full)
        self.restoring: list[int] = []
        self.brokers_down = False
        self.broker_trouble_at = 0.0  # monotonic time of the last connection error the consumer reported
        self.uncoordinated_since: float | None = None  # monotonic time the statistics first said so
        self._lock = threading.Lock()
        self._stats: dict[str, Any] | None = None

    def stats(self, stats: dict[str, Any]) -> None:
        """The consumer's latest statistics (librdkafka's `stats_cb`, parsed); a broker up ends "all down"."""
        self._stats = stats
        if self.brokers_down and _any_broker_up(stats):
            self.brokers_down = False
        coordinated = _has_coordinator(stats)
        if coordinated:
            self.uncoordinated_since = None
        elif coordinated is False and self.uncoordinated_since is None:
            self.uncoordinated_since = time.monotonic()

    def uncoordinated_s(self) -> float:
        """How long the consumer has been without its group coordinator (looking for it, connecting); 0 with."""
        since = self.uncoordinated_since
        return 0.0 if since is None else time.monotonic() - since

    def take_stats(self) -> dict[str, Any] | None:
        stats, self._stats = self._stats, None
        return stats

    def beat(self) -> None:
        """The loop came round, or waits on purpose (then `ilog_loop_heartbeat_timestamp_seconds` moves too)."""
        self.beat_at = time.monotonic()

    def waiting(self) -> None:
        """A beat from inside a deliberate wait (Redis down, a flush retried, a restore)."""
        self.beat()
        metrics.LOOP_HEARTBEAT.labels(self.name).set_to_current_time()

    def stalled_s(self) -> float:
        return time.monotonic() - self.beat_at

    def store_down(self, detail: str = "") -> None:
        self.store_down_detail = detail
        if self.store_down_since is None:
            self.store_down_since = time.monotonic()
            metrics.STORE_UNAVAILABLE.labels(self.name).set(1)

    def store_up(self) -> None:
        if self.store_down_since is not None:
            self.store_down_since = None
            metrics.STORE_UNAVAILABLE.labels(self.name).set(0)

    def kafka_error(self, error: KafkaError) -> None:
        """librdkafka's `error_cb` (served from consume/poll on the stage's thread)."""
        code = error.code()
        if code in _BROKER_TROUBLE:
            with self._lock:
                self.broker_trouble_at = time.monotonic()
                self.brokers_down = self.brokers_down or code in _BROKERS_DOWN
            metrics.BROKER_ERRORS.labels(self.name).inc()

    def kafka_fetched(self) -> None:
        """The consumer fetched (a message, or the end of a partition): the brokers answer."""
        self.brokers_down = False

    def not_ready_reason(self) -> str | None:
        if self.store_down_since is not None:
            waited_s = time.monotonic() - self.store_down_since
            detail = f": {self.store_down_detail}" if self.store_down_detail else ""
            return f"{self.name}: redis unavailable for {waited_s:.0f} s{detail}"
        if self.restoring:
            return f"{self.name}: restoring the state of partitions {self.restoring}"
        if self.brokers_down:
            return f"{self.name}: all brokers down"
        return None


def _has_coordinator(stats: dict[str, Any]) -> bool | None:
    """The group's coordinator found and connected (`up`, whatever the join state: a slow rebalance is no
    wedge); None for statistics without a group part (a consumer without `group.id`)."""
    group = stats.get("cgrp")
    if not isinstance(group, dict):
        return None
    return group.get("state") == "up"


def _any_broker_up(stats: dict[str, Any]) -> bool:
    brokers = stats.get("brokers")
    if not isinstance(brokers, dict):
        return False
    return any(isinstance(broker, dict) and broker.get("state") == "UP" for broker in brokers.values())
