"""Alternating A/B of the fold stage's overlapped commit (`ILOG_FOLD_OVERLAP`) on one pre-produced topic.

    python -m tests.bench.overlap_ab [--interactions 6000] [--rounds 3]

Produces the `fold_stage_throughput` data set once, then runs the stage in burst mode with the overlap
off (A) and on (B), alternating, each run in a consumer group and Redis key prefix of its own. Prints
one JSON line per run: events/s (first batch to the end of the run, every window closed), the
process's CPU µs per event (`time.process_time`: the main thread, the writer thread and librdkafka's
threads; not the broker's or Redis's), the batches (and how many were short), the seconds spent in the
garbage collector and its full collections, and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import threading
import time
import uuid
from collections.abc import Sequence

from tests.bench.stack import bench_settings, cleanup, produce_histories, stack_env
from tests.bench.stage_bench import RATE_PER_S, _log_to_file
from worker.core.batch import Record
from worker.fold.stage import FoldOptions
from worker.runtime import bootstrap
from worker.runtime.collector import tune_gc
from worker.runtime.settings import Settings


def _run(settings: Settings) -> dict[str, float]:
    _log_to_file(settings)
    store = bootstrap.log_store(settings)
    stage = bootstrap.fold_stage(settings, FoldOptions(burst=True, follow_wall_clock=False))
    first = {"s": 0.0, "events": 0, "batches": 0, "short": 0}
    process = stage.process

    def counted(records: Sequence[Record]) -> None:
        if first["events"] == 0:
            first["s"] = time.perf_counter()
        first["events"] += len(records)
        first["batches"] += 1
        first["short"] += len(records) < settings.fold_batch_size
        process(records)

    stage.process = counted  # type: ignore[method-assign]
    tune_gc()
    collector = {"s": 0.0, "started": 0.0, "full": 0}

    def timed(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            collector["started"] = time.perf_counter()
            return
        collector["s"] += time.perf_counter() - collector["started"]
        collector["full"] += info["generation"] == 2

    gc.callbacks.append(timed)
    cpu_started_s = time.process_time()
    try:
        stage.run(threading.Event())
    finally:
        gc.callbacks.remove(timed)
        store.close()
    wall_s = time.perf_counter() - first["s"]
    cpu_s = time.process_time() - cpu_started_s
    events = int(first["events"])
    return {"events": events, "events_per_s": round(events / wall_s),
            "cpu_us_per_event": round(cpu_s / events * 1e6, 1), "batches": first["batches"],
            "short_batches": first["short"], "gc_s": round(collector["s"], 2), "gc_full": collector["full"],
            "load_1m": round(os.getloadavg()[0], 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.overlap_ab", description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=6_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    base = bench_settings(stack_env(), "overlap-ab")
    runs: list[Settings] = []
    try:
        produce_histories(base, args.interactions, seed=7, rate_per_s=RATE_PER_S)
        for round_ in range(args.rounds):
            for overlap in (False, True):
                run_id = uuid.uuid4().hex[:6]
                settings = base.model_copy(update={"fold_overlap": overlap, "key_prefix": f"{base.key_prefix}-{run_id}",
                                                   "fold_group": f"{base.fold_group}-{run_id}"})
                runs.append(settings)
                figures = _run(settings)
                print(json.dumps({"round": round_ + 1, "overlap": overlap, **figures}), flush=True)
    finally:
        for settings in [base, *runs]:
            cleanup(settings)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
