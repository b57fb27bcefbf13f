"""After finalization, through the running fold stage: an applied event read again is a duplicate (no dead
letter, the log unchanged); any other event for that interaction is dead-lettered `window_closed`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from tests.support import TopicReader, WorkerProcess, event, header, produce, snapshots_by_id
from worker.core.state import Tombstone
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

CONNECTED = {"media": "voice", "direction": "outbound", "queue": None, "agent_id": "agent-7"}


def test_an_applied_event_sent_again_after_finalization_is_a_duplicate_and_a_new_one_is_window_closed(
    settings: Settings, tmp_path: Path,
) -> None:
    run = settings.model_copy(update={"edit_window_seconds": 1.0, "finalize_grace_seconds": 1.0})
    subject, start = "conv-after-final", datetime.now(UTC) - timedelta(seconds=10)
    history = [event("interaction.connected", subject, 1, start, CONNECTED),
               event("log.updated", subject, 2, start + timedelta(seconds=1), {"notes": "first"}),
               event("interaction.disconnected", subject, 3, start + timedelta(seconds=2))]
    produce(run, run.events_topic, history)
    worker = WorkerProcess("fold", run, tmp_path / "worker.log")
    upserts = TopicReader(run, run.upserts_topic)
    dlq = TopicReader(run, run.events_dlq_topic)
    try:
        messages = upserts.read_until(
            lambda m: any(s["finalized"] for s in snapshots_by_id(m).get(subject, [])), timeout_s=60)
        assert 4 == max(s["version"] for s in snapshots_by_id(messages)[subject]), worker.log_text()[-3000:]
        late = event("log.updated", subject, 4, start + timedelta(seconds=2), {"notes": "after the close"})
        produce(run, run.events_topic, [history[1], late])
        letters = dlq.read_until(lambda m: len(m) >= 1, timeout_s=30)
        dlq.read_until(lambda _m: False, timeout_s=3)  # the duplicate would have arrived by now
        assert [("window_closed", f"{subject}-4")] == [(header(m, "reason"), header(m, "event_id")) for m in letters]
        store = bootstrap.log_store(run)
        try:
            state = store.load([subject])[subject].state
        finally:
            store.close()
        assert isinstance(state, Tombstone) and state.version == 4
    finally:
        upserts.close()
        dlq.close()
        assert worker.stop() == 0, worker.log_text()[-3000:]
