"""The sync stage under CRM error storms and SIGKILLs: no duplicates, nothing lost, only bad records dead-lettered."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import redis
from confluent_kafka import Message

from adapters.zendesk_render import marker
from tests.e2e import conftest as e2e_fixtures
from tests.e2e.conftest import Emulators
from tests.e2e.sync_env import (
    CASE_ID,
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
from tests.support import TopicReader, WorkerProcess, header, produce
from worker.runtime.settings import Settings
from worker.store.sync_state import RedisSyncStateStore

CALLS = 30
# The CRM emulators fixtures live with the e2e tier; this tier uses the same ones.
emulators = e2e_fixtures.emulators
fresh_emulators = e2e_fixtures.fresh_emulators


def _history(call: str, n: int, t0: datetime, ticket_id: int) -> list[dict[str, Any]]:
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


def _arm_storm(emus: Emulators) -> None:
    salesforce, zendesk = emus.salesforce, emus.zendesk
    salesforce.inject("429", count=3, retry_after=1, path="composite/sobjects")
    salesforce.inject("503", count=2, path="composite/sobjects")
    salesforce.inject("invalid_session", count=1, path="composite/sobjects")
    salesforce.inject("request_limit", count=1, path="composite/sobjects")
    salesforce.inject("drop_after_apply", count=1, method="POST", path="composite/sobjects")
    zendesk.inject("429", count=2, retry_after=1, method="PUT")
    zendesk.inject("503", count=2, method="PUT")
    zendesk.inject("drop_after_apply", count=1, method="PUT")


def _dead_letters(settings: Settings, wait_s: float) -> list[Message]:
    reader = TopicReader(settings, settings.upserts_dlq_topic)
    try:
        return reader.read_until(lambda _m: False, timeout_s=wait_s)
    finally:
        reader.close()


def _all_final(emus: Emulators, calls: list[str], tickets: dict[str, int]) -> bool:
    found = tasks_by_call(emus)
    if not all(any(t["Status"] == "Completed" for t in found.get(c, [])) for c in calls):
        return False
    tickets_now = {t["id"]: t for t in emus.zendesk.state()["tickets"]}
    return all(worker_comments(tickets_now[tickets[c]]) for c in calls)


def _stormy_stream(
    settings: Settings, emulators: Emulators, name: str
) -> tuple[Settings, list[str], dict[str, int]]:
    """Salesforce and Zendesk on, a ticket per call, the error storm armed, every history produced."""
    run = sync_settings(settings, emulators, ("salesforce", "zendesk"), zendesk_job_timeout_seconds=4.0)
    calls = [f"conv-{name}-{n:02d}" for n in range(CALLS)]
    tickets = {call: seed_ticket(emulators, f"Order {call}") for call in calls}
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    _arm_storm(emulators)
    produce(run, run.events_topic, [e for n, c in enumerate(calls) for e in _history(c, n, t0, tickets[c])])
    return run, calls, tickets


def _retried_or_synced(sync: WorkerProcess) -> bool:
    text = sync.log_text()
    return '"sync retry"' in text or '"synced"' in text


@pytest.mark.parametrize("epoch_age_s", [None, 3_600.0], ids=["new-sync-epoch", "hour-old-sync-epoch"])
def test_error_storms_and_three_sigkills_leave_one_task_and_one_comment_per_interaction(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path, redis_client: redis.Redis,
    epoch_age_s: float | None,
) -> None:
    """With a new sync epoch every first sync looks up; with an hour-old one every first sync is
    trusted to create without looking, and only the in-flight marks (stored before each call) make
    the syncs after a SIGKILL or a dropped answer look first."""
    run, calls, tickets = _stormy_stream(settings, fresh_emulators, "storm")
    if epoch_age_s is not None:
        start_ms = int((time.time() - epoch_age_s) * 1000)
        assert start_ms == RedisSyncStateStore(redis_client, run.key_prefix, 60).start_epoch(start_ms)
    fold = WorkerProcess("fold", run, tmp_path / "fold.log")
    instance = {"ILOG_GROUP_INSTANCE_ID": "sync-crash-test", **FAST_GROUP}
    rng = random.Random(5)
    sync = WorkerProcess("sync", run, tmp_path / "sync-0.log", **instance)
    killed_mid_batch = 0
    try:
        for attempt in range(1, 4):
            assert wait_for(partial(_retried_or_synced, sync), 30), \
                sync.log_text()[-3000:]
            time.sleep(rng.uniform(0.05, 0.5))
            sync.kill()
            killed_mid_batch += not _all_final(fresh_emulators, calls, tickets)
            sync = WorkerProcess("sync", run, tmp_path / f"sync-{attempt}.log", **instance)
        assert wait_for(lambda: _all_final(fresh_emulators, calls, tickets), 45), sync.log_text()[-3000:]
        assert killed_mid_batch >= 2
        time.sleep(1.0)
        found = tasks_by_call(fresh_emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        expected = {c: {"Status": "Completed", "CallDisposition": "Resolved", "WhoId": CONTACT_ID,
                        "CallDurationInSeconds": 40} for c in calls}
        assert expected == {c: {k: found[c][0].get(k) for k in expected[c]} for c in calls}
        assert all(found[c][0]["Description"].startswith(f"Notes of {c}.") for c in calls)
        comments = {c: worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls}
        assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
        assert all(comments[c][0].endswith(marker(c, 7)) for c in calls)
        assert [] == _dead_letters(run, 3.0)
        fired = {e["fault"] for e in fresh_emulators.salesforce.requests() + fresh_emulators.zendesk.requests()}
        assert {"429", "503", "invalid_session", "request_limit", "drop_after_apply"} <= fired
    finally:
        sync.stop()
        fold.stop()


def test_a_record_salesforce_refuses_is_dead_lettered_with_the_error_and_the_others_go_through(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run = sync_settings(settings, fresh_emulators, ("salesforce",))
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    # the org has a validation rule on Subject: Salesforce refuses that one record
    fresh_emulators.salesforce.seed({"config": {"validation_rules": [
        {"field": "Subject", "contains": "[blocked]", "message": "Subject: not allowed in this org"}]}})
    good, bad = ["conv-ok-1", "conv-ok-2"], "conv-refused-by-rule"
    events: list[dict[str, Any]] = []
    for call in [*good, bad]:
        events += [
            event("interaction.connected", call, 1, t0, connected(related_to=sf_ref("Case", CASE_ID))),
            event("log.updated", call, 2, t0 + timedelta(seconds=5), {"notes": "Private note text here."}),
            event("interaction.disconnected", call, 4, t0 + timedelta(seconds=30)),
        ]
    events.append(event("log.updated", bad, 3, t0 + timedelta(seconds=6), {"subject": "Refund [blocked]"}))
    produce(run, run.events_topic, events)
    worker = WorkerProcess("all", run, tmp_path / "worker.log")
    try:
        assert wait_for(
            lambda: all(any(t["Status"] == "Completed" for t in tasks_by_call(fresh_emulators).get(c, []))
                        for c in good), 40,
        ), worker.log_text()[-3000:]
        dead = _dead_letters(run, 5.0)
        assert dead, worker.log_text()[-3000:]
        assert {(bad, "salesforce", "FIELD_CUSTOM_VALIDATION_EXCEPTION", run.upserts_topic)} == {
            (header(m, "interaction_id"), header(m, "target"), header(m, "code"), header(m, "original_topic"))
            for m in dead
        }
        assert all(json.loads(m.value() or b"")["interaction_id"] == bad for m in dead)
        assert not any("Private note" in str(m.headers()) for m in dead)
        assert bad not in tasks_by_call(fresh_emulators)
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_a_replica_leaving_mid_stream_hands_its_partitions_over_without_duplicates_or_losses(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    run, calls, tickets = _stormy_stream(settings, fresh_emulators, "handover")
    fold = WorkerProcess("fold", run, tmp_path / "fold.log")
    staying = WorkerProcess("sync", run, tmp_path / "sync-staying.log", **FAST_GROUP)
    leaving = WorkerProcess("sync", run, tmp_path / "sync-leaving.log", **FAST_GROUP)
    try:
        assert wait_for(lambda: '"sync retry"' in leaving.log_text() or '"synced"' in leaving.log_text(), 30), \
            leaving.log_text()[-3000:]
        assert leaving.stop() == 0, leaving.log_text()[-3000:]  # SIGTERM: revoke, store what is done, leave
        assert wait_for(lambda: _all_final(fresh_emulators, calls, tickets), 60), staying.log_text()[-3000:]
        time.sleep(1.0)
        found = tasks_by_call(fresh_emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        assert {c: "Completed" for c in calls} == {c: found[c][0]["Status"] for c in calls}
        comments = {c: worker_comments(ticket(fresh_emulators, tickets[c])) for c in calls}
        assert {c: 1 for c in calls} == {c: len(comments[c]) for c in calls}
        assert [] == _dead_letters(run, 3.0)
    finally:
        leaving.stop()
        staying.stop()
        fold.stop()


WAVE_CALLS = 450
"""Interactions a wave brings: more than two sObject Collections hold (200 records each), so whether the
created and finalized snapshots arrive apart or together, 200 records wait while the first call is under
way and a call starts beside it (`side_call_items`)."""


def _calls_overlapped(entries: list[dict[str, Any]], since_s: float) -> bool:
    """Two sObject Collection requests answered since `since_s` (wall clock) were under way at once."""
    spans = sorted((e["time"], e["time"] + e["duration_ms"] / 1000) for e in entries
                   if "composite/sobjects" in e["path"] and e["time"] >= since_s)
    return any(later_start < end for (_start, end), (later_start, _end) in pairwise(spans))


def _salesforce_calls_overlapped(emulators: Emulators, since_s: float) -> bool:
    return _calls_overlapped(emulators.salesforce.requests(), since_s)


def _salesforce_wrote_since(emulators: Emulators, since_s: float) -> bool:
    return any("composite/sobjects" in e["path"] and e["time"] >= since_s for e in emulators.salesforce.requests())


def _wave(run: Settings, wave: int) -> list[str]:
    """Produce a wave of calls that connected and hung up two minutes ago: their windows close at once."""
    calls = [f"conv-wave{wave}-{n:03d}" for n in range(WAVE_CALLS)]
    t0 = datetime.now(UTC) - timedelta(minutes=2)
    produce(run, run.events_topic, [
        e for n, call in enumerate(calls) for e in (
            event("interaction.connected", call, 1, t0 + timedelta(milliseconds=50 * n),
                  connected(name=sf_ref("Contact", CONTACT_ID))),
            event("interaction.disconnected", call, 2, t0 + timedelta(milliseconds=50 * n, seconds=5)),
        )])
    return calls


def test_sigkills_while_several_salesforce_calls_are_in_flight_leave_one_task_per_interaction(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path, redis_client: redis.Redis,
) -> None:
    """Four calls in flight (`ILOG_SALESFORCE_CONCURRENT_CALLS`), every Salesforce request a second away,
    new interactions arriving while calls are under way, the sync worker SIGKILLed twice while calls
    overlap. An hour-old sync epoch trusts every first create without a look-up, so only the marks stored
    before each call make the syncs after a kill look first."""
    run = sync_settings(settings, fresh_emulators, ("salesforce",), salesforce_concurrent_calls=4,
                        salesforce_timeout_seconds=10.0)
    start_ms = int((time.time() - 3_600) * 1000)
    assert start_ms == RedisSyncStateStore(redis_client, run.key_prefix, 60).start_epoch(start_ms)
    fresh_emulators.salesforce.inject("latency", delay_s=1.0, for_s=600)
    fold = WorkerProcess("fold", run, tmp_path / "fold.log")
    instance = {"ILOG_GROUP_INSTANCE_ID": "sync-side-by-side", **FAST_GROUP}
    rng = random.Random(11)
    sync = WorkerProcess("sync", run, tmp_path / "sync-0.log", **instance)
    calls: list[str] = []
    try:
        waves = 0
        for attempt in (1, 2):
            since_s = time.time()
            waves += 1
            calls += _wave(run, waves)
            assert wait_for(partial(_salesforce_wrote_since, fresh_emulators, since_s), 60)
            # Another wave arrives while that wave's last call is under way. On a loaded machine it can
            # come too late (the call is answered before its records are folded): then send another.
            for _late in range(6):
                waves += 1
                calls += _wave(run, waves)
                if wait_for(partial(_salesforce_calls_overlapped, fresh_emulators, since_s), 4):
                    break
            assert _salesforce_calls_overlapped(fresh_emulators, since_s), sync.log_text()[-3000:]
            time.sleep(rng.uniform(0.1, 0.8))
            sync.kill()
            sync = WorkerProcess("sync", run, tmp_path / f"sync-{attempt}.log", **instance)

        def all_completed() -> bool:
            found = tasks_by_call(fresh_emulators)
            return all(any(t["Status"] == "Completed" for t in found.get(c, [])) for c in calls)

        assert wait_for(all_completed, 180), sync.log_text()[-3000:]
        time.sleep(1.0)
        found = tasks_by_call(fresh_emulators)
        assert {c: 1 for c in calls} == {c: len(found.get(c, [])) for c in calls}
        assert {(c, "Completed", 5, CONTACT_ID) for c in calls} == {
            (c, found[c][0]["Status"], found[c][0]["CallDurationInSeconds"], found[c][0]["WhoId"]) for c in calls}
        assert [] == _dead_letters(run, 2.0)
    finally:
        sync.stop()
        fold.stop()
