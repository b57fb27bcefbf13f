"""The webhook target under a receiver's error storm: every log ends final, each delivery processed once,
the receiver's id sent back after the delivery that created its record."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import connected, event, sync_settings, wait_assigned, wait_for
from tests.e2e.test_lookup_replay_e2e import webhook_ids_processed_twice
from tests.emulators.webhook import receiver_id
from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings

emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators

CALLS = 8
STEPS = [("interaction.connected", connected()), ("interaction.held", {}), ("interaction.resumed", {}),
         ("log.updated", {"notes": "Asked for a refund."}), ("interaction.disconnected", {}),
         ("interaction.wrapup", {"code": "Resolved"})]


def _accepted(emulators: Emulators, call: str) -> list[dict[str, Any]]:
    return [d for d in emulators.webhook.state()["deliveries"] if d["interaction_id"] == call and d["status"] == 200]


def _removed(emulators: Emulators, calls: list[str]) -> bool:
    return all(any(d["body"]["event"] == "interactionRemoved" for d in _accepted(emulators, c)) for c in calls)


def test_a_receiver_storm_of_lost_answers_and_refusals_leaves_every_log_final_and_every_id_sent_back(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("webhook",), edit_window_seconds=4.0,
                        webhook_timeout_seconds=1.0)
    calls = [f"conv-hook-storm-{n}" for n in range(CALLS)]
    receiver = fresh_emulators.webhook
    receiver.inject("drop_after_apply", count=3)
    receiver.inject("timeout", count=2, delay_s=2.0)
    receiver.inject("503", count=3)
    receiver.inject("429", count=2, retry_after=1)
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        for n, (kind, data) in enumerate(STEPS, start=1):  # one step of every call at a time, as calls go on
            produce(run, run.events_topic, [event(kind, call, n, datetime.now(UTC), data) for call in calls])
            time.sleep(0.7)
        assert wait_for(lambda: _removed(fresh_emulators, calls), 60), worker.log_text()[-3000:]
        time.sleep(1.0)
        assert {"drop_after_apply", "timeout", "503", "429"} <= {r["fault"] for r in receiver.requests()}
        assert [] == webhook_ids_processed_twice(fresh_emulators)
        for call in calls:
            processed = [d for d in _accepted(fresh_emulators, call) if not d["duplicate"]]
            versions = [d["body"]["log"]["version"] for d in processed]
            assert versions == sorted(versions), versions  # versions decide: never an older one after a newer
            last = processed[-1]["body"]
            assert ("interactionRemoved", len(STEPS) + 1, True) == (last["event"], last["log"]["version"],
                                                                   last["log"]["finalized"])
            # the first processed delivery created the receiver's record; every later one names it
            assert [None] + [receiver_id(call)] * (len(processed) - 1) == [d["body"]["id"] for d in processed], \
                [(d["body"]["log"]["version"], d["body"]["id"]) for d in processed]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
