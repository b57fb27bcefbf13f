"""CPU per upsert of the sync stage's consumer loop, without Kafka, Redis or HTTP.

    python -m tests.bench.sync_loop [INTERACTIONS]     # default 3,000 (~31,700 upserts)

The upserts the fold gives for the `sync_latency` histories (merged by event time, one snapshot per accepted
event, as a live fold stage emits them at 500 interactions/s), as consumed messages with the fold's headers,
through `SyncStage.dispatch` in 200-message batches for the three targets (their real trigger filters); every
fifth batch each target takes and finishes everything waiting, as targets keeping up do. Timed: building the
records (`sync_record`: decode, trace header) and `dispatch` (coalesce, queue, offsets). Seven rounds over a
fresh stage; prints the fastest and the median µs per upsert (process CPU). A report for A/B runs of the same
command, not a test.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from datetime import UTC, datetime
from typing import Any

from adapters.base import TargetTraits
from adapters.salesforce import SalesforceTarget
from adapters.zendesk import ZendeskTarget
from schemas.decode import decode_event
from schemas.events import Rejection
from schemas.snapshot import LogSnapshot
from tests.bench.sync_bench import time_ordered
from worker.core.fold import Accepted, fold
from worker.core.snapshot_json import snapshot_json
from worker.core.state import InteractionLog, Tombstone
from worker.runtime.collector import tune_gc
from worker.runtime.settings import Settings
from worker.sync import stage as sync
from worker.sync.batch import SyncRecord

BATCH = 200
TAKE_EVERY = 5
ROUNDS = 7


class _Message:
    """What `sync_record` reads of a consumed upsert."""

    __slots__ = ("_headers", "_key", "_offset", "_value")

    def __init__(self, key: str, value: bytes, headers: list[tuple[str, bytes]], offset: int) -> None:
        self._key, self._value, self._headers, self._offset = key, value, headers, offset

    def value(self) -> bytes:
        return self._value

    def headers(self) -> list[tuple[str, bytes]]:
        return self._headers

    def topic(self) -> str:
        return "interaction-log-upserts"

    def partition(self) -> int:
        return sum(self._key.encode()) % 6

    def offset(self) -> int:
        return self._offset

    def timestamp(self) -> tuple[int, int]:
        return 1, 1_764_000_000_000


class _Target:
    """A target's name, traits and trigger filter; never called."""

    def __init__(self, name: str, wants: Any) -> None:
        self.name = name
        self.traits = TargetTraits()
        self._wants = wants

    def wants(self, snapshot: LogSnapshot) -> bool:
        return bool(self._wants(snapshot))


def upserts(interactions: int) -> list[_Message]:
    """One message per accepted event: the snapshot JSON the fold produces, with its trigger and version headers."""
    states: dict[str, InteractionLog | Tombstone | None] = {}
    messages: list[_Message] = []
    start = datetime(2026, 12, 3, tzinfo=UTC)
    for event in time_ordered(interactions, seed=43, start=start, rate_per_s=500.0):
        decoded = decode_event(json.dumps(event).encode(), [])
        if isinstance(decoded, Rejection) or decoded.subject is None:
            continue  # the generator makes no rejections
        subject = decoded.subject
        result = fold(states.get(subject), decoded, edit_window_s=120.0)
        if isinstance(result.outcome, Accepted) and isinstance(result.log, InteractionLog):
            states[subject] = result.log
            trigger = result.outcome.trigger
            headers = [("trigger", trigger.value.encode()), ("version", b"%d" % result.log.version)]
            messages.append(_Message(subject, snapshot_json(result.log, trigger), headers, len(messages)))
    return messages


def run(interactions: int = 3_000) -> dict[str, Any]:
    messages = upserts(interactions)
    targets = [_Target("salesforce", lambda s: SalesforceTarget.wants(None, s)),  # type: ignore[arg-type]
               _Target("zendesk", lambda s: ZendeskTarget.wants(None, s)),  # type: ignore[arg-type]
               _Target("webhook", lambda s: True)]
    settings = Settings(_env_file=None)
    tune_gc()
    rounds: list[float] = []
    for _ in range(ROUNDS):
        stage = sync.SyncStage(settings, targets, None, None, None, None)  # type: ignore[arg-type]
        timed_s = 0.0
        for number, start in enumerate(range(0, len(messages), BATCH)):
            began_s = time.process_time()
            records: list[SyncRecord] = [sync.sync_record(m) for m in messages[start:start + BATCH]]  # type: ignore[arg-type]
            stage.dispatch(records)
            timed_s += time.process_time() - began_s
            if number % TAKE_EVERY == 0:
                for runner in stage.runners:
                    for work in runner.queue.take(len(messages)):
                        stage.ledger.done(runner.queue.finish(work, done=True))
                stage.ledger.storable()
        rounds.append(timed_s / len(messages) * 1e6)
    return {"name": "sync_loop", "parameters": {"interactions": interactions, "upserts": len(messages),
                                                "batch": BATCH, "rounds": ROUNDS},
            "measured": {"us_per_upsert_min": round(min(rounds), 2),
                         "us_per_upsert_median": round(statistics.median(rounds), 2)}}


def main(argv: list[str]) -> int:
    print(json.dumps(run(int(argv[0]) if argv else 3_000)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
