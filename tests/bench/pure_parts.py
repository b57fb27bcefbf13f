"""CPU per event of the fold's pure pieces on the stage's data set, without Kafka or Redis.

    python -m tests.bench.pure_parts [INTERACTIONS]              # default 20,000 (~211,000 events)
    python -m tests.bench.pure_parts --planner [INTERACTIONS]    # `plan_batch` in 1,000-event batches instead

The `fold_stage_throughput` data set (generated histories merged by event time, so ~20,000 logs are open at
once and nearly every event is its own snapshot and write), decoded with the stage's decoder
(`decode_event_fast`), then folded in that order with the states in a dict; after each accepted event the
state's stored bytes and its snapshot JSON are encoded, as the stage's planner does. Prints CPU µs per event
for decode, fold, stored bytes and snapshot (the worker's collector settings). Interleaving matters: with one
history at a time the facts a log refers to stay in the CPU's caches and the encoding looks cheaper than in
the stage. A report for A/B runs of the same command, not a test. `--planner` times `plan_batch` itself over the same
records in 1,000-event batches, the states it writes kept in a dict (the stage's cache).
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
from worker.core.batch import Record, TtlPolicy, plan_batch
from worker.core.fold import Accepted, fold
from worker.core.snapshot_json import encoded_snapshot
from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import Stored
from worker.runtime.collector import tune_gc

NOW_MS = 1_900_000_000_000
"""After every event time of the data set: no event is in the future."""


def run(interactions: int = 20_000) -> dict[str, Any]:
    raws = [json.dumps(event).encode() for event in _time_ordered_events(interactions, seed=7, rate_per_s=RATE_PER_S)]
    tune_gc()
    clock = time.process_time
    started = clock()
    decoded = [decode_event_fast(raw) for raw in raws]  # the fold stage's decoder
    spent = {"decode": clock() - started, "fold": 0.0, "state_bytes": 0.0, "snapshot_json": 0.0}
    states: dict[str, InteractionLog | Tombstone] = {}
    for event in decoded:
        if isinstance(event, Rejection):
            continue
        started = clock()
        result = fold(states.get(event.subject), event, edit_window_s=120.0)
        folded = clock()
        spent["fold"] += folded - started
        log = result.log
        if not isinstance(result.outcome, Accepted) or not isinstance(log, InteractionLog):
            continue
        states[event.subject] = log
        log.to_bytes()
        encoded = clock()
        encoded_snapshot(log, result.outcome.trigger)
        spent["state_bytes"] += encoded - folded
        spent["snapshot_json"] += clock() - encoded
    per_event = {piece: round(seconds / len(raws) * 1e6, 2) for piece, seconds in spent.items()}
    return {"events": len(raws), "cpu_us_per_event": per_event, "sum": round(sum(per_event.values()), 2)}


def run_planner(interactions: int = 20_000, batch_size: int = 1_000) -> dict[str, Any]:
    raws = [json.dumps(event).encode() for event in _time_ordered_events(interactions, seed=7, rate_per_s=RATE_PER_S)]
    records = [Record("events", 0, offset, raw, [], decode_event_fast(raw)) for offset, raw in enumerate(raws)]
    tune_gc()
    ttl = TtlPolicy(retention_ms=86_400_000, open_log_ttl_ms=86_400_000)
    states: dict[str, Stored] = {}
    spent_s = 0.0
    for start in range(0, len(records), batch_size):
        batch = records[start:start + batch_size]
        subjects = {record.item.subject for record in batch if not isinstance(record.item, Rejection)}
        loaded = {subject: states.get(subject, Stored(0, None)) for subject in subjects}
        started = time.process_time()
        plan = plan_batch(batch, loaded, edit_window_s=120.0, applied_ids_kept=256, ttl=ttl, now_ms=NOW_MS)
        spent_s += time.process_time() - started
        states.update((write.interaction_id, Stored(write.state.version, write.state)) for write in plan.writes)
    return {"events": len(raws), "plan_batch_cpu_us_per_event": round(spent_s / len(raws) * 1e6, 2)}


if __name__ == "__main__":
    planner = "--planner" in sys.argv[1:]
    numbers = [int(arg) for arg in sys.argv[1:] if arg.isdigit()]
    size = numbers[0] if numbers else 20_000
    print(json.dumps(run_planner(size) if planner else run(size)))
