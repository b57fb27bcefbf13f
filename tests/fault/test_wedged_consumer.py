"""`/healthz`'s wedged-consumer rule read off a real consumer's statistics, across a real broker outage.

The rule (`worker.runtime.runner.liveness`, `StageStatus.uncoordinated_s`) restarts a pod whose consumer has
been without its group coordinator for `ILOG_HEALTH_STALL_SECONDS` while the brokers answer the worker's
metadata probe. Unit tests feed it statistics written by hand; here librdkafka writes them: a stage consumer
that joined its group has its coordinator (`cgrp.state` `up`, so no healthy pod is ever judged wedged); with
the broker stopped it has none, and the probe fails, so the pod is judged in an outage, not wedged, and stays
alive; with the broker back the consumer has its coordinator again. The wedge itself (librdkafka dropping every
broker after a metadata answer that listed none) needs a request to land in a fenced broker's ~60 ms window, so
it is not made here; docs/runbook.md has the case.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

from confluent_kafka import Consumer

from tests.conftest import STACK
from tests.support import wait_for
from worker.runtime import bootstrap
from worker.runtime.runner import liveness
from worker.runtime.settings import Settings
from worker.runtime.status import StageStatus


def _stack(command: str) -> None:
    done = subprocess.run([str(STACK), command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _polled(consumer: Consumer, until: Callable[[], bool], timeout_s: float) -> bool:
    """Poll (which serves the statistics callback) until `until()` holds."""
    def step() -> bool:
        consumer.poll(0.1)
        return until()
    return wait_for(step, timeout_s)


def test_a_joined_consumer_has_its_coordinator_and_a_broker_outage_is_no_wedge(settings: Settings) -> None:
    run = settings.model_copy(update={"health_stall_seconds": 1.0})
    status = StageStatus("fold")
    consumer = bootstrap.stage_consumer(run, f"{run.fold_group}-wedge", status)
    probe = bootstrap.kafka_probe(run, timeout_s=1.0)
    alive = liveness([status], run.health_stall_seconds, probe)
    try:
        consumer.subscribe([run.events_topic])
        assert _polled(consumer, lambda: bool(consumer.assignment()), 30)
        assert _polled(consumer, lambda: status.uncoordinated_since is None, 5)
        status.beat()
        assert (True, "ok") == alive()
        _stack("kafka-stop")
        try:
            assert _polled(consumer, lambda: status.uncoordinated_s() > run.health_stall_seconds, 30)
            assert probe() is not None  # the brokers answer nobody: an outage
            status.beat()  # (the stall rule is 1 s here too; the stage's loop would beat)
            assert (True, "ok") == alive()
        finally:
            _stack("kafka-start")
        assert _polled(consumer, lambda: status.uncoordinated_since is None, 60)
        status.beat()
        assert (True, "ok") == alive()
    finally:
        consumer.close()
