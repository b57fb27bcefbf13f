"""The fold stage on fakes (no Kafka, no Redis): a batch folds into the store, the store is written before
the snapshot is produced, offsets are stored only after the producer's flush, a rejection is dead-lettered."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import TIMESTAMP_CREATE_TIME, TopicPartition

from tests.fakes import Calls, FakeConsumer, FakeMessage, FakeProducer, json_message
from tests.support import event
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.fold.stage import FoldOptions, FoldStage
from worker.runtime.settings import Settings
from worker.store.memory import MemoryStore
from worker.store.port import WriteResult

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
SETTINGS = Settings(_env_file=None)
EVENTS = SETTINGS.events_topic
CONNECTED = {"media": "voice", "direction": "inbound"}


class RecordingStore(MemoryStore):
    def __init__(self, calls: Calls) -> None:
        super().__init__()
        self.calls = calls

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        self.calls.append(("write", sorted(item.interaction_id for item in writes)))
        return super().write(writes, guard)


def _stage(*batches: list[FakeMessage]) -> tuple[FoldStage, RecordingStore, FakeProducer, Calls]:
    calls: Calls = []
    store = RecordingStore(calls)
    store.mark([0])  # the store holds partition 0's state (a fresh one would be restored first)
    producer = FakeProducer(calls)
    stage = FoldStage(SETTINGS, store, FakeConsumer(calls, list(batches)), producer)  # type: ignore[arg-type]
    return stage, store, producer, calls


def _effects(calls: Calls) -> list[str]:
    return [name for name, _ in calls if name in {"write", "produce", "flush", "store_offsets"}]


def test_a_batch_is_written_then_produced_then_flushed_and_only_then_its_offsets_are_stored() -> None:
    stage, store, producer, calls = _stage([
        json_message(EVENTS, 0, 10, event("interaction.connected", "c1", 1, T0, CONNECTED)),
        json_message(EVENTS, 0, 11, event("interaction.held", "c1", 2, T0)),
    ])
    stage.step()
    version, state = store.states["c1"]
    assert isinstance(state, InteractionLog) and 2 == version
    upserts = producer.on(SETTINGS.upserts_topic)
    assert [("c1", 2)] == [(json.loads(m.value or b"")["interaction_id"], json.loads(m.value or b"")["version"])
                           for m in upserts]
    effects = _effects(calls)
    assert effects.index("write") < effects.index("produce") < effects.index("flush") < effects.index("store_offsets")
    assert ("store_offsets", [(EVENTS, 0, 12)]) == [c for c in calls if c[0] == "store_offsets"][-1]


def test_a_rejected_event_is_dead_lettered_with_its_reason_and_its_offset_still_moves() -> None:
    stage, store, producer, calls = _stage([FakeMessage(EVENTS, 0, 5, b"{not json")])
    stage.step()
    letters = producer.on(SETTINGS.events_dlq_topic)
    assert 1 == len(letters)
    assert (b"{not json", b"invalid", b"5") == (
        letters[0].value, letters[0].headers["reason"], letters[0].headers["original_offset"])
    assert {} == store.states
    assert ("store_offsets", [(EVENTS, 0, 6)]) == [c for c in calls if c[0] == "store_offsets"][-1]


def _call_ending(call: str, first_offset: int, end: datetime) -> list[FakeMessage]:
    return [
        json_message(EVENTS, 0, first_offset, event("interaction.connected", call, 1, end - timedelta(seconds=30),
                                                    CONNECTED)),
        json_message(EVENTS, 0, first_offset + 1, event("interaction.disconnected", call, 2, end)),
    ]


def test_a_replay_at_the_end_of_its_range_closes_exactly_the_windows_over_before_its_start() -> None:
    """deadline + grace before the replay's start: closed (no edit can come any more); after it: left open,
    its deadline still scheduled for the live worker's finalizer."""
    window_s, grace_s = SETTINGS.edit_window_seconds, SETTINGS.finalize_grace_seconds
    started = datetime.now(UTC).replace(microsecond=0)
    over_at = started - timedelta(seconds=window_s + grace_s)  # disconnect time whose deadline + grace = start
    messages = [
        *_call_ending("long-over", 0, over_at - timedelta(hours=1)),
        *_call_ending("just-over", 2, over_at - timedelta(seconds=1)),
        *_call_ending("still-open", 4, over_at + timedelta(seconds=1)),
    ]
    calls: Calls = []
    store = RecordingStore(calls)
    store.mark([0])
    producer = FakeProducer(calls)
    options = FoldOptions(group="backfill", burst=True, follow_wall_clock=False, start_offsets={0: 0},
                          stop_offsets={0: len(messages)}, end_clock_ms=int(started.timestamp() * 1000))
    stage = FoldStage(SETTINGS, store, FakeConsumer(calls, [messages]), producer, options)  # type: ignore[arg-type]
    stop = threading.Event()
    timer = threading.Timer(10.0, stop.set)  # a safety net: burst mode ends by itself once drained
    timer.start()
    try:
        stage.run(stop)
    finally:
        timer.cancel()
    assert not stop.is_set()
    kinds = {i: type(state).__name__ for i, (_version, state) in store.states.items()}
    assert {"long-over": "Tombstone", "just-over": "Tombstone", "still-open": "InteractionLog"} == kinds
    finalized = sorted(json.loads(m.value or b"")["interaction_id"] for m in producer.on(SETTINGS.upserts_topic)
                       if json.loads(m.value or b"")["trigger"] == "finalized")
    assert ["just-over", "long-over"] == finalized
    deadline_ms = int((over_at + timedelta(seconds=1 + window_s)).timestamp() * 1000)
    assert [("still-open", deadline_ms)] == store.due(0, deadline_ms + 1, 10)


def _prefetched_to_the_end(high: int) -> dict[str, Any]:
    """librdkafka's statistics right after a restart: its fetcher has read the partition to the end into
    the local queue (`eof_offset` = `hi_offset`), the stage has been handed none of it (`app_offset` unset)."""
    partition = {"leader": 1, "fetch_state": "active", "hi_offset": high, "eof_offset": high,
                 "app_offset": -1001, "next_offset": high, "fetchq_cnt": high}
    return {"brokers": {"b/1": {"nodeid": 1, "state": "UP", "rxidle": 100_000}},
            "topics": {EVENTS: {"partitions": {"0": partition}}}}


def test_a_restarted_member_closes_no_window_before_it_read_the_edits_its_fetcher_prefetched() -> None:
    """The window of `c1` is past deadline + grace by the wall clock, its in-window edit still unread in
    Kafka: statistics showing the fetcher at the end say nothing about what the stage has read."""
    window_s, grace_s = SETTINGS.edit_window_seconds, SETTINGS.finalize_grace_seconds
    ended = datetime.now(UTC) - timedelta(seconds=window_s + grace_s + 30)
    history = [*_call_ending("c1", 0, ended),
               json_message(EVENTS, 0, 2, event("log.updated", "c1", 3, ended + timedelta(seconds=5),
                                                {"notes": "in time"}))]
    calls: Calls = []
    store = RecordingStore(calls)
    store.mark([0])
    killed = FoldStage(SETTINGS, store, FakeConsumer(calls, [history[:2]]), FakeProducer(calls))  # type: ignore[arg-type]
    killed.clocks.assign([0])
    killed.step()  # folded the call, killed before reading the edit (nothing committed)
    assert 2 == store.states["c1"][0]

    producer = FakeProducer(calls)
    # first consume: nothing handed out yet; then the call again (from the committed offset), the edit, the end
    consumer = FakeConsumer(calls, [[], [*history, FakeMessage(EVENTS, 0, 3, eof=True)]])
    restarted = FoldStage(SETTINGS, store, consumer, producer)  # type: ignore[arg-type]
    restarted.clocks.assign([0])
    restarted.status.stats(_prefetched_to_the_end(high=3))
    restarted.step()
    restarted.step()
    restarted.finalize_due()

    finalized = [json.loads(m.value or b"") for m in producer.on(SETTINGS.upserts_topic)
                 if m.headers["trigger"] == b"finalized"]
    assert [("c1", 4, "in time")] == [(s["interaction_id"], s["version"], s["notes"]) for s in finalized]
    assert [] == producer.on(SETTINGS.events_dlq_topic)


def test_statistics_from_before_an_assignment_are_no_evidence_for_it() -> None:
    """A partition handed back to this member: statistics served before the assignment show the previous
    ownership read to its end; what the new owner must read from the committed offset is unread."""
    stage, _store, _producer, _calls = _stage([])
    stage.status.stats({**_prefetched_to_the_end(high=3), "topics": {EVENTS: {"partitions": {"0": {
        "leader": 1, "fetch_state": "active", "hi_offset": 3, "app_offset": 3}}}}})
    stage._on_assign(stage.consumer, [TopicPartition(EVENTS, 0)])
    stage.step()
    assert not stage.clocks.is_caught_up(0)


def _stamped(offset: int, document: dict[str, Any], sent: datetime) -> FakeMessage:
    """A message Kafka stamped (CreateTime) with when the producer sent it, keyed by its subject."""
    return FakeMessage(EVENTS, 0, offset, json.dumps(document).encode(), document["subject"].encode(),
                       _timestamp=(TIMESTAMP_CREATE_TIME, int(sent.timestamp() * 1000)))


def _replay_run(batches: list[list[FakeMessage]], stop_offset: int, started: datetime) -> FakeProducer:
    calls: Calls = []
    store = RecordingStore(calls)
    producer = FakeProducer(calls)
    options = FoldOptions(group="backfill", burst=True, follow_wall_clock=False, start_offsets={0: 0},
                          stop_offsets={0: stop_offset}, end_clock_ms=int(started.timestamp() * 1000))
    stage = FoldStage(SETTINGS, store, FakeConsumer(calls, batches), producer, options)  # type: ignore[arg-type]
    stop = threading.Event()
    timer = threading.Timer(10.0, stop.set)  # a safety net: burst mode ends by itself once drained
    timer.start()
    try:
        stage.run(stop)
    finally:
        timer.cancel()
    assert not stop.is_set()
    return producer


def test_a_replayed_event_timed_ahead_of_its_message_closes_no_window_early_and_far_ahead_is_future_time() -> None:
    """Yesterday, a call hung up; then one call was timed 250 s ahead of when it was sent (within the skew:
    folded, the live clock capped at the wall clock) and one an hour ahead (`future_time` live); the first
    call's edit came after both, inside its window. Replayed today, by the message timestamps: the same."""
    window_s = SETTINGS.edit_window_seconds
    ended = datetime.now(UTC).replace(microsecond=0) - timedelta(days=1)
    sent = ended + timedelta(seconds=1)
    first = [_stamped(0, event("interaction.connected", "c1", 1, ended - timedelta(seconds=30), CONNECTED), sent),
             _stamped(1, event("interaction.disconnected", "c1", 2, ended), sent),
             _stamped(2, event("interaction.connected", "fast", 1, sent + timedelta(seconds=250), CONNECTED), sent),
             _stamped(3, event("interaction.connected", "far", 1, sent + timedelta(hours=1), CONNECTED), sent)]
    assert window_s + SETTINGS.finalize_grace_seconds < 250 < SETTINGS.max_clock_skew_seconds
    edit = [_stamped(4, event("log.updated", "c1", 3, ended + timedelta(seconds=5), {"notes": "in time"}),
                     sent + timedelta(seconds=2))]
    producer = _replay_run([first, edit], 5, datetime.now(UTC))
    snapshots = [json.loads(m.value or b"") for m in producer.on(SETTINGS.upserts_topic)]
    final = [s for s in snapshots if s["trigger"] == "finalized"]
    assert [("c1", "in time", 4)] == [(s["interaction_id"], s["notes"], s["version"]) for s in final]
    letters = producer.on(SETTINGS.events_dlq_topic)
    assert [(b"far", b"future_time")] == [(m.headers["subject"], m.headers["reason"]) for m in letters]
