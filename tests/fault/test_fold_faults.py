"""The fold stage when Redis loses its state or the broker goes away, against the real stack.

"Closes once" under at-least-once: every finalized snapshot of an interaction on the upserts topic is
the same message content (same version, same log); a window closed again after a crash or a retried
flush re-sends that identical snapshot, never a different one. The tests assert exactly that, plus:
every log equals `ilog fold` of the same events, nothing valid is dead-lettered, the process never
restarts.
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, Producer, TopicPartition

from tests.conftest import STACK
from tests.support import (
    TopicReader,
    WorkerProcess,
    event,
    finalized_ids,
    header,
    offline_fold,
    produce,
    snapshots_by_id,
    wait_for,
    without,
)
from worker.core.state import Tombstone
from worker.dev.generator import GeneratorMix, generate_histories
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.wire import decode_state

WINDOW_S = 4.0  # broker outages: short windows, so many close during and right after the outage
LOSS_WINDOW_S = 15.0  # state loss: every log of the middle group is still open when the state goes
FAST_GROUP = {"ILOG_KAFKA__SESSION_TIMEOUT_MS": "6000", "ILOG_KAFKA__HEARTBEAT_INTERVAL_MS": "500"}


def _settings(settings: Settings, window_s: float = WINDOW_S) -> Settings:
    return settings.model_copy(update={
        "edit_window_seconds": window_s, "finalize_grace_seconds": 1.0, "broker_settle_seconds": 10.0,
        "store_retry_max_seconds": 1.0,
    })


def _events(n: int, seed: int, start: datetime, window_s: float, time_scale: float = 0.01) -> list[dict[str, Any]]:
    """Calls of at most 600 s times time_scale with edits shortly after: a partition's clock runs at most
    that far ahead of a newer call's start, less than a window, so no window closes under its edits."""
    histories = generate_histories(
        n, seed=seed, start=start, rate_per_s=200, edit_window_s=window_s, time_scale=time_scale,
        mix=GeneratorMix(duplicate_ratio=0.05, shuffle_within_interaction=True),
    )
    return [event for history in histories for event in history]


def _stack(command: str) -> None:
    done = subprocess.run([str(STACK), command], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr


def _assert_final_logs(messages: list[Any], offline: dict[str, dict[str, Any]]) -> None:
    """Every interaction finalized, each finalized copy identical, and equal to the offline fold."""
    finals = {i: [s for s in snaps if s["finalized"]] for i, snaps in snapshots_by_id(messages).items()}
    assert set(offline) == {i for i, found in finals.items() if found}
    for interaction_id, expected in offline.items():
        first, *again = finals[interaction_id]
        assert [first] * len(again) == again, interaction_id
        assert expected["version"] + 1 == first["version"], interaction_id
        assert without(expected, "version", "trigger", "finalized") == without(
            first, "version", "trigger", "finalized"
        ), interaction_id


def _all_finalized(settings: Settings, offline: dict[str, dict[str, Any]], timeout_s: float) -> list[Any]:
    reader = TopicReader(settings, settings.upserts_topic)
    try:
        return reader.read_until(lambda m: len(finalized_ids(m)) >= len(offline), timeout_s=timeout_s)
    finally:
        reader.close()


def _dead_letters(settings: Settings) -> list[Any]:
    reader = TopicReader(settings, settings.events_dlq_topic)
    try:
        return reader.read_until(lambda _m: False, timeout_s=3)
    finally:
        reader.close()


def _tombstone_versions(settings: Settings, ids: list[str]) -> dict[str, int]:
    store = bootstrap.log_store(settings)
    try:
        return {i: s.state.version for i, s in store.load(ids).items() if isinstance(s.state, Tombstone)}
    finally:
        store.close()


def _open_logs(settings: Settings, ids: list[str]) -> int:
    store = bootstrap.log_store(settings)
    try:
        return sum(1 for s in store.load(ids).values() if s.state is not None and not isinstance(s.state, Tombstone))
    finally:
        store.close()


def _state_loss_run(settings: Settings, tmp_path: Path, lose_state: Callable[[WorkerProcess], object]) -> str:
    """Finalized logs (A), open logs (B), state lost, then new logs (C): all end like `ilog fold`."""
    fold_settings = _settings(settings, LOSS_WINDOW_S)
    now = datetime.now(UTC)
    early = _events(60, seed=31, start=now - timedelta(seconds=60), window_s=LOSS_WINDOW_S)  # tombstones by now
    open_now = _events(120, seed=32, start=now, window_s=LOSS_WINDOW_S)  # open when the state goes
    produce(fold_settings, fold_settings.events_topic, early + open_now)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    try:
        early_ids = sorted({e["subject"] for e in early})
        open_ids = sorted({e["subject"] for e in open_now})
        assert wait_for(lambda: len(_tombstone_versions(fold_settings, early_ids)) == len(early_ids)
                        and _open_logs(fold_settings, open_ids) == len(open_ids), timeout_s=60), \
            worker.log_text()[-3000:]
        time.sleep(1.5)  # the batch's offsets get committed (auto-commit every second)
        lose_state(worker)
        later = _events(60, seed=33, start=datetime.now(UTC), window_s=LOSS_WINDOW_S)
        produce(fold_settings, fold_settings.events_topic, later)
        offline = offline_fold(early + open_now + later, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
        assert {i: e["version"] + 1 for i, e in offline.items()} == _tombstone_versions(fold_settings, sorted(offline))
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    return worker.log_text()


def test_flushall_while_logs_are_open_restores_from_the_changelog_and_every_log_ends_like_ilog_fold(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    log_text = _state_loss_run(settings, tmp_path, lambda _worker: redis_client.flushall())
    assert "state restored from the changelog" in log_text


def _redis_down_for_a_while_then_back_empty(worker: WorkerProcess) -> None:
    """Redis stops for 5 s: the worker waits (not ready, `ilog_store_unavailable` 1) and stays up; then
    redis-server starts again on the same port with no data."""
    port = _http_port(worker)
    _stack("redis-stop")
    try:
        assert wait_for(lambda: 'ilog_store_unavailable{stage="fold"} 1.0' in _metrics(port), timeout_s=10)
        assert not _ready(port)
        time.sleep(5)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
    finally:
        _stack("redis-start")
    assert wait_for(lambda: 'ilog_store_unavailable{stage="fold"} 0.0' in _metrics(port), timeout_s=20)


def test_redis_down_then_restarted_empty_mid_stream_the_worker_waits_restores_and_loses_nothing(
    settings: Settings, tmp_path: Path,
) -> None:
    log_text = _state_loss_run(settings, tmp_path, _redis_down_for_a_while_then_back_empty)
    assert "state restored from the changelog" in log_text
    assert '"waiting_for": "redis"' in log_text


def _redis_hung_for_a_while(worker: WorkerProcess) -> None:
    """redis-server hangs for 15 s (SIGSTOP: connections stay open, nothing answers; longer than the worker's
    10 s socket timeout, so calls under way time out, and what they sent runs once it resumes); its data stays."""
    port = _http_port(worker)
    _stack("redis-pause")
    try:
        assert wait_for(lambda: not _ready(port), timeout_s=15)
        time.sleep(15)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
    finally:
        _stack("redis-resume")
    assert wait_for(lambda: _ready(port), timeout_s=30)


def test_redis_hung_mid_stream_the_worker_waits_and_every_log_ends_like_ilog_fold(
    settings: Settings, tmp_path: Path,
) -> None:
    log_text = _state_loss_run(settings, tmp_path, _redis_hung_for_a_while)
    assert '"waiting_for": "redis"' in log_text
    assert "state restored from the changelog" not in log_text  # nothing was lost


CONNECTED = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "a-1",
             "customer": {"address": "+4930123", "name": "Ada Example"}}


class LiveProducer:
    """Agents at work: a call starts every 0.2 s, disconnects 0.3 s later, and its notes are edited
    0.5-3 s after that (inside the 4 s window); each event is produced when its time comes. Edits
    made while the broker is away wait in the producer, which reconnects within 2.5 s of its return
    (its librdkafka backoff), as a platform producer would. Keeps what it sent."""

    def __init__(self, settings: Settings) -> None:
        self.sent: list[dict[str, Any]] = []
        self._topic = settings.events_topic
        self._producer = Producer(settings.kafka_config(**{
            "enable.idempotence": True, "linger.ms": 5, "reconnect.backoff.max.ms": 2500,
            "message.timeout.ms": 180_000,
        }))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._rng = random.Random(7)

    def start(self) -> LiveProducer:
        self._thread.start()
        return self

    def _call(self, n: int, at: datetime) -> list[tuple[datetime, int, dict[str, Any]]]:
        """(when to produce, order, event) of call n."""
        subject = f"live-{n}"
        hung_up = at + timedelta(seconds=0.3)
        edit = hung_up + timedelta(seconds=self._rng.uniform(0.5, 3.0))
        return [
            (at, n * 10, event("interaction.connected", subject, 1, at, CONNECTED)),
            (hung_up, n * 10 + 1, event("interaction.disconnected", subject, 2, hung_up)),
            (edit, n * 10 + 2, event("log.updated", subject, 3, edit, {"notes": f"Notes of call {n}."})),
        ]

    def _run(self) -> None:
        due: list[tuple[datetime, int, dict[str, Any]]] = []
        n, next_call = 0, datetime.now(UTC)
        while not self._stop.is_set() or due:
            now = datetime.now(UTC)
            if not self._stop.is_set() and now >= next_call:
                due.extend(self._call(n, now))
                n, next_call = n + 1, now + timedelta(seconds=0.2)
            due.sort(key=lambda entry: (entry[0], entry[1]))
            while due and due[0][0] <= now:
                item = due.pop(0)[2]
                self._producer.produce(self._topic, key=item["subject"], value=json.dumps(item).encode())
                self.sent.append(item)
            self._producer.poll(0)
            time.sleep(0.02)

    def stop(self) -> None:
        """No new calls; the edits of the calls under way are still made."""
        self._stop.set()
        self._thread.join(15)
        assert self._producer.flush(180) == 0


def _http_port(worker: WorkerProcess) -> int:
    found = re.search(r'"http_port": ?(\d+)', worker.log_text())
    assert found is not None, worker.log_text()[-2000:]
    return int(found.group(1))


def _metrics(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=3) as reply:
        return str(reply.read().decode())


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as reply:
            return bool(reply.status == 200)
    except (urllib.error.URLError, TimeoutError):
        return False


@pytest.mark.parametrize("outage_s", [10, 60])
def test_broker_stopped_mid_stream_the_worker_survives_keeps_every_in_window_edit_and_closes_each_window_once(
    settings: Settings, tmp_path: Path, outage_s: int,
) -> None:
    fold_settings = _settings(settings)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    producer = LiveProducer(fold_settings)
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), timeout_s=30), worker.log_text()[-2000:]
        port = _http_port(worker)
        assert wait_for(lambda: _ready(port), timeout_s=20)
        producer.start()
        time.sleep(5)
        _stack("kafka-stop")
        try:
            assert wait_for(lambda: not _ready(port), timeout_s=10)
            time.sleep(outage_s)
        finally:
            _stack("kafka-start")
        assert wait_for(lambda: _ready(port), timeout_s=60), worker.log_text()[-3000:]
        time.sleep(5)
        producer.stop()
        offline = offline_fold(producer.sent, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_broker_hung_just_before_a_deadline_the_window_waits_for_the_edit_made_during_the_hang(
    settings: Settings, tmp_path: Path,
) -> None:
    """A broker that hangs (SIGSTOP: connections open, no error) 2.5 s before a window's deadline + grace. Its
    statistics count it as answering for 3 s more, so a clock that followed the wall clock until its silence
    was noticed closed the window in that time; an edit made during the hang, inside the window, waited in
    the platform's producer and came back `window_closed`. The clock stops within half the grace of the
    broker's last answer instead: the window closes after the broker is back, with the edit."""
    fold_settings = _settings(settings, window_s=8.0)  # 1 s grace
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    producer = Producer(fold_settings.kafka_config(**{
        "enable.idempotence": True, "linger.ms": 5, "reconnect.backoff.max.ms": 2500, "message.timeout.ms": 180_000,
    }))
    subject, sent = "hung-at-the-deadline", []

    def send(item: dict[str, Any]) -> None:
        producer.produce(fold_settings.events_topic, key=subject, value=json.dumps(item).encode())
        producer.poll(0)
        sent.append(item)

    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), timeout_s=30), worker.log_text()[-2000:]
        port = _http_port(worker)
        assert wait_for(lambda: _ready(port), timeout_s=20)
        started = datetime.now(UTC)
        send(event("interaction.connected", subject, 1, started, CONNECTED))
        send(event("interaction.disconnected", subject, 2, started))
        assert producer.flush(10) == 0
        assert wait_for(lambda: _open_logs(fold_settings, [subject]) == 1, timeout_s=5)
        deadline = started + timedelta(seconds=fold_settings.edit_window_seconds)
        hang_at = deadline + timedelta(seconds=fold_settings.finalize_grace_seconds - 2.5)
        assert datetime.now(UTC) < hang_at, "the stage took too long to fold the call"
        time.sleep((hang_at - datetime.now(UTC)).total_seconds())
        _stack("kafka-pause")
        try:
            time.sleep(0.3)
            edited = datetime.now(UTC)
            assert edited < deadline  # inside the window
            send(event("log.updated", subject, 3, edited, {"notes": "Edited while the broker hung."}))
            time.sleep(6)  # past deadline + grace, and past the moment the silence is noticed
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
        finally:
            _stack("kafka-resume")
        assert producer.flush(60) == 0
        offline = offline_fold(sent, tmp_path, fold_settings)
        assert "Edited while the broker hung." == offline[subject]["notes"]
        messages = _all_finalized(fold_settings, offline, timeout_s=60)
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def _rewind_group(settings: Settings, timeout_s: float) -> bool:
    """Commit offset 0 on every partition for the fold group, as if no commit had happened (the group
    must be empty: the killed member's session has to expire first)."""
    admin = bootstrap.admin_client(settings)
    request = ConsumerGroupTopicPartitions(
        settings.fold_group, [TopicPartition(settings.events_topic, p, 0) for p in range(settings.partitions)]
    )

    def rewound() -> bool:
        try:
            for future in admin.alter_consumer_group_offsets([request]).values():
                future.result(timeout=10)
        except KafkaException:
            return False
        return True

    return wait_for(rewound, timeout_s=timeout_s, interval_s=1.0)


def _consumed_to_end(settings: Settings) -> bool:
    admin = bootstrap.admin_client(settings)
    request = ConsumerGroupTopicPartitions(settings.fold_group)
    committed = admin.list_consumer_group_offsets([request])[settings.fold_group].result(timeout=10)
    reader = bootstrap.plain_consumer(settings, **{"group.id": "watermarks"})
    try:
        ends = {p: reader.get_watermark_offsets(TopicPartition(settings.events_topic, p), timeout=10)[1]
                for p in range(settings.partitions)}
    finally:
        reader.close()
    done = {tp.partition: tp.offset for tp in committed.topic_partitions if tp.topic == settings.events_topic}
    return all(done.get(p, -1) >= end for p, end in ends.items())


def test_sigkill_after_finalizing_before_committing_reads_the_events_again_as_duplicates_not_dead_letters(
    settings: Settings, tmp_path: Path,
) -> None:
    fold_settings = _settings(settings, window_s=2.0)
    events = _events(80, seed=41, start=datetime.now(UTC) - timedelta(seconds=30), window_s=2.0)
    offline = offline_fold(events, tmp_path, fold_settings)
    produce(fold_settings, fold_settings.events_topic, events)
    instance = {"ILOG_GROUP_INSTANCE_ID": "fold-kill-test", **FAST_GROUP}
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    ids = sorted(offline)
    assert wait_for(lambda: len(_tombstone_versions(fold_settings, ids)) == len(ids), timeout_s=60), \
        worker.log_text()[-3000:]
    worker.kill()
    # every window closed, no offset committed (rewound): the next worker reads every event again
    assert _rewind_group(fold_settings, timeout_s=30)
    logged = (tmp_path / "worker.log").stat().st_size  # the next worker's lines come after these
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    try:
        # the next worker runs (on a slow machine its start-up takes seconds) and reads to the end itself
        assert wait_for(lambda: b'"worker started"' in (tmp_path / "worker.log").read_bytes()[logged:],
                        timeout_s=60), worker.log_text()[-3000:]
        assert wait_for(lambda: _consumed_to_end(fold_settings), timeout_s=60), worker.log_text()[-3000:]
        assert [] == _dead_letters(fold_settings)
        _assert_final_logs(_all_finalized(fold_settings, offline, timeout_s=30), offline)
        assert {i: e["version"] + 1 for i, e in offline.items()} == _tombstone_versions(fold_settings, ids)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def _roll_back(settings: Settings, client: redis.Redis, ids: list[str]) -> dict[str, int]:
    """What an asynchronous failover does to the last writes: every other id's key is deleted, the rest
    go back to their first changelog version, or are deleted when there is none older (the marks and
    deadline entries stay). id → version now."""
    reader = TopicReader(settings, settings.state_changelog_topic)
    try:
        wanted = set(ids)
        messages = reader.read_until(lambda m: wanted <= {bytes(x.key() or b"").decode() for x in m}, timeout_s=20)
    finally:
        reader.close()
    first: dict[str, Any] = {}
    for message in messages:
        first.setdefault(bytes(message.key() or b"").decode(), message)
    now: dict[str, int] = {}
    for n, interaction_id in enumerate(ids):
        key = keys.state_key(settings.key_prefix, interaction_id)
        older = first[interaction_id]
        state = decode_state(older.value(), None)
        current = int(client.hget(key, keys.FIELD_VERSION) or 0)
        if n % 2 == 0 or state is None or state.version >= current:  # no older version was ever written
            client.delete(key)
            now[interaction_id] = 0
        else:
            client.hset(key, mapping={keys.FIELD_VERSION: state.version, keys.FIELD_DOCUMENT: older.value(),
                                      keys.FIELD_KIND: keys.KIND_LOG})
            now[interaction_id] = state.version
    return now


def test_writes_lost_in_a_failover_are_caught_and_repaired_and_every_log_ends_like_ilog_fold(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    """Open logs go back to an older version or vanish behind the worker (marks intact), then in-window
    edits of some of them arrive: the stage catches the regression at its next fenced write (the edit's
    batch, or the window's close), writes back what it last wrote, and every log ends like `ilog fold`."""
    fold_settings = _settings(settings, LOSS_WINDOW_S)
    open_now = _events(80, seed=41, start=datetime.now(UTC), window_s=LOSS_WINDOW_S)
    produce(fold_settings, fold_settings.events_topic, open_now)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    try:
        open_ids = sorted({e["subject"] for e in open_now})
        assert wait_for(lambda: _open_logs(fold_settings, open_ids) == len(open_ids), timeout_s=60), \
            worker.log_text()[-3000:]
        time.sleep(1.5)  # the batch's offsets get committed (auto-commit every second)
        rolled = open_ids[:30]
        regressed = _roll_back(fold_settings, redis_client, rolled)
        last_at = {i: max(e["time"] for e in open_now if e["subject"] == i) for i in rolled[:10]}
        edits = [event("interaction.attributes", i, 900, datetime.fromisoformat(at) + timedelta(seconds=1),
                       {"attributes": {"after_failover": "yes"}}) for i, at in last_at.items()]
        produce(fold_settings, fold_settings.events_topic, edits)
        offline = offline_fold(open_now + edits, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=90)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
        assert {i: e["version"] + 1 for i, e in offline.items()} == _tombstone_versions(fold_settings, sorted(offline))
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    log_text = worker.log_text()
    counts = [int(re.findall(r"\bcount\W+(\d+)", line)[0]) for line in log_text.splitlines()
              if "state went backwards" in line]
    assert len(regressed) == sum(counts), log_text[-3000:]


def _restored_count(worker: WorkerProcess) -> int:
    return worker.log_text().count("state restored from the changelog")


def test_redis_restarted_empty_twice_in_a_row_then_late_events_are_window_closed_and_edits_applied(
    settings: Settings, tmp_path: Path,
) -> None:
    """Finalized logs (tombstones) and open ones; Redis restarts empty, and again as soon as the worker has
    restored; in-window edits of the open logs come between and after. Then events of the finalized
    interactions: an applied one sent again is a duplicate, a new one is `window_closed`; none of them
    brings a finalized log back, and every log ends like `ilog fold`, finalized once. Small batches keep a
    batch in flight (`ILOG_FOLD_OVERLAP`) when the state goes."""
    fold_settings = _settings(settings, LOSS_WINDOW_S).model_copy(update={"fold_batch_size": 5})
    now = datetime.now(UTC)
    early = _events(30, seed=61, start=now - timedelta(seconds=60), window_s=LOSS_WINDOW_S)
    open_now = _events(60, seed=62, start=now, window_s=LOSS_WINDOW_S)
    produce(fold_settings, fold_settings.events_topic, early + open_now)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    try:
        early_ids = sorted({e["subject"] for e in early})
        open_ids = sorted({e["subject"] for e in open_now})
        assert wait_for(lambda: len(_tombstone_versions(fold_settings, early_ids)) == len(early_ids)
                        and _open_logs(fold_settings, open_ids) == len(open_ids), timeout_s=60), \
            worker.log_text()[-3000:]
        time.sleep(1.5)  # the batch's offsets get committed (auto-commit every second)
        last_at = {i: max(datetime.fromisoformat(e["time"]) for e in open_now if e["subject"] == i) for i in open_ids}
        edits_1 = [event("interaction.attributes", i, 900, last_at[i] + timedelta(seconds=1),
                         {"attributes": {"restart": "first"}}) for i in open_ids[::2]]
        _stack("redis-restart")
        produce(fold_settings, fold_settings.events_topic, edits_1)
        assert wait_for(lambda: _restored_count(worker) >= 1, timeout_s=30), worker.log_text()[-3000:]
        _stack("redis-restart")
        edits_2 = [event("interaction.attributes", i, 901, last_at[i] + timedelta(seconds=2),
                         {"attributes": {"restart": "second"}}) for i in open_ids[1::2]]
        produce(fold_settings, fold_settings.events_topic, edits_2)
        assert wait_for(lambda: _restored_count(worker) >= 2, timeout_s=30), worker.log_text()[-3000:]
        applied_again = [e for e in early if e["subject"] in early_ids[:10]][:10]
        closed = [event("log.updated", i, 950, now, {"notes": "after the close"}) for i in early_ids[:10]]
        produce(fold_settings, fold_settings.events_topic, applied_again + closed)
        offline = offline_fold(early + open_now + edits_1 + edits_2, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=60)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        for interaction_id, snaps in snapshots_by_id(messages).items():
            final_version = offline[interaction_id]["version"] + 1
            assert [] == [s["version"] for s in snaps if s["version"] > final_version], interaction_id
        letters = _dead_letters(fold_settings)
        assert sorted((e["id"], "window_closed") for e in closed) == sorted(
            (str(header(m, "event_id")), str(header(m, "reason"))) for m in letters)
        assert {i: e["version"] + 1 for i, e in offline.items()} == _tombstone_versions(fold_settings, sorted(offline))
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_replicas_joining_and_leaving_mid_stream_hand_windows_over_and_each_closes_exactly_once(
    settings: Settings, tmp_path: Path,
) -> None:
    """Calls with in-window edits flow while a second replica joins, the first leaves (SIGTERM: finish the
    batch, commit, leave the group) and joins again. Small batches keep a batch in flight
    (`ILOG_FOLD_OVERLAP`) across the rebalances. Every log ends like `ilog fold` with exactly one
    finalized snapshot (a graceful handover re-reads nothing and closes nothing twice)."""
    fold_settings = _settings(settings).model_copy(update={"fold_batch_size": 3})
    first = WorkerProcess("fold", fold_settings, tmp_path / "a.log", **FAST_GROUP)
    producer = LiveProducer(fold_settings)
    second: WorkerProcess | None = None
    again: WorkerProcess | None = None
    try:
        assert wait_for(lambda: "partitions assigned" in first.log_text(), timeout_s=30), first.log_text()[-2000:]
        producer.start()
        time.sleep(4)
        second = WorkerProcess("fold", fold_settings, tmp_path / "b.log", **FAST_GROUP)
        assert wait_for(lambda: "partitions assigned" in second.log_text() and "partitions revoked"
                        in first.log_text(), timeout_s=30), second.log_text()[-2000:]
        time.sleep(5)
        assert first.stop() == 0, first.log_text()[-3000:]
        assert "fold stage stopped" in first.log_text()
        time.sleep(5)
        again = WorkerProcess("fold", fold_settings, tmp_path / "c.log", **FAST_GROUP)
        assert wait_for(lambda: "partitions assigned" in again.log_text(), timeout_s=30), again.log_text()[-2000:]
        time.sleep(4)
        producer.stop()
        offline = offline_fold(producer.sent, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=60)
        _assert_final_logs(messages, offline)
        copies = {i: sum(1 for s in snaps if s["finalized"]) for i, snaps in snapshots_by_id(messages).items()}
        assert {i: 1 for i in offline} == copies
        assert [] == _dead_letters(fold_settings)
    finally:
        for worker in (first, second, again):
            if worker is not None:
                assert worker.stop() == 0, worker.log_text()[-3000:]


def test_sigkill_at_random_points_while_calls_and_their_edits_flow_loses_no_edit_and_changes_no_final_log(
    settings: Settings, tmp_path: Path,
) -> None:
    """Calls with in-window edits flow and windows close every moment while the worker is SIGKILLed four
    times at random points (mid-batch, mid-finalization, with a batch in flight) and restarted at once. The
    edits waiting in Kafka meanwhile are applied, not `late_edit`; every log ends like `ilog fold`, each
    finalized copy the same."""
    fold_settings = _settings(settings).model_copy(update={"fold_batch_size": 3})
    instance = {"ILOG_GROUP_INSTANCE_ID": "fold-live-kill-test", **FAST_GROUP}
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
    producer = LiveProducer(fold_settings)
    rng = random.Random(71)
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), timeout_s=30), worker.log_text()[-2000:]
        producer.start()
        for _ in range(4):
            time.sleep(rng.uniform(2.0, 5.0))
            worker.kill()
            worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **instance)
        time.sleep(3)
        producer.stop()
        offline = offline_fold(producer.sent, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=60)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
        assert {i: e["version"] + 1 for i, e in offline.items()} == _tombstone_versions(fold_settings, sorted(offline))
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def _broker_down_while_redis_restarts_empty(worker: WorkerProcess) -> None:
    """The broker stops; while it is away Redis restarts empty (nothing can be restored yet); the broker
    comes back: the worker waits through both, not ready meanwhile, and restores once it can."""
    port = _http_port(worker)
    _stack("kafka-stop")
    try:
        assert wait_for(lambda: not _ready(port), timeout_s=10)
        _stack("redis-restart")
        time.sleep(6)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        assert not _ready(port)
    finally:
        _stack("kafka-start")
    assert wait_for(lambda: _ready(port), timeout_s=60), worker.log_text()[-3000:]


def test_redis_restarted_empty_while_the_broker_is_down_the_worker_waits_for_both_and_loses_nothing(
    settings: Settings, tmp_path: Path,
) -> None:
    log_text = _state_loss_run(settings, tmp_path, _broker_down_while_redis_restarts_empty)
    assert "state restored from the changelog" in log_text


def test_sigterm_mid_backlog_finishes_the_batch_commits_and_the_next_worker_reads_nothing_again(
    settings: Settings, tmp_path: Path,
) -> None:
    """SIGTERM while a backlog is folded in full batches (one in flight): the worker lands the batch, commits
    and leaves (exit 0). The next worker starts where it stopped: no snapshot (interaction, version) is
    produced twice (the events hold no duplicates, whose snapshots are emitted again by design), and every
    log ends like `ilog fold`."""
    fold_settings = _settings(settings, window_s=60.0).model_copy(update={"fold_batch_size": 200})
    histories = generate_histories(4000, seed=81, start=datetime.now(UTC), rate_per_s=200, edit_window_s=60.0,
                                   time_scale=0.01, mix=GeneratorMix(duplicate_ratio=0.0))
    events = [item for history in histories for item in history]  # no duplicates: each emits its snapshot again
    offline = offline_fold(events, tmp_path, fold_settings)
    produce(fold_settings, fold_settings.events_topic, events)
    # the reader is in place first, and the stop follows the first snapshots: a reader still joining its group
    # while the worker folded the whole backlog (a loaded machine) stopped a worker with nothing left to do
    reader = TopicReader(fold_settings, fold_settings.upserts_topic)
    reader.wait_assigned()
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)

    def caught_up(messages: list[Any]) -> bool:
        newest = {i: max(s["version"] for s in snaps) for i, snaps in snapshots_by_id(messages).items()}
        return newest == {i: e["version"] for i, e in offline.items()}

    try:
        reader.read_until(lambda m: len(m) >= 1, timeout_s=60)
        assert 0 == worker.stop(), worker.log_text()[-3000:]
        assert "fold stage stopped" in worker.log_text()
        assert not caught_up(reader.read_until(lambda _m: False, timeout_s=1))  # stopped mid-backlog
        worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
        messages = reader.read_until(caught_up, timeout_s=60)
        assert caught_up(messages), worker.log_text()[-3000:]
        reader.read_until(lambda _m: False, timeout_s=2)
        pairs = Counter((s["interaction_id"], s["version"]) for snaps in snapshots_by_id(reader.messages).values()
                        for s in snaps)
        assert [] == sorted(pair for pair, count in pairs.items() if count > 1)
        assert _open_logs(fold_settings, sorted(offline)) == len(offline)
    finally:
        reader.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
