"""Where the fold stage's main thread spends its time, on a real run against the local stack.

    python -m tests.bench.profile_stage [--interactions 20000] [--out bench-results]

Produces the `fold_stage_throughput` data set to a topic of its own, runs the stage in burst mode under
pyinstrument (a sampling profiler of the thread that starts it: the stage's main thread; librdkafka's
and the delivery threads are not in the tree), and writes the tree as text and HTML to the out folder,
with the stage's rate, CPU time and the load average in `profile_stage.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pyinstrument import Profiler

from tests.bench.stack import bench_settings, cleanup, produce_histories, stack_env
from tests.bench.stage_bench import RATE_PER_S, _run_fold_stage


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.profile_stage", description=__doc__.splitlines()[0])
    parser.add_argument("--interactions", type=int, default=20_000)
    parser.add_argument("--out", type=Path, default=Path("bench-results"))
    parser.add_argument("--interval-s", type=float, default=0.001, help="sampling interval")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = bench_settings(stack_env(), "profile")
    try:
        produced = produce_histories(settings, args.interactions, seed=7, rate_per_s=RATE_PER_S)
        load_before = os.getloadavg()[0]
        profiler = Profiler(interval=args.interval_s)
        cpu_started_s = time.process_time()
        profiler.start()
        wall_s, events = _run_fold_stage(settings, on_batch=None)
        profiler.stop()
        cpu_s = time.process_time() - cpu_started_s
    finally:
        cleanup(settings)
    (args.out / "profile_stage.txt").write_text(profiler.output_text(unicode=True, show_all=False))
    (args.out / "profile_stage.html").write_text(profiler.output_html())
    figures = {"events": events, "produced": produced, "events_per_s": round(events / wall_s),
               "cpu_s": round(cpu_s, 2), "events_per_cpu_s": round(events / cpu_s),
               "profiled_seconds": round(profiler.last_session.duration, 1)
               if profiler.last_session else None,
               "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
               "note": "rates are under the profiler (sampling adds overhead)"}
    (args.out / "profile_stage.json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
