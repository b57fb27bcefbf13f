"""The worker's error tree: one root, one-line subclasses."""

from __future__ import annotations


class IlogError(Exception):
    """Root of every error the worker raises on purpose."""


class StoreError(IlogError):
    """The state store (Redis) failed; the batch is not acknowledged and will be re-consumed."""


class DeliveryError(IlogError):
    """Kafka did not acknowledge produced messages; offsets are not stored."""


class ConfigError(IlogError):
    """A setting is missing or contradictory."""


class UnreachableError(IlogError):
    """Kafka or Redis did not answer: what, where, and what to check, in one sentence."""

    def __init__(self, service: str, where: str, detail: str, hint: str) -> None:
        super().__init__(f"cannot reach {service} at {where} ({detail}); {hint}")
        self.service = service
        self.where = where
