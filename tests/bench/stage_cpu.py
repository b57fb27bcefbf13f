"""The fold stage's CPU per event on the local stack, without a profiler.

    python -m tests.bench.stage_cpu [--interactions 20000]

Produces the `fold_stage_throughput` data set to a topic of its own, runs the stage in burst mode as
`fold_stage_throughput` does, and prints events/s, the process's CPU µs per event (librdkafka's threads
included) and the main thread's, with the load average before and after. For A/B runs on a shared
machine, where CPU time per event moves less with the load than events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import time

from tests.bench.stack import bench_settings, cleanup, produce_histories, stack_env
from tests.bench.stage_bench import RATE_PER_S, _run_fold_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.stage_cpu", description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=20_000)
    args = parser.parse_args(argv)
    settings = bench_settings(stack_env(), "cpu")
    try:
        produce_histories(settings, args.interactions, seed=7, rate_per_s=RATE_PER_S)
        load_before = os.getloadavg()[0]
        process_started_s, thread_started_s = time.process_time(), time.thread_time()
        wall_s, events = _run_fold_stage(settings, on_batch=None)
        process_s, thread_s = time.process_time() - process_started_s, time.thread_time() - thread_started_s
    finally:
        cleanup(settings)
    print(json.dumps({"events": events, "events_per_s": round(events / wall_s),
                      "process_cpu_us_per_event": round(process_s / events * 1e6, 1),
                      "main_thread_cpu_us_per_event": round(thread_s / events * 1e6, 1),
                      "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
