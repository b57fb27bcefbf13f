"""Fold stage benchmarks against the local Kafka + Redis: throughput vs a bare consumer, and worker RSS.

Both run the real `FoldStage` in burst mode (windows close by event time); the RSS one in a fresh process.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from tests.bench.stack import bench_settings, cleanup, produce_histories, rss_bytes, stack_env
from worker.core.batch import Record
from worker.fold.stage import FoldOptions
from worker.runtime import bootstrap
from worker.runtime.collector import tune_gc
from worker.runtime.logs import configure_logging
from worker.runtime.settings import Settings

RATE_PER_S = 200.0  # interaction arrivals per second of event time
TARGET_EVENTS_PER_S = 30_000
TARGET_RATIO = 0.5
TARGET_RSS_GROWTH = 0.20
SMALL_CACHE = 1_000  # open logs kept in memory: nearly every batch reads its logs from Redis (a restart, a rebalance)
SMALL_BATCH = 1_000  # the fold stage's batch before it had one of its own (the sync stage's default)
PROCESSES = 2  # the scale-out figure: this many stages in one consumer group, one process each


def fold_stage_throughput(quick: bool) -> dict[str, Any]:
    """Events/s of the fold stage (Kafka → Redis → upserts) and of a bare consumer, same topic, same run."""
    interactions = 2_000 if quick else 20_000
    settings = bench_settings(stack_env(), "stage")
    # The same topic again, in a group and key prefix of its own, with smaller batches: fewer events of
    # one interaction share a load, a snapshot and a write (docs/benchmarks.md, "A fold batch of its own").
    small = settings.model_copy(update={"fold_batch_size": SMALL_BATCH, "key_prefix": f"{settings.key_prefix}-small",
                                        "fold_group": f"{settings.fold_group}-small"})
    # Once more with a state cache too small for the open logs: what a stage gets whose logs come from Redis.
    cold = settings.model_copy(update={"state_cache_entries": SMALL_CACHE, "key_prefix": f"{settings.key_prefix}-cold",
                                       "fold_group": f"{settings.fold_group}-cold"})
    # And once more in a group of its own with one stage per process (partitions split between them).
    split = settings.model_copy(update={"key_prefix": f"{settings.key_prefix}-split",
                                        "fold_group": f"{settings.fold_group}-split"})
    try:
        produced = produce_histories(settings, interactions, seed=7, rate_per_s=RATE_PER_S)
        bare_s, bare_count = _bare_consume(settings, produced)
        fold_s, fold_count = _run_fold_stage(settings, on_batch=None)
        small_s, small_count = _run_fold_stage(small, on_batch=None)
        cold_s, cold_count = _run_fold_stage(cold, on_batch=None)
        split_s, split_count = _run_fold_processes(split, PROCESSES)
    finally:
        cleanup(settings)
        cleanup(small)
        cleanup(cold)
        cleanup(split)
    bare_rate, fold_rate = bare_count / bare_s, fold_count / fold_s
    ratio = fold_rate / bare_rate
    return {
        "name": "fold_stage_throughput",
        "parameters": {"interactions": interactions, "events": produced, "partitions": settings.partitions,
                       "fold_batch_size": settings.fold_batch_size, "mode": "burst, event-time clock"},
        "measured": {"fold_events_per_s": round(fold_rate), "bare_consumer_events_per_s": round(bare_rate),
                     "fold_to_bare_ratio": round(ratio, 3), "fold_seconds": round(fold_s, 2),
                     "bare_seconds": round(bare_s, 2), "fold_events": fold_count, "bare_events": bare_count,
                     f"fold_events_per_s_batch_{SMALL_BATCH}": round(small_count / small_s),
                     f"fold_events_per_s_cache_{SMALL_CACHE}": round(cold_count / cold_s),
                     f"fold_events_per_s_{PROCESSES}_processes": round(split_count / split_s),
                     f"fold_to_bare_ratio_{PROCESSES}_processes": round(split_count / split_s / bare_rate, 3)},
        "target": {"fold_events_per_s": TARGET_EVENTS_PER_S, "fold_to_bare_ratio": TARGET_RATIO},
        "meets_target": fold_rate >= TARGET_EVENTS_PER_S and ratio >= TARGET_RATIO,
    }


# Worker memory is judged on a steady stream: arrivals slow enough that windows close while new calls
# come (about STEADY_RATE_PER_S × (call length + window) logs open at a time), so growth means memory
# that grows with history. At RATE_PER_S nearly every interaction of the run is open at once (the
# state cache holds the open logs): that run is reported beside it, not judged.
STEADY_RATE_PER_S = 20.0


def _rss_run(interactions: int, rate_per_s: float) -> dict[str, Any]:
    child = subprocess.run(
        [sys.executable, "-m", "tests.bench.stage_bench", "rss", str(interactions), str(rate_per_s)],
        capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[2],
    )
    samples = json.loads(child.stdout.strip().splitlines()[-1])
    growth = samples["rss_final_bytes"] / samples["rss_early_bytes"] - 1
    return {"rate_per_s": rate_per_s, "events": samples["produced"],
            "rss_early_mib": round(samples["rss_early_bytes"] / 2**20, 1), "early_events": samples["early_events"],
            "rss_final_mib": round(samples["rss_final_bytes"] / 2**20, 1), "final_events": samples["final_events"],
            "growth": round(growth, 3), "fold_events_per_s": samples["fold_events_per_s"],
            "rss_mib_each_tenth": samples["rss_mib_each_tenth"]}


def worker_rss_growth(quick: bool) -> dict[str, Any]:
    """RSS of a fresh worker process after the first tenth of the events vs at the end (~100k vs ~1M events):
    on a steady stream (judged) and with nearly every interaction open at once (reported)."""
    interactions = 9_500 if quick else 95_000  # about 100,000 / 1,000,000 events
    steady = _rss_run(interactions, STEADY_RATE_PER_S)
    all_open = _rss_run(interactions, RATE_PER_S)
    return {
        "name": "worker_rss_growth",
        "parameters": {"interactions": interactions, "events": steady["events"],
                       "steady_rate_per_s": STEADY_RATE_PER_S, "all_open_rate_per_s": RATE_PER_S},
        "measured": {**{k: v for k, v in steady.items() if k not in ("rate_per_s", "events")},
                     "all_open": all_open},
        "target": {"max_growth": TARGET_RSS_GROWTH, "judged": "steady"},
        "meets_target": steady["growth"] <= TARGET_RSS_GROWTH,
    }


def _rss_worker(interactions: int, rate_per_s: float) -> dict[str, Any]:
    """In a fresh process: produce (in a forked child), run the stage, sample this process's RSS."""
    settings = bench_settings(stack_env(), "rss")
    samples: dict[str, int] = {}
    try:
        produced = produce_histories(settings, interactions, seed=11, rate_per_s=rate_per_s)
        early_mark = produced // 10

        tenths: list[int] = []

        def sample(consumed: int) -> None:
            if consumed >= early_mark and "rss_early_bytes" not in samples:
                samples["rss_early_bytes"], samples["early_events"] = rss_bytes(), consumed
            if consumed >= (len(tenths) + 1) * early_mark:
                tenths.append(round(rss_bytes() / 2**20))

        fold_s, consumed = _run_fold_stage(settings, on_batch=sample)
        samples.update(rss_final_bytes=rss_bytes(), final_events=consumed, produced=produced,
                       fold_events_per_s=round(consumed / fold_s))
    finally:
        cleanup(settings)
    return {**samples, "rss_mib_each_tenth": tenths}


def _bare_consume(settings: Settings, expected: int) -> tuple[float, int]:
    """Read and JSON-decode every message; the clock starts at the first message (after the group join)."""
    consumer = Consumer(settings.kafka_config(**{
        "group.id": f"{settings.fold_group}-bare", "auto.offset.reset": "earliest", "enable.auto.commit": False,
    }))
    consumer.subscribe([settings.events_topic])
    count, first_s = 0, 0.0
    deadline_s = time.monotonic() + 600
    try:
        while count < expected and time.monotonic() < deadline_s:
            for message in consumer.consume(settings.fold_batch_size, settings.batch_timeout_seconds):
                if message.error() is not None:
                    continue
                if count == 0:
                    first_s = time.perf_counter()
                json.loads(message.value() or b"null")
                count += 1
        return time.perf_counter() - first_s, count
    finally:
        consumer.close()


def _run_fold_stage(settings: Settings, on_batch: Callable[[int], None] | None) -> tuple[float, int]:
    """Run the stage until drained; seconds from the first batch to the end of the last one."""
    _log_to_file(settings)
    store = bootstrap.log_store(settings)
    stage = bootstrap.fold_stage(settings, FoldOptions(burst=True, follow_wall_clock=False))
    progress = {"consumed": 0, "first_s": 0.0, "last_s": 0.0}
    process = stage.process

    def counted(records: Sequence[Record]) -> None:
        if progress["consumed"] == 0:
            progress["first_s"] = time.perf_counter()
        process(records)
        progress["consumed"] += len(records)
        progress["last_s"] = time.perf_counter()
        if on_batch is not None:
            on_batch(int(progress["consumed"]))

    stage.process = counted  # type: ignore[method-assign]
    tune_gc()  # as `ilog worker` does
    try:
        stage.run(threading.Event())  # burst: returns once every partition is at its end and drained
    finally:
        store.close()
    return progress["last_s"] - progress["first_s"], int(progress["consumed"])


def _run_fold_processes(settings: Settings, processes: int) -> tuple[float, int]:
    """The stage in `processes` fresh processes of one consumer group (as that many `ilog worker fold`);
    seconds from the first batch of any of them to the end of the last batch of all of them."""
    context = multiprocessing.get_context("spawn")
    results: multiprocessing.Queue[tuple[float, float, int]] = context.Queue()
    children = [context.Process(target=_fold_child, args=(settings, results)) for _ in range(processes)]
    for child in children:
        child.start()
    spans = [results.get(timeout=900) for _ in children]
    for child in children:
        child.join()
    if any(child.exitcode != 0 for child in children):
        raise RuntimeError("a fold process of the split run failed")
    started = [first for first, _last, count in spans if count]
    return max(last for _first, last, _count in spans) - min(started), sum(count for *_, count in spans)


def _fold_child(settings: Settings, results: multiprocessing.Queue[tuple[float, float, int]]) -> None:
    """One stage of the split run: (first batch start, last batch end, events), on CLOCK_MONOTONIC,
    which every process shares."""
    last = {"s": 0.0}

    def mark(_consumed: int) -> None:  # runs at the end of each batch
        last["s"] = time.monotonic()

    seconds, consumed = _run_fold_stage(settings, on_batch=mark)
    results.put((last["s"] - seconds, last["s"], consumed))


def _log_to_file(settings: Settings) -> None:
    """The worker's JSON log lines, into a file: a terminal would slow the stage down and bury the table."""
    path = Path(tempfile.gettempdir()) / f"{settings.fold_group}.log"
    configure_logging(settings.model_copy(update={"log_format": "json"}))
    for handler in logging.getLogger().handlers:  # the worker's one handler, pointed at the file
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(path.open("a"))


if __name__ == "__main__":
    if sys.argv[1:2] == ["rss"]:
        print(json.dumps(_rss_worker(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else RATE_PER_S)))
