"""Readiness of a stage after a broker outage: not ready while every broker is down, ready when one is up."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError

from worker.runtime.status import StageStatus


def _stats(*states: str) -> dict[str, Any]:
    """librdkafka statistics with one broker entry per state (the bootstrap entry first)."""
    names = ["127.0.0.1:9092/bootstrap", *(f"127.0.0.1:9092/{n}" for n in range(1, len(states)))]
    return {"brokers": {name: {"name": name, "state": state} for name, state in zip(names, states, strict=True)}}


def _after_outage() -> StageStatus:
    status = StageStatus("sync")
    status.kafka_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    return status


def test_every_broker_down_makes_the_stage_not_ready_and_statistics_without_a_broker_up_keep_it_so() -> None:
    status = _after_outage()
    status.stats(_stats("INIT", "TRY_CONNECT"))
    status.stats({})
    assert "sync: all brokers down" == status.not_ready_reason()


def test_statistics_showing_a_broker_up_make_an_idle_stage_ready_again_without_a_fetch() -> None:
    status = _after_outage()
    status.stats(_stats("INIT", "DOWN", "UP"))
    assert status.not_ready_reason() is None


def test_a_fetch_makes_the_stage_ready_again() -> None:
    status = _after_outage()
    status.kafka_fetched()
    assert status.not_ready_reason() is None
