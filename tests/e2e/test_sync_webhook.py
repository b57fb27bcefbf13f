"""`ilog worker all` against real Kafka and Redis and the webhook receiver."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import connected, event, sync_settings, tasks_by_call, wait_assigned, wait_for
from tests.emulators.standard_webhooks import reference_verify
from tests.emulators.webhook import receiver_id
from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings


def _deliveries(emulators: Emulators, interaction_id: str) -> list[dict[str, Any]]:
    return [d for d in emulators.webhook.state()["deliveries"] if d["interaction_id"] == interaction_id]


def _delivered_at_least(emulators: Emulators, calls: list[str], count: int) -> bool:
    return all(len(_deliveries(emulators, call)) >= count for call in calls)


def test_signed_payloads_arrive_in_version_order_and_the_receiver_id_comes_back(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("webhook",))
    calls = ["conv-hook-1", "conv-hook-2"]
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        # Each step is timed when it is sent: the disconnect's window (3 s + 1 s grace) then closes seconds
        # after it, so its delivery goes out on its own. Timed in the past, the window closed at once and
        # the disconnect could merge into the final snapshot in the webhook's queue (one delivery, not two).
        steps = [
            ("interaction.connected", connected()),
            ("interaction.held", {}),
            ("interaction.resumed", {}),
            ("interaction.disconnected", {}),
        ]
        for n, (kind, data) in enumerate(steps, start=1):
            sent_at = datetime.now(UTC)
            produce(run, run.events_topic, [event(kind, call, n, sent_at, data) for call in calls])
            assert wait_for(partial(_delivered_at_least, fresh_emulators, calls, n), 20), \
                worker.log_text()[-3000:]
        assert wait_for(
            lambda: all(_deliveries(fresh_emulators, c)[-1]["body"]["event"] == "interactionRemoved" for c in calls), 30
        )
        for call in calls:
            delivered = _deliveries(fresh_emulators, call)
            assert [True] * 5 == [d["signature_valid"] for d in delivered]
            for d in delivered:  # as the Standard Webhooks reference package, given the same secret string
                reference_verify(fresh_emulators.env["ILOG_WEBHOOK_SECRET"], d["raw_body"].encode(), d["headers"],
                                 now_s=d["received_at"])
            assert [1, 2, 3, 4, 5] == [d["body"]["log"]["version"] for d in delivered]
            assert ["interactionChanged", "interactionChanged", "interactionChanged", "interactionDisconnected",
                    "interactionRemoved"] == [d["body"]["event"] for d in delivered]
            assert [None] + [receiver_id(call)] * 4 == [d["body"]["id"] for d in delivered]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_paused_target_holds_back_only_itself_and_catches_up_with_the_newest_version(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("salesforce", "webhook"))
    call = "conv-hook-slow"
    fresh_emulators.webhook.inject("429", count=1, retry_after=30)
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        start = datetime.now(UTC) - timedelta(seconds=60)
        steps = [("interaction.connected", connected()), ("interaction.held", {}), ("interaction.resumed", {}),
                 ("interaction.disconnected", {})]
        for n, (kind, data) in enumerate(steps, start=1):
            produce(run, run.events_topic, [event(kind, call, n, start + timedelta(seconds=5 * n), data)])
        assert wait_for(lambda: [t["Status"] for t in tasks_by_call(fresh_emulators).get(call, [])] == ["Completed"],
                        25), worker.log_text()[-3000:]
        assert [] == _deliveries(fresh_emulators, call)  # the webhook still waits out its Retry-After
        assert wait_for(lambda: any(d["body"]["event"] == "interactionRemoved"
                                    for d in _deliveries(fresh_emulators, call)), 60), worker.log_text()[-3000:]
        versions = [d["body"]["log"]["version"] for d in _deliveries(fresh_emulators, call)]
        assert versions == sorted(set(versions)) and 5 == versions[-1]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_full_target_queue_pauses_consuming_and_nothing_is_lost_after_it_resumes(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("salesforce", "webhook"), sync_max_queued=4)
    calls = [f"conv-hook-full-{n}" for n in range(12)]
    fresh_emulators.webhook.inject("429", count=1, retry_after=3)
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        start = datetime.now(UTC) - timedelta(seconds=60)
        produce(run, run.events_topic, [event(kind, call, n, start + timedelta(seconds=5 * n), data)
                                        for call in calls
                                        for n, (kind, data) in enumerate(
                                            [("interaction.connected", connected()),
                                             ("interaction.disconnected", {})], start=1)])
        assert wait_for(lambda: all(any(d["body"]["event"] == "interactionRemoved"
                                        for d in _deliveries(fresh_emulators, c)) for c in calls), 90), \
            worker.log_text()[-3000:]
        def statuses() -> dict[str, list[str]]:
            return {c: [t["Status"] for t in tasks] for c, tasks in tasks_by_call(fresh_emulators).items()}

        # Salesforce lets a finalized log wait up to 1 s for others (FINAL_LINGER_S): not done with the webhook
        wait_for(lambda: statuses() == {c: ["Completed"] for c in calls}, 10)
        assert {c: ["Completed"] for c in calls} == statuses()
        assert "consuming paused" in worker.log_text()
        assert wait_for(lambda: "consuming resumed" in worker.log_text(), 10)  # at the loop's next turn
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_short_call_produced_at_once_is_announced_as_disconnected_before_it_is_removed(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    """The whole call arrives in one go (as a platform flushing its buffer sends it): the fold may fold
    connect to disconnect into one snapshot, and the receiver still hears of the disconnect by its name."""
    run = sync_settings(settings, fresh_emulators, ("webhook",), edit_window_seconds=6.0)
    calls = [f"conv-hook-burst-{n}" for n in range(3)]
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        start = datetime.now(UTC) - timedelta(seconds=3)
        steps = [("interaction.connected", connected()), ("interaction.held", {}), ("interaction.resumed", {}),
                 ("interaction.disconnected", {"reason": "customer"})]
        produce(run, run.events_topic, [event(kind, call, n, start + timedelta(milliseconds=500 * n), data)
                                        for call in calls for n, (kind, data) in enumerate(steps, start=1)])
        assert wait_for(lambda: all(any(d["body"]["event"] == "interactionRemoved"
                                        for d in _deliveries(fresh_emulators, c)) for c in calls), 40), \
            worker.log_text()[-3000:]
        for call in calls:
            names = [(d["body"]["log"]["state"], d["body"]["log"]["finalized"], d["body"]["event"])
                     for d in _deliveries(fresh_emulators, call)]
            # nothing was edited after the disconnect: the first delivery past it names the disconnect
            after_disconnect = [name for state, final, name in names if state == "disconnected" and not final]
            assert ["interactionDisconnected"] == after_disconnect, names
            assert "interactionRemoved" == names[-1][2]
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_the_receiver_id_of_a_first_delivery_whose_answer_was_lost_still_comes_back_on_later_deliveries(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    """The receiver created its record on the first delivery and answered its id, but the answer was lost;
    the call changed before the retry. The id is still learnt and sent back on every later delivery."""
    run = sync_settings(settings, fresh_emulators, ("webhook",), edit_window_seconds=4.0)
    call = "conv-hook-lost-answer"
    fresh_emulators.webhook.inject("drop_after_apply", count=1)
    fresh_emulators.webhook.inject("503", count=3)  # the retries fail a while: the hold arrives meanwhile
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        wait_assigned(worker, 2)
        produce(run, run.events_topic, [event("interaction.connected", call, 1, datetime.now(UTC), connected())])
        assert wait_for(lambda: any(r["fault"] == "drop_after_apply" for r in fresh_emulators.webhook.requests()), 20,
                        interval_s=0.02), worker.log_text()[-3000:]
        produce(run, run.events_topic, [event("interaction.held", call, 2, datetime.now(UTC))])
        time.sleep(1.0)
        produce(run, run.events_topic, [event("interaction.disconnected", call, 3, datetime.now(UTC))])
        assert wait_for(lambda: any(d["body"]["event"] == "interactionRemoved" and d["status"] == 200
                                    for d in _deliveries(fresh_emulators, call)), 40), worker.log_text()[-3000:]
        delivered = [d for d in _deliveries(fresh_emulators, call) if d["status"] == 200]
        first, *later = [d for d in delivered if not d["duplicate"]]
        assert (1, None) == (first["body"]["log"]["version"], first["body"]["id"])
        # every delivery after the one that created the receiver's record carries its id
        assert [receiver_id(call)] * len(later) == [d["body"]["id"] for d in later], \
            [(d["body"]["log"]["version"], d["body"]["id"], d["duplicate"]) for d in delivered]
        assert later and later[-1]["body"]["event"] == "interactionRemoved"
        # what went again is the first delivery as it was (the receiver answers it as the first time)
        assert all(d["raw_body"] == first["raw_body"] for d in delivered if d["duplicate"])
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]
