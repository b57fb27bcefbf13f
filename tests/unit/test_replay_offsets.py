"""`ilog replay`'s range: a partition the broker answers with an error is asked again, never read as "no
message after the time" (which would start the replay at the partition's end and skip its range)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, TopicPartition

from worker.errors import KafkaClientError
from worker.ops import replay

MOMENT = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)


@dataclass
class Answered:
    """The fields of a TopicPartition the lookup reads (its `error` cannot be set on a real one)."""

    partition: int
    offset: int
    error: KafkaError | None


class AnsweringConsumer:
    """`offsets_for_times` from a script: one answer per call, partition → offset or an error."""

    def __init__(self, answers: list[dict[int, int | KafkaError]]) -> None:
        self.answers = answers
        self.asked: list[list[int]] = []

    def offsets_for_times(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.asked.append([tp.partition for tp in partitions])
        answer = self.answers.pop(0)
        found = []
        for tp in partitions:
            value = answer[tp.partition]
            if isinstance(value, KafkaError):
                found.append(Answered(tp.partition, -1, value))
            else:
                found.append(Answered(tp.partition, value, None))
        return found  # type: ignore[return-value]  # what the code reads of a TopicPartition


@pytest.fixture(autouse=True)
def _no_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(replay, "_OFFSET_LOOKUP_PAUSE_S", 0.0)


def _offsets(consumer: Any) -> dict[int, int]:
    return replay._offsets_at(consumer, "events", [0, 1, 2], MOMENT, {0: 50, 1: 60, 2: 70})


def test_a_partition_answered_with_an_error_is_asked_again_and_minus_one_means_the_end() -> None:
    leader_moving = KafkaError(KafkaError.NOT_LEADER_FOR_PARTITION)
    answers: list[dict[int, int | KafkaError]] = [{0: 5, 1: leader_moving, 2: -1}, {1: 7}]
    consumer = AnsweringConsumer(answers)
    assert {0: 5, 1: 7, 2: 70} == _offsets(consumer)
    assert [[0, 1, 2], [1]] == consumer.asked


def test_a_partition_that_keeps_failing_stops_the_replay_with_the_error() -> None:
    loading = KafkaError(KafkaError.LEADER_NOT_AVAILABLE)
    answers: list[dict[int, int | KafkaError]] = [{0: 5, 1: loading, 2: 9}]
    answers += [{1: loading} for _ in range(replay._OFFSET_LOOKUP_ATTEMPTS - 1)]
    consumer = AnsweringConsumer(answers)
    with pytest.raises(KafkaClientError, match=r"partitions \[1\]"):
        _offsets(consumer)
