"""`ilog worker fold|sync|all`: build the real clients once, run the stages, stop gracefully.

SIGTERM/SIGINT: stop polling, finish the batch, flush, commit, leave the group — bounded by
`drain_timeout_seconds` (a watchdog ends the process if draining hangs; Kubernetes' grace period
must be longer).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from functools import partial
from types import FrameType

import structlog

from worker.errors import UnreachableError
from worker.runtime import bootstrap, metrics
from worker.runtime.build import build_info
from worker.runtime.collector import tune_gc
from worker.runtime.health import HealthServer, bind_health_server
from worker.runtime.logs import configure_logging
from worker.runtime.settings import Settings, unknown_variables
from worker.runtime.status import StageStatus
from worker.store.checks import check_redis, check_redis_once_it_answers
from worker.store.cluster import REDIS_ERRORS, no_node_answers

log = structlog.get_logger("ilog.runner")


class StageName(StrEnum):
    FOLD = "fold"
    SYNC = "sync"
    ALL = "all"


def install_stop_handlers(stop: threading.Event, drain_timeout_s: float) -> None:
    def handle(signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("stopping", signal=signal.Signals(signum).name, drain_timeout_s=drain_timeout_s)
        stop.set()
        watchdog = threading.Timer(drain_timeout_s, _drain_overrun, args=(drain_timeout_s,))
        watchdog.daemon = True
        watchdog.start()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)


def _drain_overrun(drain_timeout_s: float) -> None:
    log.error("drain timeout passed; exiting without a clean close", drain_timeout_s=drain_timeout_s)
    os._exit(1)


def _always() -> bool:
    return True


def _no_notes() -> list[str]:
    return []


def readiness(
    settings: Settings, joined: Callable[[], bool], notes: Callable[[], list[str]] = _no_notes,
    statuses: Sequence[StageStatus] = (), kafka: Callable[[], str | None] | None = None,
) -> Callable[[], tuple[bool, str]]:
    """Ready: Redis answers a PING, Kafka answers a metadata request, every stage joined its group and
    none is waiting (for Redis, on a restore, with every broker down). A paused target (credentials
    refused, unreachable) is named in the body but keeps the pod ready: a restart cannot fix the
    target, and a not-ready pod would stall rollouts (e.g. the one that ships new credentials)."""
    client = bootstrap.redis_client(settings, timeout_s=bootstrap.REDIS_PROBE_TIMEOUT_S)

    def check() -> tuple[bool, str]:
        try:
            client.ping()
        except REDIS_ERRORS as exc:
            return False, f"redis unreachable: {exc}"
        for status in statuses:
            reason = status.not_ready_reason()
            if reason is not None:
                return False, reason
        kafka_problem = kafka() if kafka is not None else None
        if kafka_problem is not None:
            return False, kafka_problem
        if not joined():
            return False, "consumer group not joined yet"
        return True, "\n".join(["ready", *notes()])

    return check


def liveness(
    statuses: Sequence[StageStatus], stall_s: float, kafka: Callable[[], str | None] | None = None,
) -> Callable[[], tuple[bool, str]]:
    """Alive while every stage's loop comes round (it beats while it waits on purpose, too), and no stage's
    consumer has been without its group coordinator for `stall_s` while the brokers answer the probe
    (`kafka`): that consumer is wedged (`worker.runtime.status`), and only a restart gives it fresh clients.
    While the brokers do not answer it is an outage, which the stages wait out (DESIGN.md): the probe decides."""

    def check() -> tuple[bool, str]:
        for status in statuses:
            if status.stalled_s() > stall_s:
                return False, f"{status.name}: loop stalled for {status.stalled_s():.0f} s"
        for status in statuses:
            lost_s = status.uncoordinated_s()
            if lost_s > stall_s and kafka is not None and kafka() is None:
                return False, (f"{status.name}: no group coordinator for {lost_s:.0f} s while the brokers answer "
                               "(the Kafka client is wedged; a restart gives it fresh connections)")
        return True, "ok"

    return check


def announce(stage: StageName) -> None:
    """What runs (a log line and `ilog_build_info`) and which `ILOG_*` variables nothing reads."""
    info = build_info()
    metrics.BUILD_INFO.labels(*info).set(1)
    log.info("worker starting", stage=stage.value, **info._asdict())
    for warning in unknown_variables(os.environ):
        log.warning("unknown setting", detail=warning)


def stage_topics(stage: StageName, settings: Settings) -> list[str]:
    """The topics a stage reads or writes: fold the events, its DLQ, the upserts and the state changelog;
    sync the upserts and their DLQ."""
    fold = [settings.events_topic, settings.events_dlq_topic, settings.upserts_topic, settings.state_changelog_topic]
    sync = [settings.upserts_topic, settings.upserts_dlq_topic]
    return {StageName.FOLD: fold, StageName.SYNC: sync, StageName.ALL: [*fold, settings.upserts_dlq_topic]}[stage]


def keep_topics(settings: Settings, names: list[str], stop: threading.Event, retry_s: float = 5.0) -> None:
    """Create the missing ones of `names` once Kafka answers (tried again every `retry_s` until it does).

    A broker without auto-creation (the local stack's, most production clusters) refuses messages for a
    topic nobody created, and the stage stops on them: a deployment that created only the topics CONTRACT.md
    names (not the state changelog), or none yet, would not run. Topics that exist are left as they are."""
    from worker.errors import ConfigError
    from worker.kafka.topics import ensure_topics

    attempt = 0
    while not stop.is_set():
        try:
            created = ensure_topics(settings, names)
        except ConfigError as exc:  # topic configs that contradict the settings: `ilog topics create` says so too
            log.warning("topics not created", detail=str(exc))
            return
        except Exception as exc:  # unreachable, not authorized: the operator may create them; keep trying
            if attempt % 12 == 0:
                log.warning("topics not checked yet", detail=str(exc), retry_s=retry_s)
            attempt += 1
            stop.wait(retry_s)
            continue
        if created:
            log.info("topics created", topics=created)
        return


_CLUSTER_WAIT_FIRST_S = 0.5
_CLUSTER_WAIT_MAX_S = 10.0
_CLUSTER_WAIT_LOG_EVERY = 6  # attempts between two log lines


def wait_for_redis_cluster(settings: Settings, stop: threading.Event, health: HealthServer) -> bool:
    """In cluster mode, wait until a node of the cluster answers before the stages are built; True then, False
    when stopped while waiting. A cluster client learns the slot map when it is made, so without this a worker
    started while no node answers (the whole cluster restarting) exited, where on one Redis node it starts and
    waits (DESIGN.md: the stages wait for Redis, they do not exit). With `ILOG_REDIS_CLUSTER=auto` it first waits
    for the node to answer whether it is a cluster node. Meanwhile the health port serves: alive, not ready,
    saying what it waits for."""
    if settings.redis_cluster == "auto" and not _wait_for_cluster_mode(settings, stop, health):
        return False
    if not bootstrap.redis_cluster_on(settings):
        return True
    delay_s, attempt = _CLUSTER_WAIT_FIRST_S, 0
    while True:
        try:
            bootstrap.redis_client(settings, timeout_s=bootstrap.REDIS_PROBE_TIMEOUT_S).close()
            if attempt:
                log.info("available again", waited_for="redis cluster")
            return True
        except UnreachableError as exc:
            if exc.__cause__ is None or not no_node_answers(exc.__cause__):
                raise  # a refusal (not a cluster node, say): a bad setting, one line and exit 2
            if attempt == 0:
                health.start(lambda: (False, "waiting for the Redis Cluster: no node answers"))
            if attempt % _CLUSTER_WAIT_LOG_EVERY == 0:
                log.warning("waiting", waiting_for="redis cluster", detail=str(exc.__cause__), attempt=attempt,
                            http_port=health.port)
        attempt += 1
        if stop.wait(delay_s):
            return False
        delay_s = min(delay_s * 2, _CLUSTER_WAIT_MAX_S)


def _wait_for_cluster_mode(settings: Settings, stop: threading.Event, health: HealthServer) -> bool:
    """`ILOG_REDIS_CLUSTER=auto`: wait until the node answers whether it is a cluster node; True then, False when
    stopped while waiting. Meanwhile the health port serves: alive, not ready, saying what it waits for."""
    delay_s, attempt = _CLUSTER_WAIT_FIRST_S, 0
    while bootstrap.ask_cluster_mode(settings) is None:
        if attempt == 0:
            health.start(lambda: (False, "redis unreachable: waiting for it to answer whether it is a cluster node "
                                         "(ILOG_REDIS_CLUSTER=auto)"))
        if attempt % _CLUSTER_WAIT_LOG_EVERY == 0:
            log.warning("waiting", waiting_for="redis", redis_url=bootstrap.redacted_url(settings.redis_url),
                        detail="ILOG_REDIS_CLUSTER=auto asks the node whether it is a cluster node; set it to skip "
                               "asking", attempt=attempt, http_port=health.port)
        attempt += 1
        if stop.wait(delay_s):
            return False
        delay_s = min(delay_s * 2, _CLUSTER_WAIT_MAX_S)
    if attempt:
        log.info("available again", waited_for="redis")
    return True


def run_worker(stage: StageName, settings: Settings, stop: threading.Event | None = None) -> None:
    bootstrap.check_kafka_options(settings)  # a bad one is a bad setting: its one line before any log line
    configure_logging(settings)
    announce(stage)
    stop = stop or threading.Event()
    install_stop_handlers(stop, settings.drain_timeout_seconds)
    # Bound before anything connects: a port that cannot be had stops the worker at once (exit 2).
    health = bind_health_server(settings.http_host, settings.http_port,
                                port_chosen="http_port" in settings.model_fields_set)
    if not wait_for_redis_cluster(settings, stop, health):
        health.stop()
        return  # stopped while waiting
    runners: list[tuple[str, Callable[[threading.Event], None], Callable[[], bool]]] = []
    notes: Callable[[], list[str]] = _no_notes
    statuses: list[StageStatus] = []
    if stage in (StageName.FOLD, StageName.ALL):
        probe = bootstrap.redis_client(settings, timeout_s=bootstrap.REDIS_PROBE_TIMEOUT_S)
        if not check_redis(probe, settings):  # checked once Redis answers: an evicting one stops the worker then
            runners.append(("redis check", partial(check_redis_once_it_answers, probe, settings), _always))
        fold = bootstrap.fold_stage(settings)
        runners.append(("fold", fold.run, fold.assigned_once.is_set))
        statuses.append(fold.status)
    if stage in (StageName.SYNC, StageName.ALL):
        sync = bootstrap.sync_stage(settings)
        log.info("sync targets on", targets=[target.name for target in sync.targets])
        runners.append(("sync", sync.run, sync.assigned_once.is_set))
        notes = sync.paused_targets
        statuses.append(sync.status)
    keeper = threading.Thread(target=keep_topics, args=(settings, stage_topics(stage, settings), stop),
                              name="topics", daemon=True)
    keeper.start()
    collector = tune_gc()
    kafka = bootstrap.kafka_probe(settings)
    health.start(
        readiness(settings, lambda: all(j() for _, _, j in runners), notes, statuses, kafka),
        liveness(statuses, settings.health_stall_seconds, kafka),
    )
    log.info("worker started", stage=stage.value, http_port=health.port)
    try:
        _run_all(runners, stop, collector.sweep_if_due)
    finally:
        health.stop()


def _run_all(
    runners: list[tuple[str, Callable[[threading.Event], None], Callable[[], bool]]], stop: threading.Event,
    every_half_second: Callable[[], object] = lambda: None,
) -> None:
    """Each stage in its own thread; one failing stops the others (and the process exits non-zero).
    The main thread meanwhile runs `every_half_second` (the collector's sweep)."""
    failures: list[BaseException] = []

    def guard(name: str, run: Callable[[threading.Event], None]) -> None:
        try:
            run(stop)
        except BaseException as exc:
            log.exception("stage failed", stage=name)
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=guard, args=(name, run), name=name) for name, run, _ in runners]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        for thread in threads:
            thread.join(timeout=0.5)
        every_half_second()
    if failures:
        raise failures[0]
