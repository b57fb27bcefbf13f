"""Redis memory per open interaction: `used_memory` delta over N open logs written as the stage writes them."""

from __future__ import annotations

import json
from typing import Any

import redis

from schemas.decode import decode_event
from schemas.events import Rejection
from tests.bench.stack import BENCH_START, bench_settings, cleanup, stack_env
from worker.core.fold import fold
from worker.core.state import InteractionLog
from worker.core.writes import StateWrite
from worker.dev.generator import generate_histories
from worker.runtime.settings import Settings
from worker.store.redis_store import RedisStore

TARGET_BYTES = 2048
_CHUNK = 5_000  # interactions generated and written at a time
_WRITE_BATCH = 1_000  # like one fold-stage batch: one pipelined round trip


def redis_memory_per_open_interaction(quick: bool) -> dict[str, Any]:
    interactions = 10_000 if quick else 100_000
    settings = bench_settings(stack_env(), "mem")
    client = redis.Redis.from_url(settings.redis_url)
    store = RedisStore(client, settings.key_prefix)
    try:
        before = _used_memory(client)
        document_bytes = _write_open_logs(store, settings, interactions)
        after = _used_memory(client)
    finally:
        store.close()
        cleanup(settings)
    per_interaction = (after - before) / interactions
    return {
        "name": "redis_memory_per_open_interaction",
        "parameters": {"open_interactions": interactions,
                       "log": "every event of a generated history before its disconnect"},
        "measured": {"bytes_per_interaction": round(per_interaction), "used_memory_delta_mib":
                     round((after - before) / 2**20, 1), "mean_document_bytes": round(document_bytes / interactions)},
        "target": {"max_bytes_per_interaction": TARGET_BYTES},
        "meets_target": per_interaction <= TARGET_BYTES,
    }


def _used_memory(client: redis.Redis) -> int:
    info: dict[str, Any] = client.info("memory")
    return int(info["used_memory"])


def _write_open_logs(store: RedisStore, settings: Settings, interactions: int) -> int:
    """Fold each history up to its disconnect and store the open log; returns the documents' total size."""
    document_bytes = 0
    ttl_ms = int(settings.open_log_ttl_seconds * 1000)
    pending: list[StateWrite] = []
    for first in range(0, interactions, _CHUNK):
        histories = generate_histories(min(_CHUNK, interactions - first), seed=first + 1, start=BENCH_START,
                                       rate_per_s=200)
        for history in histories:
            log = _open_log(history, settings)
            document_bytes += len(log.to_bytes())
            pending.append(StateWrite(log.interaction_id, 0, log, ttl_ms))
            if len(pending) >= _WRITE_BATCH:
                _write(store, pending)
                pending = []
    if pending:
        _write(store, pending)
    return document_bytes


def _open_log(history: list[dict[str, Any]], settings: Settings) -> InteractionLog:
    log: InteractionLog | None = None
    for document in history:
        if document["type"] == "interaction.disconnected":
            break
        event = decode_event(json.dumps(document).encode())
        assert not isinstance(event, Rejection), event
        result = fold(log, event, edit_window_s=settings.edit_window_seconds,
                      applied_ids_kept=settings.applied_ids_kept)
        assert isinstance(result.log, InteractionLog)
        log = result.log
    assert log is not None
    return log


def _write(store: RedisStore, writes: list[StateWrite]) -> None:
    fenced = store.write(writes).fenced_out
    if fenced:
        raise RuntimeError(f"unexpected fenced writes in a fresh key space: {fenced[:3]}")
