"""Outages and state loss without services: partition clocks, the store guard, the start-up checks."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.errors import ConfigError, StateLostError, StoreError, StoreUnavailableError
from worker.fold.finalizer import PartitionClocks, evidence_lead_ms
from worker.fold.recovery import StateRestorer, StoppingError, StoreGuard, Waiter
from worker.kafka.clients import consumer_config, partitions_at_end, producer_config, statistics_age_ms
from worker.runtime.runner import liveness
from worker.runtime.settings import Settings
from worker.runtime.status import StageStatus
from worker.store.checks import _check_eviction
from worker.store.memory import MemoryStore
from worker.store.port import WriteResult

WALL_MS = 1_800_000_000_000


def _clocks() -> PartitionClocks:
    clocks = PartitionClocks(fresh_ms=5_000, settle_ms=10_000)
    clocks.assign([0, 1])
    clocks.observe(0, WALL_MS - 60_000)
    clocks.reached_end(0, WALL_MS)
    clocks.reached_end(1, WALL_MS)
    return clocks


def test_a_partition_read_to_its_end_follows_the_wall_clock_up_to_its_evidence_while_that_is_fresh() -> None:
    clocks = _clocks()
    assert WALL_MS - 1_000 == clocks.clock_ms(0, WALL_MS - 1_000)  # never ahead of the wall clock
    assert WALL_MS == clocks.clock_ms(0, WALL_MS + 5_000)  # not past the answer that showed the end
    assert WALL_MS - 60_000 == clocks.clock_ms(0, WALL_MS + 5_001)  # no fresh EOF or statistics
    clocks.reached_end(0, WALL_MS + 6_000)
    assert WALL_MS + 6_000 == clocks.clock_ms(0, WALL_MS + 6_500)


def test_a_caught_up_clock_may_lead_its_evidence_by_less_than_the_grace() -> None:
    assert (500, 1_000, 1_000, 0) == tuple(evidence_lead_ms(grace) for grace in (1.0, 2.0, 30.0, 0.0))
    clocks = PartitionClocks(fresh_ms=5_000, lead_ms=1_000)
    clocks.assign([0])
    clocks.reached_end(0, WALL_MS)
    assert (WALL_MS + 800, WALL_MS + 1_000) == (clocks.clock_ms(0, WALL_MS + 800), clocks.clock_ms(0, WALL_MS + 4_000))


def test_a_broker_that_stops_answering_stops_the_clocks_at_its_last_answer_not_at_its_detection() -> None:
    """A hung broker sends no error: for the first seconds its statistics still count it as answering, with a
    growing silence (`rxidle`). The evidence they give is dated back by that silence, so the clock stays at the
    last answer, and a window due in those seconds waits for the edits that producers hold meanwhile."""
    clocks = _clocks()
    clocks.observe(0, WALL_MS - 500)  # an event read, then the end of the partition at the last answer
    clocks.reached_end(0, WALL_MS)
    for silent_ms in (500, 1_500, 2_500):  # the statistics every half second... each dated back to WALL_MS
        clocks.reached_end(0, WALL_MS + silent_ms - silent_ms)
        assert WALL_MS == clocks.clock_ms(0, WALL_MS + silent_ms)
    clocks.reached_end(0, WALL_MS - 200)  # evidence does not move back
    assert WALL_MS == clocks.clock_ms(0, WALL_MS + 3_000)
    clocks.observe(0, WALL_MS + 2_000)  # an event timed later than the evidence (within the skew) counts
    clocks.reached_end(0, WALL_MS)
    assert WALL_MS + 2_000 == clocks.clock_ms(0, WALL_MS + 3_000)


def test_broker_trouble_freezes_the_clocks_until_fetching_works_and_the_settle_time_passed() -> None:
    clocks = _clocks()
    clocks.suspend()
    assert (WALL_MS - 60_000, 0) == (clocks.clock_ms(0, WALL_MS + 1_000), clocks.clock_ms(1, WALL_MS + 1_000))
    clocks.fetched(WALL_MS + 20_000)  # the broker is back: settle 10 s
    clocks.reached_end(0, WALL_MS + 20_000)
    assert WALL_MS - 60_000 == clocks.clock_ms(0, WALL_MS + 20_000)
    clocks.reached_end(0, WALL_MS + 30_000)
    assert WALL_MS + 30_000 == clocks.clock_ms(0, WALL_MS + 30_000)
    assert 0 == clocks.clock_ms(1, WALL_MS + 30_000)  # partition 1 has not shown its end since


def test_a_replay_clock_needs_no_fresh_evidence() -> None:
    clocks = PartitionClocks()
    clocks.assign([0])
    clocks.reached_end(0)
    assert WALL_MS == clocks.clock_ms(0, WALL_MS)
    assert 0 == clocks.clock_ms(0, WALL_MS, follow_wall_clock=False)


def _stats(rxidle_us: int, state: str = "UP", app_offset: int = 7, eof_offset: int = -1001) -> dict[str, Any]:
    partition = {"leader": 1, "fetch_state": "active", "hi_offset": 7, "app_offset": app_offset,
                 "eof_offset": eof_offset}
    return {
        "brokers": {"b/1": {"nodeid": 1, "state": state, "rxidle": rxidle_us}},
        "topics": {"events": {"partitions": {"0": partition, "1": {**partition, "app_offset": 3}, "-1": {}}}},
    }


def test_statistics_say_which_partitions_are_at_their_end_and_whether_a_leader_is_silent() -> None:
    assert ({0: 300_000}, False) == partitions_at_end(_stats(300_000), "events", [0, 1])
    assert ({}, True) == partitions_at_end(_stats(4_000_000), "events", [0, 1])
    assert ({}, True) == partitions_at_end(_stats(100, state="DOWN"), "events", [0, 1])
    assert ({}, False) == partitions_at_end(_stats(100), "other", [0, 1])


class FakeConsumer:
    """Only `committed`: which partitions the group has committed offsets for."""

    def __init__(self, committed: dict[int, int]) -> None:
        self._committed = committed

    def committed(self, partitions: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        return [TopicPartition(tp.topic, tp.partition, self._committed.get(tp.partition, -1001)) for tp in partitions]


class FlakyStore(MemoryStore):
    """Unreachable for the first `down` calls of `write`."""

    def __init__(self, down: int) -> None:
        super().__init__()
        self.down = down

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        if self.down > 0:
            self.down -= 1
            raise StoreUnavailableError("connection refused")
        return super().write(writes, guard)


def _guard(store: MemoryStore, committed: dict[int, int], stop: threading.Event | None = None) -> StoreGuard:
    waiter = Waiter(StageStatus("fold"), stop or threading.Event(), max_delay_s=0.01)
    return StoreGuard(store, None, FakeConsumer(committed), "events", waiter)  # type: ignore[arg-type]


def _log_write(interaction_id: str) -> list[StateWrite]:
    return [StateWrite(interaction_id, 0, InteractionLog(interaction_id, version=1), ttl_ms=60_000)]


def test_the_guard_retries_while_redis_is_unreachable_and_reports_it_meanwhile() -> None:
    store = FlakyStore(down=3)
    store.mark([0])
    guard = _guard(store, {})
    seen_down: list[bool] = []

    def work() -> list[str]:
        seen_down.append(guard.waiter.status.store_down_since is not None)
        return store.write(_log_write("a"), [0]).fenced_out

    assert [] == guard.call(work, lambda: [0])
    assert [False, True, True, True] == seen_down
    assert guard.waiter.status.not_ready_reason() is None
    assert {"a"} == set(store.states)


def test_a_guarded_write_to_a_store_without_marks_is_refused_whole() -> None:
    store = MemoryStore()
    store.mark([1])
    with pytest.raises(StateLostError) as raised:
        store.write(_log_write("a"), [0, 1])
    assert ([0], {}) == (raised.value.partitions, store.states)


def test_partitions_the_group_never_committed_are_marked_and_the_work_runs_again() -> None:
    store = MemoryStore()
    guard = _guard(store, committed={})
    assert [] == guard.call(lambda: store.write(_log_write("a"), [0, 1]).fenced_out, lambda: [0, 1])
    assert ({0, 1}, {"a"}) == (store.marks, set(store.states))


def test_a_lost_partition_with_committed_offsets_is_never_folded_over_without_a_changelog() -> None:
    store = MemoryStore()
    store.mark([1])
    guard = _guard(store, committed={0: 42})
    with pytest.raises(StoreError, match="no changelog"):
        guard.call(lambda: store.write(_log_write("a"), [0]).fenced_out, lambda: [0, 1])
    assert {} == store.states


def test_stopping_while_waiting_for_redis_leaves_the_batch_unwritten() -> None:
    stop = threading.Event()
    stop.set()
    store = FlakyStore(down=100)
    with pytest.raises(StoppingError):
        _guard(store, {}, stop).call(lambda: store.write(_log_write("a")), lambda: [])
    assert {} == store.states


def test_eviction_is_refused_unless_allowed_and_a_redis_without_maxmemory_is_fine() -> None:
    _check_eviction("noeviction", "1000000", allowed=False)
    _check_eviction("allkeys-lru", "0", allowed=False)
    _check_eviction("allkeys-lru", "1000000", allowed=True)
    with pytest.raises(ConfigError, match="maxmemory-policy allkeys-lru"):
        _check_eviction("allkeys-lru", "1000000", allowed=False)


def test_each_stage_has_its_own_static_member_id_from_the_settings_or_the_pod_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("POD_NAME", raising=False)
    settings = Settings(_env_file=None)
    assert "group.instance.id" not in consumer_config(settings, "ilog-fold", "fold")
    monkeypatch.setenv("POD_NAME", "ilog-fold-7d9c-x2")
    assert "ilog-fold-7d9c-x2-fold" == consumer_config(settings, "ilog-fold", "fold")["group.instance.id"]
    pinned = Settings(_env_file=None, group_instance_id="worker-1")
    assert ("worker-1-fold", "worker-1-sync") == (pinned.instance_id("fold"), pinned.instance_id("sync"))


def test_passthrough_options_override_the_tuning_defaults_but_not_the_keys_the_guarantees_rest_on() -> None:
    plain = Settings(_env_file=None)
    assert "fetch.min.bytes" not in consumer_config(plain, "g")  # librdkafka's default
    assert (consumer_config(plain, "g")["reconnect.backoff.max.ms"], producer_config(plain)["linger.ms"]) == (2000, 5)
    tuned = Settings(_env_file=None, kafka={
        "reconnect_backoff_max_ms": "500", "fetch_min_bytes": "1", "linger_ms": "20", "compression_type": "zstd",
        "enable_auto_offset_store": "true", "acks": "1", "enable_idempotence": "false",
        "security_protocol": "SASL_SSL",
    })
    consumer, producer = consumer_config(tuned, "g"), producer_config(tuned)
    assert (consumer["reconnect.backoff.max.ms"], consumer["fetch.min.bytes"]) == ("500", "1")
    assert (producer["linger.ms"], producer["compression.type"]) == ("20", "zstd")
    assert consumer["enable.auto.offset.store"] is False  # offsets move only after Redis and the produce
    assert (producer["acks"], producer["enable.idempotence"]) == ("all", True)
    assert consumer["security.protocol"] == producer["security.protocol"] == "SASL_SSL"


def test_healthz_fails_only_when_a_loop_stops_beating_and_readyz_names_what_a_stage_waits_for() -> None:
    fold, sync = StageStatus("fold"), StageStatus("sync")
    alive = liveness([fold, sync], stall_s=60)
    assert (True, "ok") == alive()
    sync.beat_at -= 61
    assert (False, "sync: loop stalled for 61 s") == alive()
    sync.waiting()  # a deliberate wait beats
    assert (True, "ok") == alive()
    assert fold.not_ready_reason() is None
    fold.restoring = [3]
    assert "fold: restoring the state of partitions [3]" == fold.not_ready_reason()
    fold.restoring = []
    fold.kafka_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert "fold: all brokers down" == fold.not_ready_reason()
    fold.kafka_fetched()
    fold.store_down()
    assert (fold.not_ready_reason() or "").startswith("fold: redis unavailable for")
    fold.store_up()
    assert fold.not_ready_reason() is None


def test_healthz_fails_when_a_consumer_has_no_group_coordinator_for_the_stall_time_while_the_brokers_answer() -> None:
    """A consumer whose librdkafka dropped every broker (a metadata answer that listed none) may never find
    its group coordinator again: a restart is the cure. While the brokers answer no probe either, it is an
    outage, waited out; a rebalance in progress (`join_state` other than steady) keeps the coordinator."""
    fold, sync = StageStatus("fold"), StageStatus("sync")
    kafka: list[str | None] = [None]
    alive = liveness([fold, sync], stall_s=60, kafka=lambda: kafka[0])
    sync.stats({"cgrp": {"state": "up", "join_state": "wait-join"}})
    fold.stats({"cgrp": {"state": "query-coord", "join_state": "init"}})
    assert (0.0, True) == (sync.uncoordinated_s(), 0.0 < fold.uncoordinated_s() < 1)
    assert (True, "ok") == alive()
    assert fold.uncoordinated_since is not None
    fold.uncoordinated_since -= 61
    fold.stats({"cgrp": {"state": "wait-coord", "join_state": "init"}})  # still without: the first time counts
    ok, detail = alive()
    assert not ok and detail.startswith("fold: no group coordinator for 61 s while the brokers answer"), detail
    kafka[0] = "kafka unreachable: timed out"  # an outage: the stages wait, they are not restarted
    assert (True, "ok") == alive()
    kafka[0] = None
    fold.stats({"cgrp": {"state": "up", "join_state": "steady"}})
    assert (True, "ok", 0.0) == (*alive(), fold.uncoordinated_s())
    fold.stats({"brokers": {}})  # statistics without a group part say nothing either way
    assert fold.uncoordinated_since is None
    assert (True, "ok") == liveness([fold], stall_s=60)()  # no probe: never judged wedged


def test_a_fetcher_at_the_end_is_not_a_consumer_at_the_end() -> None:
    """Right after a (re)start librdkafka's fetcher may have read a partition to its end (`eof_offset` =
    `hi_offset`) while the stage was handed none of it: only what the stage was handed counts, the last
    message (`app_offset`) or the last end of partition (kept by the stage since the assignment)."""
    prefetched = _stats(300_000, app_offset=-1001, eof_offset=7)
    assert ({}, False) == partitions_at_end(prefetched, "events", [0, 1])
    assert ({}, False) == partitions_at_end(prefetched, "events", [0, 1], {0: 5})  # an older end, before new events
    assert ({0: 300_000}, False) == partitions_at_end(prefetched, "events", [0, 1], {0: 7})
    assert ({0: 300_000}, False) == partitions_at_end(
        _stats(300_000, app_offset=7, eof_offset=7), "events", [0, 1], {0: 5})


def test_the_age_of_statistics_is_read_off_librdkafkas_monotonic_clock() -> None:
    assert 250 == statistics_age_ms({"ts": 1_000_000}, monotonic_us=1_250_400)
    assert 0 == statistics_age_ms({"ts": 2_000_000}, monotonic_us=1_000_000)  # never negative
    assert 0 == statistics_age_ms({}, monotonic_us=1_000_000)
    assert 0 <= statistics_age_ms({"ts": time.monotonic_ns() // 1000}) < 1_000  # the same clock as Python's


def test_the_ends_handed_to_the_consumer_are_kept_per_owned_partition_until_revoked() -> None:
    clocks = PartitionClocks(fresh_ms=5_000)
    clocks.assign([0, 1])
    clocks.eof_read(0, 7)
    clocks.eof_read(2, 9)  # not owned
    assert {0: 7} == clocks.eofs_read()
    clocks.revoke([0])
    clocks.assign([0])
    assert {} == clocks.eofs_read()


class ChangelogAwayConsumer(FakeConsumer):
    """A changelog reader whose broker does not answer the first `away` watermark look-ups (then: empty)."""

    def __init__(self, committed: dict[int, int], away: int) -> None:
        super().__init__(committed)
        self.away = away

    def get_watermark_offsets(self, partition: TopicPartition, timeout: float) -> tuple[int, int]:
        if self.away > 0:
            self.away -= 1
            raise KafkaException(KafkaError(KafkaError._TRANSPORT, "broker down"))
        return 0, 0


def test_a_restore_waits_for_a_broker_that_does_not_answer_instead_of_stopping_the_stage() -> None:
    store = MemoryStore()
    consumer = ChangelogAwayConsumer({0: 42}, away=3)
    waiter = Waiter(StageStatus("fold"), threading.Event(), max_delay_s=0.01)
    restorer = StateRestorer(store, consumer, "events.state")  # type: ignore[arg-type]
    guard = StoreGuard(store, restorer, consumer, "events", waiter)  # type: ignore[arg-type]
    assert [] == guard.call(lambda: store.write(_log_write("a"), [0]).fenced_out, lambda: [0])
    assert (0, {0}, {"a"}) == (consumer.away, store.marks, set(store.states))
    assert guard.waiter.status.not_ready_reason() is None


def test_an_outage_or_a_lost_state_is_reported_before_the_guard_waits_or_restores() -> None:
    store = FlakyStore(down=2)
    store.mark([0])
    guard = _guard(store, {})
    outages: list[int] = []
    guard.on_outage = lambda: outages.append(len(store.states))
    assert [] == guard.call(lambda: store.write(_log_write("a"), [0]).fenced_out, lambda: [0])
    assert [0, 0] == outages  # once per failed attempt, before the write that then went through
    lost = MemoryStore()  # no marks: the state is lost (the group never committed: marked and run again)
    guard = _guard(lost, {})
    guard.on_outage = lambda: outages.append(-1)
    assert [] == guard.call(lambda: lost.write(_log_write("b"), [0]).fenced_out, lambda: [0])
    assert [0, 0, -1] == outages


def test_after_a_redis_outage_the_stage_closes_windows_by_the_wall_clock_only_once_read_to_the_end() -> None:
    from tests.fakes import FakeConsumer as StageConsumer
    from tests.fakes import FakeProducer
    from worker.fold.stage import FoldStage
    from worker.runtime.settings import Settings

    store = FlakyStore(down=1)
    store.mark([0])
    stage = FoldStage(Settings(_env_file=None, store_retry_max_seconds=0.01, broker_settle_seconds=0),
                      store, StageConsumer([]), FakeProducer([]))  # type: ignore[arg-type]
    stage.clocks.assign([0])
    stage.clocks.reached_end(0, WALL_MS)
    assert WALL_MS == stage.clocks.clock_ms(0, WALL_MS)  # at its end: the wall clock
    stage.guard.call(lambda: store.write(_log_write("a"), [0]).fenced_out, lambda: [0])  # Redis down once
    assert not stage.clocks.is_caught_up(0)
    assert 0 == stage.clocks.clock_ms(0, WALL_MS)  # the event time (none read yet), not the wall clock
    stage.clocks.fetched(WALL_MS)
    stage.clocks.reached_end(0, WALL_MS)  # read to the end again
    assert WALL_MS == stage.clocks.clock_ms(0, WALL_MS)


def test_the_stage_dates_a_partitions_end_by_its_leaders_last_answer() -> None:
    """Statistics taken 200 ms ago, the leader silent for 300 ms then: the partition was at its end 500 ms ago,
    and the clock leads that by half the grace (1 s grace: 500 ms), so it is the wall clock now; once the
    leader has been silent for 2.5 s it stays 2 s behind."""
    from tests.fakes import FakeConsumer as StageConsumer
    from tests.fakes import FakeProducer
    from worker.fold.stage import FoldStage
    from worker.runtime.settings import Settings

    settings = Settings(_env_file=None, finalize_grace_seconds=1.0)
    stage = FoldStage(settings, MemoryStore(), StageConsumer([]), FakeProducer([]))  # type: ignore[arg-type]
    stage.clocks.assign([0, 1])
    stage.clocks.fetched(WALL_MS)
    def stats(rxidle_us: int, age_us: int) -> dict[str, Any]:
        found = _stats(rxidle_us)
        return {**found, "topics": {stage.settings.events_topic: found["topics"]["events"]},
                "ts": time.monotonic_ns() // 1000 - age_us}

    stage.status.stats(stats(300_000, 200_000))
    stage._note_stats(WALL_MS)
    assert stage.clocks.is_caught_up(0) and not stage.clocks.is_caught_up(1)  # partition 1 is not read to its end
    assert WALL_MS - 100 <= stage.clocks.clock_ms(0, WALL_MS) <= WALL_MS  # 500 ms ago + 500 ms of lead
    stage.status.stats(stats(2_500_000, 0))
    stage._note_stats(WALL_MS + 2_500)
    assert WALL_MS + 500 - 100 <= stage.clocks.clock_ms(0, WALL_MS + 2_500) <= WALL_MS + 500
