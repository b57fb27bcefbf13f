"""`ilog replay`: backfill — fold a time range of the events topic again, by event time, then stop.

How a replay runs (DESIGN.md "Replay and backfill"):
- its own consumer group (default `ilog-replay-<from>`; the live fold group is refused unless forced),
  partitions assigned explicitly at the offsets `offsets_for_times(--from)` gives, never subscribed;
- stop offsets captured at start: the partition ends, or `offsets_for_times(--to)`;
- fold by event time and close windows by event time (no wall clock), burst mode: it ends when
  every partition reached its stop offset and no window is due. The messages' Kafka timestamps stand in
  for the wall clock of the time replayed: `future_time` is judged against each message's timestamp and
  a partition's clock never runs past the newest one read there (`worker.fold.finalizer`), so an event
  timed ahead of when it was sent is rejected, or capped, as the live worker did;
- the end of the range: once a partition reached its stop offset, every window whose deadline +
  grace lies before the wall clock at the replay's start (`ReplayPlan.started_ms`) is closed — no
  edit can come for those any more — and only those. The later ones stay open with their deadlines
  in the deadline set of the replay's key prefix: with `--live-keys` that is the live set, and the
  live worker's finalizer closes them when they are due; in the replay's own prefix nobody closes
  them (the live worker closes its own copies of those interactions, folded from the same events);
- the range's ends cut interactions: the replay also reads `replay_lead_seconds` before --from (the
  lead-in) and, with --to, after it (the lead-out), folds those events too, and emits the snapshots of
  only the interactions first seen in the range. One that began in the lead-in belongs to the replay of
  the range before (emitted without its first events it would be partial: a look-up finds the record
  and overwrites it with less, and a Zendesk log without its Related-to ticket makes a new ticket);
  one that continues into the lead-out is folded with its later events before its window closes (the
  lead-out folds nothing else);
- its own Redis key prefix `<key_prefix>-replay-<group>` (cleared at start, so a replay always
  recomputes from scratch), or the live keys with `--live-keys`;
- snapshots go to the upserts topic: they carry their version and the sync stage skips versions it
  already synced, so running a replay twice leaves the CRM state as it was;
- its rejections go to `<events topic>.replay.dlq`, not the live DLQ: a replay re-reads events the
  live worker already dead-lettered, and a second copy of each would only confuse `ilog dlq replay`.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import NewTopic  # type: ignore[attr-defined]
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from worker.errors import ConfigError, KafkaClientError, StoreError
from worker.fold.stage import FoldOptions, FoldStage
from worker.runtime import bootstrap
from worker.runtime.settings import Settings
from worker.store import keys
from worker.store.cluster import REDIS_ERRORS

_METADATA_TIMEOUT_S = 15.0
_OFFSET_LOOKUP_ATTEMPTS = 10
_OFFSET_LOOKUP_PAUSE_S = 1.0
_GLOB_SPECIALS = "\\*?[]"


@dataclass(frozen=True)
class ReplayRequest:
    """What the operator asked for (CLI options, parsed)."""

    from_time: datetime
    to_time: datetime | None = None
    group: str | None = None
    live_keys: bool = False
    prefix: str | None = None
    upserts_topic: str | None = None
    dlq_topic: str | None = None
    force_live_group: bool = False


@dataclass(frozen=True)
class ReplayPlan:
    group: str
    key_prefix: str
    upserts_topic: str
    dlq_topic: str
    start_offsets: dict[int, int]
    stop_offsets: dict[int, int]
    started_ms: int = field(default_factory=lambda: int(time.time() * 1000))  # wall clock at the start
    # the lead-in before the range (from --from less `replay_lead_seconds`) and, with --to, the lead-out
    # after it: read to fold the interactions crossing the range's ends whole, never emitted for themselves
    lead_in_offsets: dict[int, int] | None = None
    lead_out_offsets: dict[int, int] | None = None

    @property
    def total_events(self) -> int:
        return sum(max(0, self.stop_offsets[p] - start) for p, start in self.start_offsets.items())


@dataclass
class ReplayResult:
    plan: ReplayPlan
    events_read: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this process's CPU time over the run, every thread (librdkafka's too)
    interrupted: bool = False
    remaining: dict[int, int] = field(default_factory=dict)


def parse_time(text: str) -> datetime:
    """RFC 3339 / ISO 8601 (`Z` allowed; naive means UTC), or `earliest` for the start of the topic."""
    if text.strip().lower() in ("earliest", "beginning"):
        return datetime.fromtimestamp(0, UTC)
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"not a time: {text!r} (use RFC 3339, e.g. 2026-11-27T10:00:00Z, or 'earliest')") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def default_group(from_time: datetime) -> str:
    return "ilog-replay-" + from_time.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def plan_replay(settings: Settings, request: ReplayRequest) -> ReplayPlan:
    """Check the request against the live names and capture start and stop offsets now."""
    group = request.group or default_group(request.from_time)
    if group == settings.fold_group and not request.force_live_group:
        raise ConfigError(
            f"refusing to replay with the live fold group {group!r}: it would move the live worker's "
            "committed offsets. Pick another --group (or pass --force-live-group if that is really meant)."
        )
    if request.to_time is not None and request.to_time <= request.from_time:
        raise ConfigError("--to must be later than --from")
    prefix = settings.key_prefix if request.live_keys else (
        request.prefix or f"{settings.key_prefix}-replay-{group}")
    bootstrap.require_kafka(settings)
    if not request.force_live_group:
        refuse_a_group_in_use(settings, group)
    bootstrap.require_redis(settings)
    started_ms = int(time.time() * 1000)  # before the stop offsets: everything produced by now is read
    starts, stops = capture_offsets(settings, group, request.from_time, request.to_time)
    lead = timedelta(seconds=settings.replay_lead_seconds)
    lead_from = max(request.from_time - lead, datetime.fromtimestamp(0, UTC))
    lead_in, _ = capture_offsets(settings, group, lead_from, None)
    lead_out = None
    if request.to_time is not None:
        _, lead_out = capture_offsets(settings, group, request.to_time, request.to_time + lead)
    return ReplayPlan(
        group=group, key_prefix=prefix, upserts_topic=request.upserts_topic or settings.upserts_topic,
        dlq_topic=request.dlq_topic or f"{settings.events_topic}.replay.dlq",
        start_offsets=starts, stop_offsets=stops, started_ms=started_ms,
        lead_in_offsets={p: min(lead_in.get(p, start), start) for p, start in starts.items()},
        lead_out_offsets=None if lead_out is None else {
            p: max(lead_out.get(p, stop), stop) for p, stop in stops.items()},
    )


def refuse_a_group_in_use(settings: Settings, group: str) -> None:
    """A group with members is in use by running consumers (a fold worker under a group name of its own,
    a tool): a replay assigns its partitions without joining, so the broker would refuse its commits, and
    it would move offsets those consumers rely on. A group the broker cannot describe is not refused."""
    admin = bootstrap.admin_client(settings)
    try:
        description = admin.describe_consumer_groups([group], request_timeout=_METADATA_TIMEOUT_S)[group].result()
    except KafkaException:
        return
    members = len(description.members or [])
    if members:
        raise ConfigError(
            f"refusing to replay with the consumer group {group!r}: {members} member(s) consume with it now "
            "(a worker or another consumer). Pick another --group, or stop them first."
        )


def capture_offsets(
    settings: Settings, group: str, from_time: datetime, to_time: datetime | None
) -> tuple[dict[int, int], dict[int, int]]:
    """Per partition: the first offset at/after `from_time`, and the stop offset (exclusive)."""
    consumer = bootstrap.plain_consumer(settings, **{"group.id": group, "enable.auto.commit": False})
    try:
        topic = settings.events_topic
        metadata = consumer.list_topics(topic, timeout=_METADATA_TIMEOUT_S).topics.get(topic)
        if metadata is None or metadata.error is not None or not metadata.partitions:
            raise ConfigError(f"topic {topic!r} not found on {settings.kafka_bootstrap}")
        partitions = sorted(metadata.partitions)
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=_METADATA_TIMEOUT_S)[1]
                for p in partitions}
        starts = _offsets_at(consumer, topic, partitions, from_time, ends)
        stops = ends if to_time is None else _offsets_at(consumer, topic, partitions, to_time, ends)
        return starts, {p: max(stops[p], starts[p]) for p in partitions}
    finally:
        consumer.close()


def _offsets_at(
    consumer: Consumer, topic: str, partitions: list[int], moment: datetime, ends: dict[int, int]
) -> dict[int, int]:
    """The first offset at/after `moment` per partition. A partition the broker answered with an error
    (a leader moving, a broker starting) is asked again; taking its -1 for "no message after the time"
    would start the replay at the partition's end and skip its range without a word."""
    moment_ms = int(moment.timestamp() * 1000)
    offsets: dict[int, int] = {}
    pending = list(partitions)
    for attempt in range(_OFFSET_LOOKUP_ATTEMPTS):
        if attempt:
            time.sleep(_OFFSET_LOOKUP_PAUSE_S)
        found = consumer.offsets_for_times(
            [TopicPartition(topic, p, moment_ms) for p in pending], timeout=_METADATA_TIMEOUT_S
        )
        for tp in found:
            if tp.error is None:  # -1: no message at or after the time, so the partition's end
                offsets[tp.partition] = tp.offset if tp.offset >= 0 else ends[tp.partition]
        pending = [tp.partition for tp in found if tp.error is not None]
        if not pending:
            return offsets
    raise KafkaClientError(f"offsets for {moment.isoformat()} of {topic!r} partitions {pending}: "
                           f"{next(tp.error for tp in found if tp.error is not None)}")


def replay_settings(settings: Settings, plan: ReplayPlan) -> Settings:
    return settings.model_copy(update={"key_prefix": plan.key_prefix, "upserts_topic": plan.upserts_topic})


def clear_replay_keys(settings: Settings, plan: ReplayPlan) -> int:
    """Delete the replay's own keys (never the live prefix), so every replay starts from nothing."""
    if plan.key_prefix == settings.key_prefix:
        return 0
    escaped = "".join(f"\\{c}" if c in _GLOB_SPECIALS else c for c in plan.key_prefix)
    client = bootstrap.redis_client(settings)
    try:
        deleted = 0
        batch: list[bytes] = []
        for key in client.scan_iter(match=f"{escaped}:*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                deleted += int(client.unlink(*batch))
                batch = []
        if batch:
            deleted += int(client.unlink(*batch))
        return deleted
    finally:
        client.close()


def end_sync_epoch(settings: Settings) -> None:
    """A replay re-creates logs (and, with --live-keys, their hashes) whose sync state may be gone: the
    live sync epoch ends, so the sync stage trusts no absent state of an interaction that began before
    now and looks the record up first (`worker.sync.epoch`). The next sync batch starts a new epoch."""
    client = bootstrap.redis_client(settings)
    try:
        client.delete(keys.sync_epoch_key(settings.key_prefix))
    finally:
        client.close()


def require_topic(settings: Settings, topic: str) -> None:
    """The upserts topic the replay writes to must exist before anything is folded: a broker that does not create
    topics refuses every snapshot only after the whole range was read (a `ConfigError`, one line and exit 2, naming
    it). It is not created here: a misspelt name would take the backfill somewhere no sync stage reads."""
    admin = bootstrap.admin_client(settings)
    if topic not in admin.list_topics(timeout=_METADATA_TIMEOUT_S).topics:
        raise ConfigError(f"the upserts topic {topic!r} does not exist on {settings.kafka_bootstrap}: create it, or "
                          "name the one the sync stage reads with --upserts-topic")


def ensure_topic(settings: Settings, topic: str) -> None:
    """Create `topic` like the project's topics when it is missing (the replay DLQ)."""
    admin = bootstrap.admin_client(settings)
    if topic in admin.list_topics(timeout=_METADATA_TIMEOUT_S).topics:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=settings.partitions, replication_factor=settings.replication_factor)]
    )
    for future in futures.values():
        try:
            future.result(timeout=_METADATA_TIMEOUT_S)
        except Exception as exc:  # created meanwhile by another replay: fine
            if "already exists" not in str(exc).lower() and "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def run_replay(
    settings: Settings, plan: ReplayPlan, stop: threading.Event, *, progress: bool | None = None
) -> ReplayResult:
    """Fold the planned range into the plan's keys and topics; returns when drained or stopped."""
    require_topic(settings, plan.upserts_topic)
    ensure_topic(settings, plan.dlq_topic)
    clear_replay_keys(settings, plan)
    end_sync_epoch(settings)
    run_settings = replay_settings(settings, plan)
    started_s, cpu_started_s = time.monotonic(), time.process_time()
    ends = EndsOfRange()
    lead_in = plan.lead_in_offsets or plan.start_offsets
    if any(lead_in[p] < start for p, start in plan.start_offsets.items()):
        _fold_phase(run_settings, plan, lead_in, plan.start_offsets, ends.before_range, None).run(stop)
    positions: dict[int, int] = {}  # the range's phase: how far it read (its stage's positions)
    if not stop.is_set():
        last = plan.lead_out_offsets is None
        stage = _fold_phase(run_settings, plan, plan.start_offsets, plan.stop_offsets, ends.in_range,
                            plan.started_ms if last else None)
        positions = stage.positions
        with ReplayProgress(plan, positions, progress) as report:
            stage.run(stop, after_step=report)
    if plan.lead_out_offsets is not None and not stop.is_set():
        _fold_phase(run_settings, plan, plan.stop_offsets, plan.lead_out_offsets, None, plan.started_ms,
                    fold_only=ends.seen_in_range).run(stop)
    result = ReplayResult(plan=plan, seconds=time.monotonic() - started_s,
                          cpu_seconds=time.process_time() - cpu_started_s, interrupted=stop.is_set())
    result.remaining = remaining_lag(plan, positions)
    result.events_read = plan.total_events - sum(result.remaining.values())
    return result


class EndsOfRange:
    """Which interactions a replay emits: those first seen in its range. One seen first in the lead-in
    began before --from (its snapshots belong to a replay of that range, and without its events before
    the range it would be partial); one seen first in the lead-out begins after --to."""

    def __init__(self) -> None:
        self.before: set[str] = set()
        self.within: set[str] = set()

    def before_range(self, interaction_id: str) -> bool:
        self.before.add(interaction_id)
        return False

    def in_range(self, interaction_id: str) -> bool:
        if interaction_id in self.before:
            return False
        self.within.add(interaction_id)
        return True

    def seen_in_range(self, interaction_id: str | None) -> bool:
        return interaction_id in self.within


def _fold_phase(
    settings: Settings, plan: ReplayPlan, starts: dict[int, int], stops: dict[int, int],
    emit_only: Callable[[str], bool] | None, end_clock_ms: int | None,
    fold_only: Callable[[str | None], bool] | None = None,
) -> FoldStage:
    """A burst fold stage over [starts, stops); only the last phase closes the windows due at the end."""
    options = FoldOptions(group=plan.group, burst=True, follow_wall_clock=False, stop_offsets=dict(stops),
                          start_offsets=dict(starts), dlq_topic=plan.dlq_topic, end_clock_ms=end_clock_ms,
                          emit_only=emit_only, fold_only=fold_only)
    return bootstrap.fold_stage(settings, options, prefix=plan.key_prefix)


def remaining_lag(plan: ReplayPlan, positions: dict[int, int]) -> dict[int, int]:
    return {p: max(0, stop - max(positions.get(p, plan.start_offsets[p]), plan.start_offsets[p]))
            for p, stop in plan.stop_offsets.items()}


class ReplayProgress:
    """A rich progress bar (events done / total, events/s, remaining lag); silent when not a terminal."""

    def __init__(self, plan: ReplayPlan, positions: dict[int, int], enabled: bool | None) -> None:
        self._plan = plan
        self._positions = positions
        console = Console(stderr=True)
        self._enabled = console.is_terminal if enabled is None else enabled
        self._progress = Progress(
            TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>8.0f} events/s"),
            TextColumn("{task.fields[cpu_rate]:>8.0f} events/cpu-s"), TextColumn("lag {task.fields[lag]}"),
            TimeElapsedColumn(), console=console,
        )
        self._task = self._progress.add_task(plan.group, total=plan.total_events, rate=0.0,
                                             cpu_rate=0.0, lag=plan.total_events)
        self._started_s, self._cpu_started_s = time.monotonic(), time.process_time()

    def __enter__(self) -> Callable[[], None]:
        if self._enabled:
            self._progress.start()
        return self.update

    def update(self) -> None:
        if not self._enabled:
            return
        lag = sum(remaining_lag(self._plan, self._positions).values())
        done = self._plan.total_events - lag
        elapsed_s = max(time.monotonic() - self._started_s, 1e-6)
        cpu_s = max(time.process_time() - self._cpu_started_s, 1e-6)
        self._progress.update(self._task, completed=done, rate=done / elapsed_s, cpu_rate=done / cpu_s, lag=lag)

    def __exit__(self, *exc_info: object) -> None:
        if self._enabled:
            self.update()
            self._progress.stop()


REPLAY_LOCK_TTL_S = 30.0
REPLAY_LOCK_CHECK_S = 2.0
_EXTEND_LOCK = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) end "
                "return 0")
_RELEASE_LOCK = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"


class ReplayStateLostError(StoreError):
    """Redis lost the replay's keys while it ran: its logs are incomplete; run it again."""


@contextmanager
def group_lock(settings: Settings, group: str, on_lost: Callable[[], None]) -> Iterator[threading.Event]:
    """One replay per group at a time: a second one would clear the first one's keys (`clear_replay_keys`)
    under it, and the first would go on folding its events onto nothing and emit partial logs. A Redis key
    holds the group while the replay runs (kept alive every few seconds; a killed replay's expires after the
    TTL). The key is also the replay's sign that Redis kept its keys: a replay keeps no state changelog, so
    when the key is gone (Redis restarted empty, flushed) or another holds it, the yielded event is set and
    `on_lost` called (the replay stops); it is checked once more at the end."""
    client = bootstrap.redis_client(settings)
    key = keys.replay_lock_key(settings.key_prefix, group)
    token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    ttl_ms = int(REPLAY_LOCK_TTL_S * 1000)
    if not client.set(key, token, nx=True, px=ttl_ms):
        holder = client.get(key)
        client.close()
        raise ConfigError(
            f"a replay with the group {group!r} is running ({_text(holder) or 'just ended'}): wait for it to end, "
            f"or pick another --group (a replay that was killed holds its group for {REPLAY_LOCK_TTL_S:.0f} s)"
        )
    done, lost = threading.Event(), threading.Event()

    def still_held() -> None:
        with suppress(*REDIS_ERRORS):  # unreachable: the replay waits for Redis; the key is judged after
            if not client.eval(_EXTEND_LOCK, 1, key, token, ttl_ms):
                lost.set()
                on_lost()

    def keep() -> None:
        while not done.wait(REPLAY_LOCK_CHECK_S) and not lost.is_set():
            still_held()

    keeper = threading.Thread(target=keep, name="replay-lock", daemon=True)
    keeper.start()
    try:
        yield lost
    finally:
        done.set()
        keeper.join()
        if not lost.is_set():
            still_held()
        with suppress(*REDIS_ERRORS):
            client.eval(_RELEASE_LOCK, 1, key, token)
        client.close()


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value or "")


def replay_command(settings: Settings, request: ReplayRequest) -> int:
    """Plan, run and report; Ctrl-C stops after the batch in hand (offsets committed, group left)."""
    import json
    import signal

    from worker.runtime.logs import configure_logging

    plan = plan_replay(settings, request)  # a bad request or an unreachable service: the CLI's one line
    stop = threading.Event()
    with group_lock(settings, plan.group, on_lost=stop.set) as lost:  # another replay of the group: one line
        configure_logging(settings)
        signal.signal(signal.SIGINT, lambda _signum, _frame: stop.set())
        signal.signal(signal.SIGTERM, lambda _signum, _frame: stop.set())
        result = run_replay(settings, plan, stop)
    if lost.is_set():
        raise ReplayStateLostError(
            "Redis lost the replay's keys while it ran (restarted empty, flushed, or its group taken over): its "
            f"logs in {plan.key_prefix!r} are incomplete and what it emitted since may be partial; run it again"
        )
    print(json.dumps(replay_summary(result, os.getloadavg()[0])))
    return 130 if result.interrupted else 0


def replay_summary(result: ReplayResult, load_average_1m: float) -> dict[str, Any]:
    """The result line: where the replay went and its rate, by wall clock and per CPU second (steadier
    on a shared machine), with the load average beside them, as `make bench` reports its figures."""
    plan = result.plan
    return {
        "group": plan.group, "key_prefix": plan.key_prefix, "upserts_topic": plan.upserts_topic,
        "dlq_topic": plan.dlq_topic, "events_read": result.events_read,
        "events_per_s": round(result.events_read / max(result.seconds, 1e-6), 1),
        "seconds": round(result.seconds, 2),
        "events_per_cpu_s": round(result.events_read / max(result.cpu_seconds, 1e-6), 1),
        "cpu_seconds": round(result.cpu_seconds, 2), "load_average_1m": round(load_average_1m, 2),
        "interrupted": result.interrupted, "remaining_lag": sum(result.remaining.values()),
    }
