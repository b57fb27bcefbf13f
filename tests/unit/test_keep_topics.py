"""`keep_topics`: the worker creates the topics its stages use once Kafka answers, trying again until it does."""

from __future__ import annotations

import threading

import pytest
from confluent_kafka import KafkaException

from worker.errors import ConfigError
from worker.kafka import topics
from worker.runtime.runner import StageName, keep_topics, stage_topics
from worker.runtime.settings import Settings

SETTINGS = Settings(_env_file=None, events_topic="ev", upserts_topic="up")


def test_each_stage_keeps_the_topics_it_reads_and_writes() -> None:
    assert {stage: stage_topics(stage, SETTINGS) for stage in StageName} == {
        StageName.FOLD: ["ev", "ev.dlq", "up", "ev.state"],
        StageName.SYNC: ["up", "up.dlq"],
        StageName.ALL: ["ev", "ev.dlq", "up", "ev.state", "up.dlq"],
    }


def test_an_unreachable_kafka_is_asked_again_until_the_topics_are_made(monkeypatch: pytest.MonkeyPatch) -> None:
    answers: list[object] = [KafkaException("down"), KafkaException("down"), ["ev.state"]]
    asked: list[list[str]] = []

    def ensure(settings: Settings, names: list[str]) -> list[str]:
        asked.append(names)
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        assert isinstance(answer, list)
        return answer

    monkeypatch.setattr(topics, "ensure_topics", ensure)
    keep_topics(SETTINGS, ["ev", "ev.state"], threading.Event(), retry_s=0.0)
    assert (asked, answers) == ([["ev", "ev.state"]] * 3, [])


def test_topic_configs_that_contradict_the_settings_stop_the_tries(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def ensure(settings: Settings, names: list[str]) -> list[str]:
        calls.append(1)
        raise ConfigError("retention shorter than the open-log TTL")

    monkeypatch.setattr(topics, "ensure_topics", ensure)
    keep_topics(SETTINGS, ["ev"], threading.Event(), retry_s=0.0)
    assert calls == [1]


def test_a_stopped_worker_stops_trying(monkeypatch: pytest.MonkeyPatch) -> None:
    stop = threading.Event()

    def ensure(settings: Settings, names: list[str]) -> list[str]:
        stop.set()
        raise KafkaException("down")

    monkeypatch.setattr(topics, "ensure_topics", ensure)
    keep_topics(SETTINGS, ["ev"], stop, retry_s=0.0)
    assert stop.is_set()
