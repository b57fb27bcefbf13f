"""The worker's error tree: one root, one-line leaves.

The root lives in `adapters.base` (the adapters import nothing of the worker, and `schemas` is the
contract producers read, not a home for the software's internals): every error raised on purpose,
a target's `SyncError` included, is an `IlogError`. Driver errors are translated where the driver
is called: `redis.RedisError` into `StoreError` in `worker.store`, `KafkaException` into
`KafkaClientError` or `DeliveryError` in `worker.kafka`.
"""

from __future__ import annotations

from adapters.base import IlogError

__all__ = ["ConfigError", "DeliveryError", "IlogError", "KafkaClientError", "StoreError"]


class StoreError(IlogError):
    """The state store (Redis) failed; the batch is not acknowledged and will be re-consumed."""


class DeliveryError(IlogError):
    """Kafka did not acknowledge produced messages; offsets are not stored."""


class KafkaClientError(IlogError):
    """A Kafka client call failed (librdkafka's error, translated where the call is made)."""


class ConfigError(IlogError):
    """A setting is missing or contradictory."""


class UnreachableError(IlogError):
    """Kafka or Redis did not answer: what, where, and what to check, in one sentence."""

    def __init__(self, service: str, where: str, detail: str, hint: str) -> None:
        super().__init__(f"cannot reach {service} at {where} ({detail}); {hint}")
        self.service = service
        self.where = where


class StoreUnavailableError(StoreError):
    """Redis did not answer (connection refused or reset, timeout, still loading): wait and retry."""


class StoreFullError(StoreUnavailableError):
    """Redis refused a write for want of memory (`maxmemory` reached under `noeviction`): wait until freed."""


class StateLostError(StoreError):
    """The store no longer holds the state of these partitions (restarted empty, flushed, failed over)."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"the state store lost the state of partitions {partitions}")
        self.partitions = partitions


class DeliveryTimeoutError(DeliveryError):
    """Kafka did not acknowledge in time (the producer is still resending): flush again."""
