"""Decode + validate + fold throughput on one core, for the mix of tests/data/sample-events.jsonl.

The mix replicates the sample histories under new interaction and event ids (malformed,
unknown-type and late lines included, as they are in the sample). Run:
`python -m tests.bench.fold_bench [EVENTS]`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from schemas.decode import decode_event
from schemas.events import Rejection
from schemas.log import InteractionLog, Tombstone
from worker.fold import fold

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


def run(events: int = 200_000) -> dict[str, Any]:
    mix = build_mix(events)
    logs: dict[str, InteractionLog | Tombstone] = {}
    started_s = time.perf_counter()
    for raw in mix:
        decoded = decode_event(raw)
        if isinstance(decoded, Rejection):
            continue
        result = fold(logs.get(decoded.subject), decoded, edit_window_s=EDIT_WINDOW_S)
        if result.log is not None:
            logs[decoded.subject] = result.log
    elapsed_s = time.perf_counter() - started_s
    return {
        "name": "fold_pure",
        "events": len(mix),
        "seconds": round(elapsed_s, 3),
        "events_per_s": round(len(mix) / elapsed_s),
        "target_events_per_s": TARGET_EVENTS_PER_S,
    }


if __name__ == "__main__":
    print(json.dumps(run(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)))
