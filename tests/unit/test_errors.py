"""One error root: every exception the software defines is an `IlogError`; driver errors leave the store
and the Kafka edges translated."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable
from typing import Any

import pytest
import redis
from confluent_kafka import KafkaError, KafkaException
from redis.backoff import NoBackoff
from redis.retry import Retry

import adapters
import worker
from worker.errors import (
    DeliveryError,
    IlogError,
    KafkaClientError,
    StateLostError,
    StoreError,
    StoreUnavailableError,
)
from worker.kafka.clients import DeliveryTracker, store_offsets
from worker.store.redis_store import RedisStore, store_errors

PACKAGES = (adapters, worker)


def _defined_exceptions() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for package in PACKAGES:
        for module_info in pkgutil.walk_packages(package.__path__, f"{package.__name__}."):
            module = importlib.import_module(module_info.name)
            for name, value in inspect.getmembers(module, inspect.isclass):
                if issubclass(value, BaseException) and value.__module__ == module.__name__:
                    found[f"{module.__name__}.{name}"] = value
    return found


def test_every_exception_the_software_defines_has_the_one_root() -> None:
    defined = _defined_exceptions()
    assert {"adapters.base.SyncError", "worker.errors.StoreError", "worker.runtime.targets.TargetConfigError"} <= set(
        defined)
    assert [] == [name for name, error in defined.items() if not issubclass(error, IlogError)]


def _unreachable_store() -> RedisStore:
    # nothing listens on port 1: every call fails with a connection error, fast
    return RedisStore(redis.Redis(port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)), "unit")


@pytest.mark.parametrize(
    "call",
    [
        lambda store: store.load(["a"]),
        lambda store: store.due(0, 1, 10),
        lambda store: store.open_windows(0),
        lambda store: store.due_many({0: 1}, 10),
        lambda store: store.open_windows_many([0]),
        lambda store: store.unschedule(0, ["a"]),
    ],
    ids=["load", "due", "open_windows", "due_many", "open_windows_many", "unschedule"],
)
def test_a_redis_failure_leaves_the_store_as_store_error(call: Callable[[RedisStore], Any]) -> None:
    store = _unreachable_store()
    with pytest.raises(StoreError) as raised:
        call(store)
    assert isinstance(raised.value.__cause__, redis.ConnectionError)


class _FailingClient:
    """The two librdkafka calls of the boundary, failing as librdkafka does."""

    def flush(self, timeout_s: float) -> int:
        raise KafkaException(KafkaError(KafkaError._FATAL, "fenced"))

    def store_offsets(self, offsets: object) -> None:
        raise KafkaException(KafkaError(KafkaError._STATE, "not assigned"))


def test_a_failed_flush_leaves_as_delivery_error() -> None:
    with pytest.raises(DeliveryError, match="flushing the producer failed"):
        DeliveryTracker().flush(_FailingClient(), 1.0)  # type: ignore[arg-type]


def test_a_failed_offset_store_leaves_as_kafka_client_error() -> None:
    with pytest.raises(KafkaClientError, match="storing offsets of 1 partitions failed"):
        store_offsets(_FailingClient(), {("events", 0): 5})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("driver_error", "expected"),
    [
        (redis.ConnectionError("connection refused"), StoreUnavailableError),
        (redis.TimeoutError("timed out"), StoreUnavailableError),
        (redis.exceptions.ClusterDownError("The cluster is down"), StoreUnavailableError),
        (redis.exceptions.TryAgainError("TRYAGAIN"), StoreUnavailableError),
        (redis.ResponseError("ILOGLOST 3"), StateLostError),
        (redis.ResponseError("WRONGTYPE"), StoreError),
    ],
    ids=["connection", "timeout", "cluster-down", "try-again", "lost", "other"],
)
def test_a_restarting_cluster_master_is_waited_for_not_fatal(
    driver_error: redis.RedisError, expected: type[StoreError],
) -> None:
    """"Cluster down" is what a master answers for a moment after it restarts: the stages wait it out."""
    with pytest.raises(StoreError) as raised, store_errors("reading"):
        raise driver_error
    assert expected is type(raised.value)
