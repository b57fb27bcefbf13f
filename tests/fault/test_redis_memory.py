"""The fold stage and Redis's memory settings (docs/deploy.md, "The Redis to run").

A full Redis (`maxmemory` reached under `noeviction`) refuses writes: the stage waits (not ready) instead
of losing state, and once memory is freed every log ends like `ilog fold`, nothing valid is
dead-lettered, the process never exits. A Redis that may evict keys is refused (exit 2, one line), also
when it did not answer at start and is checked once it does.
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

import redis

from tests.conftest import REPO
from tests.fault.test_fold_faults import (
    FAST_GROUP,
    LOSS_WINDOW_S,
    _all_finalized,
    _assert_final_logs,
    _dead_letters,
    _events,
    _http_port,
    _open_logs,
    _ready,
    _settings,
)
from tests.support import WorkerProcess, offline_fold, produce, snapshots_by_id, wait_for
from worker.runtime import bootstrap
from worker.runtime.settings import Settings


def _stored_logs(settings: Settings, ids: list[str]) -> int:
    """Interactions with a state in Redis: open logs and tombstones."""
    store = bootstrap.log_store(settings)
    try:
        return sum(1 for s in store.load(ids).values() if s.state is not None)
    finally:
        store.close()


def _readyz_body(port: int) -> str:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=3) as reply:
            return str(reply.read().decode())
    except urllib.error.HTTPError as error:
        return str(error.read().decode())


def test_a_full_redis_refusing_writes_makes_the_stage_wait_not_ready_and_it_loses_nothing_once_freed(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    fold_settings = _settings(settings, LOSS_WINDOW_S)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    before = _events(40, seed=51, start=datetime.now(UTC), window_s=LOSS_WINDOW_S)
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), timeout_s=30), worker.log_text()[-2000:]
        port = _http_port(worker)
        produce(fold_settings, fold_settings.events_topic, before)
        ids = sorted({e["subject"] for e in before})
        assert wait_for(lambda: _open_logs(fold_settings, ids) == len(ids), timeout_s=30), worker.log_text()[-3000:]
        redis_client.config_set("maxmemory", "1")  # noeviction (the stack's default): every write is refused
        try:
            during = _events(40, seed=52, start=datetime.now(UTC), window_s=LOSS_WINDOW_S)
            produce(fold_settings, fold_settings.events_topic, during)
            assert wait_for(lambda: not _ready(port), timeout_s=15), worker.log_text()[-3000:]
            time.sleep(3)
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
            assert not _ready(port)
            assert "Redis is full" in _readyz_body(port)
        finally:
            redis_client.config_set("maxmemory", "0")
        assert wait_for(lambda: _ready(port), timeout_s=20), worker.log_text()[-3000:]
        offline = offline_fold(before + during, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=60)
        assert worker.proc.poll() is None, worker.log_text()[-3000:]
        _assert_final_logs(messages, offline)
        assert [] == _dead_letters(fold_settings)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
    assert '"waiting_for": "redis"' in worker.log_text()


def _redis_pid() -> int:
    stack_dir = Path(os.environ.get("ILOG_STACK_DIR", str(REPO / ".stack")))
    return int((stack_dir / "redis.pid").read_text().strip())


def test_an_evicting_redis_that_did_not_answer_at_start_stops_the_worker_once_it_answers(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    """Redis set to evict (allkeys-lru under a maxmemory) is frozen while the worker starts: the worker
    cannot check it and waits; once Redis answers it is checked and refused, exit 2 with the reason."""
    redis_client.config_set("maxmemory", "1gb")
    redis_client.config_set("maxmemory-policy", "allkeys-lru")
    pid = _redis_pid()
    worker: WorkerProcess | None = None
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            worker = WorkerProcess("fold", settings, tmp_path / "worker.log")
            assert wait_for(lambda: "Redis not reachable at start" in worker.log_text(), timeout_s=30), \
                worker.log_text()[-2000:]
            assert worker.proc.poll() is None
        finally:
            os.kill(pid, signal.SIGCONT)
        assert 2 == worker.proc.wait(30), worker.log_text()[-3000:]
        last_line = worker.log_text().strip().splitlines()[-1]
        assert last_line.startswith("ilog worker fold: Redis may evict keys"), last_line
        assert "maxmemory-policy allkeys-lru" in last_line and "ILOG_REDIS_ALLOW_EVICTION=true" in last_line
    finally:
        redis_client.config_set("maxmemory-policy", "noeviction")
        redis_client.config_set("maxmemory", "0")
        if worker is not None:
            worker.stop()


def test_windows_that_close_while_redis_is_full_are_finalized_exactly_once(
    settings: Settings, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    """Windows come due while Redis refuses writes: their final snapshots are produced, but the tombstones
    cannot be stored. The finalizer waits for Redis without producing the same final snapshots again on
    every retry: one finalized snapshot per interaction, equal to `ilog fold`."""
    fold_settings = _settings(settings, window_s=2.0)
    worker = WorkerProcess("fold", fold_settings, tmp_path / "worker.log", **FAST_GROUP)
    events = _events(20, seed=53, start=datetime.now(UTC), window_s=2.0)
    try:
        assert wait_for(lambda: "partitions assigned" in worker.log_text(), timeout_s=30), worker.log_text()[-2000:]
        produce(fold_settings, fold_settings.events_topic, events)
        ids = sorted({e["subject"] for e in events})
        # Every log folded (calls last up to 6 s, so on a quiet machine all are open; on a loaded one the
        # first windows may close before the last event is folded: those are finalized before Redis is full).
        assert wait_for(lambda: _stored_logs(fold_settings, ids) == len(ids), timeout_s=30), worker.log_text()[-3000:]
        redis_client.config_set("maxmemory", "1")
        try:
            time.sleep(8)  # every window comes due; the tombstone writes are refused meanwhile
            assert worker.proc.poll() is None, worker.log_text()[-3000:]
        finally:
            redis_client.config_set("maxmemory", "0")
        offline = offline_fold(events, tmp_path, fold_settings)
        messages = _all_finalized(fold_settings, offline, timeout_s=30)
        time.sleep(2)
        messages = _all_finalized(fold_settings, offline, timeout_s=1)
        _assert_final_logs(messages, offline)
        copies = {i: sum(1 for s in snaps if s["finalized"]) for i, snaps in snapshots_by_id(messages).items()}
        assert {i: 1 for i in offline} == copies
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
