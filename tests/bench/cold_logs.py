"""What a cold log costs the fold and its encoding: the same call on the same log, cold and then warm.

    python -m tests.bench.cold_logs [INTERACTIONS]     # default 20,000 (~211,000 events)

Folds the `fold_stage_throughput` data set (histories merged by event time, as `tests.bench.pure_parts`),
keeping every accepted event's predecessor state and the event. Then, in the data set's order, it times
`fold(state, event)` followed by the new log's `to_bytes()` twice in a row on the same inputs: the first call
finds the state's objects wherever the many folds since its last event left them (the stage's case), the
second finds them in the CPU's caches. Prints CPU µs per event of both and their difference: the price of the
open logs' objects being cold, which a fold over a compact value would not pay. A report for comparing
commands and machines, not a test.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from schemas.events import Rejection
from schemas.fast import decode_event_fast
from tests.bench.stack import _time_ordered_events
from tests.bench.stage_bench import RATE_PER_S
from worker.core.fold import Accepted, fold
from worker.core.state import InteractionLog, Tombstone
from worker.runtime.collector import tune_gc


def run(interactions: int = 20_000) -> dict[str, Any]:
    decoded = [decode_event_fast(json.dumps(event).encode())
               for event in _time_ordered_events(interactions, seed=7, rate_per_s=RATE_PER_S)]
    tune_gc()
    states: dict[str, InteractionLog | Tombstone] = {}
    clock = time.process_time
    spent = {"cold": 0.0, "warm": 0.0}
    events = 0
    for event in decoded:
        if isinstance(event, Rejection):
            continue
        before = states.get(event.subject)
        if before is None:  # a new log: nothing to be cold
            result = fold(before, event, edit_window_s=120.0)
        else:
            for temperature in ("cold", "warm"):
                started = clock()
                result = fold(before, event, edit_window_s=120.0)
                if isinstance(result.log, InteractionLog):
                    result.log.to_bytes()
                spent[temperature] += clock() - started
            events += 1
        if isinstance(result.outcome, Accepted) and result.log is not None:
            states[event.subject] = result.log
    cold_us, warm_us = (spent[name] / events * 1e6 for name in ("cold", "warm"))
    return {"interactions": interactions, "events_timed": events, "open_logs": len(states),
            "cold_us_per_event": round(cold_us, 2), "warm_us_per_event": round(warm_us, 2),
            "cold_cost_us": round(cold_us - warm_us, 2)}


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 20_000)))
