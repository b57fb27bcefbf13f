"""Decode + validate + fold + snapshot encode throughput on one core, for the mix of tests/data/sample-events.jsonl.

The mix replicates the sample histories under new interaction and event ids (malformed,
unknown-type and late lines included, as they are in the sample). Run:
`python -m tests.bench.fold_bench [EVENTS]` (or `make bench`).

Two collector settings, passes alternating: the worker's (`worker.runtime.collector.tune_gc()`, which `ilog
worker` calls after start-up) and Python's default. The wall-clock rate with the worker's settings
is the figure compared with the target; the default-collector rate and the CPU-time rates are
reported, not judged (the machine is shared). Each accepted event's snapshot is encoded (`snapshot_json`,
what the stage produces to the upserts topic). The judged passes run the compiled core when it is installed
and in use (`worker.core.native`); passes with the Python alone (`native.python_only()`) alternate with them
and are reported beside, so one run shows what the compiled core gives. So are passes over the fold stage's own path
where the compiled core folds documents (`documents_events_per_s`): each log held as its stored document between
events (`fold_document`), each snapshot read off the new document (`snapshot_from_state`), what the compiled fold
leaves (the late lines among them) folded on the log's objects.
"""

from __future__ import annotations

import gc
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from schemas.events import Rejection
from schemas.fast import decode_event_fast
from worker.core import native
from worker.core.fold import Accepted, document_fold, fold
from worker.core.snapshot_json import snapshot_json
from worker.core.state import TRIGGERS, InteractionLog, Tombstone
from worker.runtime.collector import tune_gc

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample-events.jsonl"
TARGET_EVENTS_PER_S = 100_000
EDIT_WINDOW_S = 120.0


def build_mix(events: int) -> list[bytes]:
    """`events` raw messages: the sample replicated with fresh subjects and ids, in file order."""
    lines = [line for line in SAMPLE.read_bytes().split(b"\n") if line.strip()]
    mix: list[bytes] = []
    copy = 0
    while len(mix) < events:
        for line in lines:
            mix.append(_renamed(line, copy))
        copy += 1
    return mix[:events]


def _renamed(line: bytes, copy: int) -> bytes:
    try:
        document: Any = json.loads(line)
    except ValueError:
        return line
    document["subject"] = f"{document.get('subject')}-{copy}"
    document["id"] = f"{document.get('id')}-{copy}"
    return json.dumps(document).encode()


def run(events: int = 200_000, rounds: int = 3) -> dict[str, Any]:
    """Best of `rounds` passes per setting; each pass starts from no state."""
    mix = build_mix(events)
    worker_gc: list[tuple[float, float]] = []
    default_gc: list[tuple[float, float]] = []
    python_only: list[tuple[float, float]] = []
    documents: list[tuple[float, float]] = []
    for _ in range(rounds):
        default_gc.append(_one_pass(mix))
        with worker_collector():
            worker_gc.append(_one_pass(mix))
            if document_fold() is not None:
                documents.append(_one_pass_documents(mix))
            with native.python_only():
                python_only.append(_one_pass(mix))
    wall_s, cpu_s = min(worker_gc)
    default_wall_s, default_cpu_s = min(default_gc)
    python_wall_s, python_cpu_s = min(python_only)
    by_documents = {"documents_events_per_s": round(len(mix) / min(documents)[0]),
                    "documents_cpu_events_per_s": round(len(mix) / min(documents)[1])} if documents else {}
    rate = len(mix) / wall_s
    return {
        "name": "fold_pure",
        "parameters": {"events": len(mix), "rounds": rounds, "mix": SAMPLE.name, "edit_window_s": EDIT_WINDOW_S,
                       "judged": "events_per_s: wall clock, the worker's collector settings "
                                 "(worker.runtime.collector.tune_gc: gc.set_threshold(50_000, 20, 20), "
                                 "survivors frozen after each collection), "
                                 "decode + validate + fold + snapshot JSON of each accepted event",
                       "core": "python" if native.CORE is None else f"compiled {native.CORE.__version__}",
                       "gc_thresholds_default": list(gc.get_threshold())},
        "measured": {"events_per_s": round(rate), "cpu_events_per_s": round(len(mix) / cpu_s),
                     "seconds": round(wall_s, 3), "us_per_event": round(wall_s / len(mix) * 1e6, 2),
                     "default_gc_events_per_s": round(len(mix) / default_wall_s),
                     "default_gc_cpu_events_per_s": round(len(mix) / default_cpu_s),
                     "python_only_events_per_s": round(len(mix) / python_wall_s),
                     "python_only_cpu_events_per_s": round(len(mix) / python_cpu_s), **by_documents},
        "target": {"events_per_s": TARGET_EVENTS_PER_S},
        "meets_target": rate >= TARGET_EVENTS_PER_S,
    }


@contextmanager
def worker_collector() -> Iterator[None]:
    """The collector as `ilog worker` sets it, restored to the previous settings afterwards."""
    thresholds = gc.get_threshold()
    collector = tune_gc()
    try:
        yield
    finally:
        collector.uninstall()
        gc.set_threshold(*thresholds)


def _one_pass(mix: list[bytes]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) to decode, validate and fold the whole mix."""
    logs: dict[str, InteractionLog | Tombstone] = {}
    gc.collect()
    started_s, started_cpu_s = time.perf_counter(), time.process_time()
    for raw in mix:
        decoded = decode_event_fast(raw)  # the fold stage's decoder
        if isinstance(decoded, Rejection):
            continue
        result = fold(logs.get(decoded.subject), decoded, edit_window_s=EDIT_WINDOW_S)
        log = result.log
        if log is not None:
            logs[decoded.subject] = log
        outcome = result.outcome
        if isinstance(outcome, Accepted) and isinstance(log, InteractionLog):
            snapshot_json(log, outcome.trigger)
    return time.perf_counter() - started_s, time.process_time() - started_cpu_s


def _one_pass_documents(mix: list[bytes]) -> tuple[float, float]:
    """`_one_pass` on the fold stage's path with the compiled fold over documents (`worker.core.batch._plan`)."""
    fold_document, core = document_fold(), native.CORE
    assert fold_document is not None and core is not None
    states: dict[str, bytes | InteractionLog | Tombstone] = {}
    gc.collect()
    started_s, started_cpu_s = time.perf_counter(), time.process_time()
    for raw in mix:
        decoded = decode_event_fast(raw)
        if isinstance(decoded, Rejection):
            continue
        state = states.get(decoded.subject)
        folded = fold_document(state, decoded, EDIT_WINDOW_S, 256) if state is None or isinstance(state, bytes) \
            else None
        if folded is True or (folded is not None and folded[0] is None):  # a duplicate, or `late_edit`
            continue
        if folded is not None:
            document, _version, trigger, _deadline_us = folded
            assert document is not None and isinstance(trigger, str)
            states[decoded.subject] = document
            core.snapshot_from_state(document, TRIGGERS[trigger])
            continue
        result = fold(InteractionLog.from_bytes(state) if isinstance(state, bytes) else state, decoded,
                      edit_window_s=EDIT_WINDOW_S)
        log, outcome = result.log, result.outcome
        if isinstance(log, InteractionLog) and isinstance(outcome, Accepted):
            states[decoded.subject] = log.to_bytes()
            snapshot_json(log, outcome.trigger)
        elif log is not None:
            states[decoded.subject] = log.to_bytes() if isinstance(log, InteractionLog) else log
    return time.perf_counter() - started_s, time.process_time() - started_cpu_s


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
