"""`ilog replay` against the real broker and redis-server, run as operators run it: a process."""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Producer, TopicPartition

from tests.support import (
    ILOG,
    REPO,
    TopicReader,
    WorkerProcess,
    header,
    offline_fold,
    produce,
    settings_env,
    wait_for,
)
from tests.support import event as cloud_event
from worker.core.fold import snapshot
from worker.core.state import InteractionLog, StoredLog, Tombstone, as_log
from worker.dev.generator import GeneratorMix, generate_stream
from worker.ops.replay import ReplayRequest, plan_replay
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys

WINDOW_S = 20.0
GRACE_S = 1.0


def _settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"edit_window_seconds": WINDOW_S, "finalize_grace_seconds": GRACE_S})


def _stream(n: int, seed: int, start: datetime) -> list[dict[str, Any] | bytes]:
    """Spread over ~n/2 s of event time, so early windows close by event time and late ones stay open."""
    mix = GeneratorMix(duplicate_ratio=0.05, late_edit_ratio=0.1, malformed_ratio=0.01)
    return generate_stream(n, seed=seed, start=start, rate_per_s=2.0, edit_window_s=WINDOW_S, mix=mix,
                           time_scale=0.05)


def _replay(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ILOG, "replay", *args], cwd=REPO, env=settings_env(settings), capture_output=True,
                          text=True, timeout=180, check=False)


def _states(settings: Settings, prefix: str, ids: list[str]) -> dict[str, InteractionLog | Tombstone | None]:
    store = bootstrap.log_store(settings, prefix)
    try:
        return {i: as_log(s.state) if isinstance(s.state, StoredLog) else s.state for i, s in store.load(ids).items()}
    finally:
        store.close()


def _closable_before(offline: dict[str, dict[str, Any]], moment: datetime) -> set[str]:
    """The windows a replay started at `moment` closes: deadline + grace before it (those logs can get
    no more edits); logs that never disconnected have no deadline and stay open."""
    return {
        i for i, log in offline.items()
        if log["edit_deadline"] and datetime.fromisoformat(log["edit_deadline"]) + timedelta(seconds=GRACE_S) < moment
    }


def _deadline(log: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(log["edit_deadline"])


def _upserts(settings: Settings) -> list[tuple[str, int, str]]:
    """Every snapshot on the upserts topic (a replay has flushed before it exits: the end offsets are final)."""
    watermarks = bootstrap.plain_consumer(settings, **{"group.id": "watermarks"})
    try:
        count = sum(watermarks.get_watermark_offsets(TopicPartition(settings.upserts_topic, p), timeout=10)[1]
                    for p in range(settings.partitions))
    finally:
        watermarks.close()
    reader = TopicReader(settings, settings.upserts_topic)
    messages = reader.read_until(lambda m: len(m) >= count, timeout_s=30)
    reader.close()
    assert count == len(messages)
    return sorted((json.loads(m.value() or b"")["interaction_id"], int(header(m, "version") or 0),
                   (m.value() or b"").decode()) for m in messages)


def _newest(snapshots: list[tuple[str, int, str]]) -> dict[str, dict[str, Any]]:
    """Each interaction's newest snapshot, without its trigger (the strongest of the events its batch
    folded: it depends on where the batch was cut, the log does not)."""
    newest: dict[str, tuple[int, str]] = {}
    for interaction_id, version, body in snapshots:
        newest[interaction_id] = max(newest.get(interaction_id, (version, body)), (version, body))
    return {i: {k: v for k, v in json.loads(body).items() if k != "trigger"} for i, (_, body) in newest.items()}


def test_a_replay_of_a_past_range_finalizes_every_interaction_the_last_ones_included_and_twice_is_the_same(
    settings: Settings, tmp_path: Path
) -> None:
    run = _settings(settings)
    stream = _stream(120, seed=31, start=datetime.now(UTC) - timedelta(hours=2))
    offline = offline_fold(stream, tmp_path, run)
    produce(run, run.events_topic, stream)
    ids = sorted(offline)
    finalized = _closable_before(offline, datetime.now(UTC))
    disconnected = {i for i, log in offline.items() if log["edit_deadline"]}
    assert disconnected == finalized and len(finalized) > 10
    last = max(finalized, key=lambda i: _deadline(offline[i]))  # its deadline lies after every event time
    newest_event = max(datetime.fromisoformat(e["time"]) for e in stream if isinstance(e, dict))
    assert _deadline(offline[last]) > newest_event

    epoch_key = keys.sync_epoch_key(run.key_prefix)
    client = bootstrap.redis_client(run)
    client.set(epoch_key, "1000")  # a live sync epoch that began long before these interactions
    first = _replay(run, "--from", "earliest", "--group", "backfill-a")
    assert first.returncode == 0, first.stderr[-3000:]
    assert not client.exists(epoch_key)  # ended: no absent sync state of these logs is trusted
    client.close()
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert {"group": "backfill-a", "key_prefix": f"{run.key_prefix}-replay-backfill-a",
            "events_read": len(stream), "remaining_lag": 0, "interrupted": False} == {
        k: summary[k] for k in ("group", "key_prefix", "events_read", "remaining_lag", "interrupted")}

    expected = {
        i: (offline[i]["version"] + 1 if i in finalized else offline[i]) for i in ids
    }
    got = {
        i: (s.version if isinstance(s, Tombstone) else snapshot(s).model_dump(mode="json") if s else None)
        for i, s in _states(run, summary["key_prefix"], ids).items()
    }
    assert expected == got
    assert isinstance(_states(run, summary["key_prefix"], [last])[last], Tombstone)
    assert {i: None for i in ids} == _states(run, run.key_prefix, ids)  # the live keys are untouched

    snapshots_first = _upserts(run)
    second = _replay(run, "--from", "earliest", "--group", "backfill-a")
    assert second.returncode == 0, second.stderr[-3000:]
    snapshots_both = _upserts(run)
    snapshots_second = sorted((Counter(snapshots_both) - Counter(snapshots_first)).elements())
    assert len(snapshots_both) == len(snapshots_first) + len(snapshots_second)
    # the same logs, finalization included: each interaction's newest snapshot is the same. The ones
    # before it may differ: one snapshot per interaction and batch, and how the consumer cuts batches
    # depends on what each fetch had brought in
    assert _newest(snapshots_first) == _newest(snapshots_second)
    assert set(_newest(snapshots_first)) == set(ids)
    got_again = {
        i: (s.version if isinstance(s, Tombstone) else snapshot(s).model_dump(mode="json") if s else None)
        for i, s in _states(run, summary["key_prefix"], ids).items()
    }
    assert got == got_again


def test_replay_dead_letters_go_to_the_replay_dlq_not_the_live_one(settings: Settings, tmp_path: Path) -> None:
    run = _settings(settings)
    stream = _stream(40, seed=32, start=datetime.now(UTC) - timedelta(hours=1))
    rejects = tmp_path / "rejects.jsonl"
    subprocess.run([*ILOG, "fold", str(_write(stream, tmp_path)), "--rejects", str(rejects)], cwd=REPO,
                   env=settings_env(run), capture_output=True, check=True)
    expected_rejected = len(rejects.read_text().splitlines())
    assert expected_rejected > 0
    produce(run, run.events_topic, stream)

    result = _replay(run, "--from", "earliest", "--group", "backfill-dlq")
    assert result.returncode == 0, result.stderr[-3000:]
    reader = TopicReader(run, f"{run.events_topic}.replay.dlq")
    letters = reader.read_until(lambda m: len(m) >= expected_rejected, timeout_s=20)
    reader.close()
    assert expected_rejected == len(letters)
    assert {"invalid", "unknown_type", "late_edit", "window_closed"} >= {header(m, "reason") for m in letters}
    live = TopicReader(run, run.events_dlq_topic)
    assert [] == live.read_until(lambda m: False, timeout_s=2)
    live.close()


def test_replay_to_a_time_stops_at_the_offsets_for_that_time(settings: Settings) -> None:
    """Broker timestamps decide the range: events stamped before --to are read, later ones are not."""
    run = _settings(settings)
    # within the topic's retention (ILOG_EVENTS_RETENTION_SECONDS): older records may be deleted mid-test
    base = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    early = [e for e in _stream(10, seed=33, start=base) if isinstance(e, dict)]
    late = [e for e in _stream(10, seed=34, start=base + timedelta(hours=1)) if isinstance(e, dict)]
    cut = base + timedelta(minutes=30)
    times = {id(e): datetime.fromisoformat(e["time"]) for e in [*early, *late]}
    assert max(times[id(e)] for e in early) < cut <= min(times[id(e)] for e in late)
    producer = Producer(run.kafka_config())
    for events in (early, late):  # early ones acknowledged first: no retry puts a late one before them
        for event in events:
            stamp = datetime.fromisoformat(event["time"])
            producer.produce(run.events_topic, key=event["subject"], value=json.dumps(event).encode(),
                             timestamp=int(stamp.timestamp() * 1000))
        assert producer.flush(30) == 0

    plan = plan_replay(run, ReplayRequest(from_time=base - timedelta(minutes=1), to_time=cut, group="to-test"))
    assert len(early) == plan.total_events
    result = _replay(run, "--from", (base - timedelta(minutes=1)).isoformat(), "--to", cut.isoformat(),
                     "--group", "to-test")
    assert result.returncode == 0, result.stderr[-3000:]
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert (len(early), 0) == (summary["events_read"], summary["remaining_lag"])
    # the rate, by wall clock and per CPU second, with the load it was measured under
    # (`seconds` is rounded to 10 ms: events_per_s × seconds is within 10 ms of events of events_read)
    assert abs(summary["events_per_s"] * summary["seconds"] - summary["events_read"]) <= summary["events_per_s"] / 100
    assert 0 < summary["cpu_seconds"] and 0 < summary["events_per_cpu_s"] and summary["load_average_1m"] >= 0
    early_ids = sorted({e["subject"] for e in early})
    late_ids = sorted({e["subject"] for e in late})
    states = _states(run, summary["key_prefix"], early_ids + late_ids)
    assert all(states[i] is not None for i in early_ids)
    assert {i: None for i in late_ids} == {i: states[i] for i in late_ids}


def test_replay_refuses_the_live_fold_group_with_a_clear_message(settings: Settings) -> None:
    result = _replay(settings, "--from", "earliest", "--group", settings.fold_group)
    assert 2 == result.returncode
    assert "refusing to replay with the live fold group" in result.stderr
    assert "--force-live-group" in result.stderr


def test_replay_refuses_a_group_that_running_consumers_are_members_of(settings: Settings) -> None:
    """A worker under a group name of its own (or any consumer) is running with the group: a replay beside it
    would not be a member, so the broker would refuse its commits; it is refused with one line, exit 2."""
    group = f"{settings.key_prefix}-in-use"
    member = bootstrap.plain_consumer(settings, **{"group.id": group, "auto.offset.reset": "earliest"})
    try:
        member.subscribe([settings.events_topic])
        deadline = time.monotonic() + 60
        while not member.assignment() and time.monotonic() < deadline:
            member.poll(0.2)
        assert member.assignment()
        result = _replay(settings, "--from", "earliest", "--group", group)
    finally:
        member.close()
    assert 2 == result.returncode, result.stderr[-2000:]
    assert 1 == len(result.stderr.strip().splitlines()), result.stderr
    assert f"refusing to replay with the consumer group '{group}': 1 member(s) consume with it now" in result.stderr
    assert "" == result.stdout
    # once they left, the group is the replay's to use
    result = _replay(settings, "--from", "earliest", "--group", group)
    assert 0 == result.returncode, result.stderr[-2000:]


def test_a_second_replay_of_a_group_is_refused_while_the_first_runs_and_the_first_is_left_whole(
    settings: Settings, tmp_path: Path
) -> None:
    """Two replays of one group would share its key prefix: the second would clear the keys the first is
    folding into. While the first runs (here held stopped mid-run), the second is one line and exit 2;
    the first ends with every log whole and lets the group go."""
    run = _settings(settings)
    stream = _stream(400, seed=36, start=datetime.now(UTC) - timedelta(hours=2))
    offline = offline_fold(stream, tmp_path, run)
    produce(run, run.events_topic, stream)
    lock = keys.replay_lock_key(run.key_prefix, "one-at-a-time")
    client = bootstrap.redis_client(run)
    first = subprocess.Popen([*ILOG, "replay", "--from", "earliest", "--group", "one-at-a-time"], cwd=REPO,
                             env=settings_env(run), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        folding = f"{run.key_prefix}-replay-one-at-a-time:*"  # the first replay has begun to write its keys
        assert wait_for(lambda: next(iter(client.scan_iter(match=folding, count=1000)), None) is not None,
                        timeout_s=60, interval_s=0.01)
        first.send_signal(signal.SIGSTOP)
        second = _replay(run, "--from", "earliest", "--group", "one-at-a-time")
        first.send_signal(signal.SIGCONT)
        out, _ = first.communicate(timeout=180)
    finally:
        first.kill()
        first.wait()
    assert 2 == second.returncode, second.stderr[-2000:]
    assert 1 == len(second.stderr.strip().splitlines()), second.stderr
    assert "a replay with the group 'one-at-a-time' is running" in second.stderr
    assert 0 == first.returncode
    summary = json.loads(out.strip().splitlines()[-1])
    assert (len(stream), 0) == (summary["events_read"], summary["remaining_lag"])
    ids = sorted(offline)
    states = _states(run, summary["key_prefix"], ids)
    assert {i: offline[i]["version"] for i in ids} == {
        i: (s.version - 1 if isinstance(s, Tombstone) else s.version if s else None) for i, s in states.items()}
    assert not client.exists(lock)  # let go at the end: the next replay of the group may run
    client.close()


def test_a_replay_whose_redis_lost_its_keys_mid_run_says_so_and_exits_2(settings: Settings, tmp_path: Path) -> None:
    """A replay keeps no state changelog: when Redis loses its keys mid-run (restarted empty, flushed) it
    would fold the rest onto nothing and end with exit 0 and a fraction of the logs. It stops instead, says
    so in one line (its last on stderr), prints no summary, and exits 2: the remedy is to run it again."""
    run = _settings(settings)
    stream = _stream(400, seed=37, start=datetime.now(UTC) - timedelta(hours=2))
    produce(run, run.events_topic, stream)
    client = bootstrap.redis_client(run)
    first = subprocess.Popen([*ILOG, "replay", "--from", "earliest", "--group", "loses-redis"], cwd=REPO,
                             env=settings_env(run), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        folding = f"{run.key_prefix}-replay-loses-redis:*"
        assert wait_for(lambda: next(iter(client.scan_iter(match=folding, count=1000)), None) is not None,
                        timeout_s=60, interval_s=0.01)
        first.send_signal(signal.SIGSTOP)
        lost = list(client.scan_iter(match=f"{run.key_prefix}*", count=1000))  # as FLUSHALL does, to this test's keys
        client.delete(*lost)
        first.send_signal(signal.SIGCONT)
        out, err = first.communicate(timeout=180)
    finally:
        first.kill()
        first.wait()
        client.close()
    assert 2 == first.returncode, err[-3000:]
    assert "" == out
    assert err.strip().splitlines()[-1].startswith(
        "ilog replay: Redis lost the replay's keys while it ran (restarted empty, flushed, or its group taken over)")


def test_replay_rejects_a_time_it_cannot_read(settings: Settings) -> None:
    result = _replay(settings, "--from", "last tuesday")
    assert 2 == result.returncode
    assert "not a time: 'last tuesday'" in result.stderr


def _write(stream: list[dict[str, Any] | bytes], tmp_path: Path) -> Path:
    path = tmp_path / "stream.jsonl"
    with path.open("wb") as out:
        for item in stream:
            out.write((item if isinstance(item, bytes) else json.dumps(item).encode()) + b"\n")
    return path


def _recent_and_old(now: datetime) -> tuple[list[dict[str, Any]], list[str], list[str]]:
    """Calls that ended an hour ago (windows long over) and calls that ended a second ago (still open)."""
    events: list[dict[str, Any]] = []
    old = [f"conv-old-{n}" for n in range(4)]
    recent = [f"conv-recent-{n}" for n in range(4)]
    ends = {**{c: now - timedelta(hours=1) for c in old}, **{c: now - timedelta(seconds=1) for c in recent}}
    for call, end in ends.items():
        events += [
            cloud_event("interaction.connected", call, 1, end - timedelta(seconds=30), {
                "media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
                "customer": {"address": "+4930123456", "name": "Ada Example"}}),
            cloud_event("log.updated", call, 2, end - timedelta(seconds=10), {"notes": f"Notes of {call}."}),
            cloud_event("interaction.disconnected", call, 3, end),
        ]
    return events, old, recent


def _finalized_snapshots(settings: Settings, ids: list[str], wait_s: float) -> dict[str, int]:
    reader = TopicReader(settings, settings.upserts_topic)
    messages = reader.read_until(lambda m: False, timeout_s=wait_s)
    reader.close()
    counts = {i: 0 for i in ids}
    for message in messages:
        snap = json.loads(message.value() or b"")
        if snap["interaction_id"] in counts and snap["trigger"] == "finalized":
            counts[snap["interaction_id"]] += 1
    return counts


def test_a_replay_whose_range_ends_now_leaves_the_open_windows_to_the_live_worker(settings: Settings) -> None:
    """Into the live keys: windows that can still get edits stay open with their deadlines in the live
    deadline set, and the live worker's finalizer closes them when they are due, once."""
    run = settings.model_copy(update={"edit_window_seconds": 15.0, "finalize_grace_seconds": GRACE_S})
    events, old, recent = _recent_and_old(datetime.now(UTC))
    produce(run, run.events_topic, events)
    result = _replay(run, "--from", "earliest", "--group", "backfill-now", "--live-keys")
    assert result.returncode == 0, result.stderr[-3000:]
    states = _states(run, run.key_prefix, old + recent)
    assert {i: "closed" for i in old} | {i: "open" for i in recent} == {
        i: "closed" if isinstance(s, Tombstone) else "open" if isinstance(s, InteractionLog) else None
        for i, s in states.items()}
    store = bootstrap.log_store(run)
    try:
        far_ms = int((datetime.now(UTC) + timedelta(days=1)).timestamp() * 1000)
        scheduled = {i for p in range(run.partitions) for i, _ in store.due(p, far_ms, 1000)}
    finally:
        store.close()
    assert set(recent) == scheduled  # in the live deadline set; the closed ones left it

    live = WorkerProcess("fold", run, Path(tempfile.mkdtemp()) / "fold.log")
    try:
        closed = wait_for(lambda: all(isinstance(s, Tombstone) for s in _states(run, run.key_prefix, recent).values()),
                          40)
        assert closed, live.log_text()[-3000:]
    finally:
        assert live.stop() == 0, live.log_text()[-3000:]
    assert {i: 1 for i in old + recent} == _finalized_snapshots(run, old + recent, 3.0)


def test_a_replay_into_an_upserts_topic_that_does_not_exist_says_so_before_it_folds(settings: Settings) -> None:
    """A broker that does not create topics (the local stack's, most clusters) would refuse every snapshot only
    after the whole range was read, in words that blame the brokers: the replay checks first, and names it."""
    missing = f"{settings.upserts_topic}-misspelt"
    started = time.monotonic()
    result = _replay(settings, "--from", "earliest", "--group", "to-a-missing-topic", "--upserts-topic", missing)
    assert (2, [f"ilog replay: the upserts topic {missing!r} does not exist on {settings.kafka_bootstrap}: create "
                "it, or name the one the sync stage reads with --upserts-topic"]) == (
        result.returncode, result.stderr.splitlines()[-1:])
    assert time.monotonic() - started < 30
    assert missing not in bootstrap.admin_client(settings).list_topics(timeout=10).topics
