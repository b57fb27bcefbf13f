"""Calls synced through a Redis Cluster fault: the fold and sync stages as processes against the 6-node
cluster of the tests and the CRM emulators, half the calls produced (and some synced) before the fault,
the other half after it; then every log must end as `ilog fold` of the same events, each call must have
exactly one Task and one Zendesk comment, and neither worker may have exited."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from adapters.zendesk_render import marker
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    CONTACT_ID,
    FAST_GROUP,
    connected,
    event,
    seed_ticket,
    sf_ref,
    sync_settings,
    tasks_by_call,
    ticket,
    wait_for,
    worker_comments,
    zd_ticket,
)
from tests.fault.test_fold_faults import _all_finalized, _assert_final_logs
from tests.support import WorkerProcess, offline_fold, produce
from worker.runtime.settings import Settings


def history(call: str, n: int, t0: datetime, ticket_id: int) -> list[dict[str, Any]]:
    at = t0 + timedelta(seconds=n)
    return [
        event("interaction.connected", call, 1, at,
              connected(name=sf_ref("Contact", CONTACT_ID), related_to=zd_ticket(ticket_id))),
        event("interaction.held", call, 2, at + timedelta(seconds=10)),
        event("interaction.resumed", call, 3, at + timedelta(seconds=20)),
        event("log.updated", call, 4, at + timedelta(seconds=25), {"notes": f"Notes of {call}."}),
        event("interaction.disconnected", call, 5, at + timedelta(seconds=40)),
        event("interaction.wrapup", call, 6, at + timedelta(seconds=41), {"code": "Resolved"}),
    ]


@dataclass
class ClusterCalls:
    settings: Settings
    tickets: dict[str, int]  # call → its Zendesk ticket
    events: list[dict[str, Any]]
    emulators: Emulators
    fold: WorkerProcess
    sync: WorkerProcess

    @property
    def calls(self) -> list[str]:
        return list(self.tickets)

    def produce_rest(self) -> None:
        """The second half of the events."""
        produce(self.settings, self.settings.events_topic, self.events[len(self.events) // 2:])

    def assert_whole(self, tmp_path: Path, *, finalized_timeout_s: float, crm_timeout_s: float) -> None:
        offline = offline_fold(self.events, tmp_path, self.settings)
        _assert_final_logs(_all_finalized(self.settings, offline, timeout_s=finalized_timeout_s), offline)
        calls, emulators = self.calls, self.emulators
        assert wait_for(lambda: all(worker_comments(ticket(emulators, self.tickets[c])) for c in calls),
                        crm_timeout_s)
        found = tasks_by_call(emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        assert {c: "Completed" for c in calls} == {c: found[c][0]["Status"] for c in calls}
        comments = {c: worker_comments(ticket(emulators, self.tickets[c])) for c in calls}
        assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
        assert all(comments[c][0].endswith(marker(c, 7)) for c in calls)  # six events, then finalized
        assert (None, None) == (self.fold.proc.poll(), self.sync.proc.poll()), (
            self.fold.log_text()[-3000:], self.sync.log_text()[-3000:])


@contextmanager
def half_synced(settings: Settings, redis_cluster_env: dict[str, str], emulators: Emulators, tmp_path: Path,
                name: str, count: int) -> Iterator[ClusterCalls]:
    """The stages running on the cluster with the first half of `count` calls' events produced and at least five
    Tasks created; both stages stopped (and asserted to stop cleanly) at the end."""
    on_cluster = settings.model_copy(update={"redis_url": redis_cluster_env["ILOG_REDIS_URL"], "redis_cluster": "true"})
    run = sync_settings(on_cluster, emulators, ("salesforce", "zendesk"))
    tickets = {call: seed_ticket(emulators, f"Order {call}") for call in (f"conv-{name}-{n:02d}" for n in range(count))}
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    events = [e for n, c in enumerate(tickets) for e in history(c, n, t0, tickets[c])]
    fold = WorkerProcess("fold", run, tmp_path / "fold.log", **FAST_GROUP)
    sync = WorkerProcess("sync", run, tmp_path / "sync.log", **FAST_GROUP)
    try:
        produce(run, run.events_topic, events[: len(events) // 2])
        assert wait_for(lambda: len(tasks_by_call(emulators)) >= 5, 60), sync.log_text()[-3000:]
        yield ClusterCalls(run, tickets, events, emulators, fold, sync)
    finally:
        assert sync.stop() == 0, sync.log_text()[-3000:]
        assert fold.stop() == 0, fold.log_text()[-3000:]
