"""Replay and DLQ replay end to end: `ilog worker all` against the CRM emulators, the tools as processes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Emulators
from tests.support import ILOG, REPO, WorkerProcess, produce, settings_env
from worker.dev.demo import seed_zendesk_tickets, wait_settled
from worker.dev.generator import GeneratorMix, generate_stream
from worker.runtime.settings import Settings

WINDOW_S = 5.0


def _settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"edit_window_seconds": WINDOW_S, "finalize_grace_seconds": 1.0})


def _stream(n: int, seed: int) -> list[dict[str, Any]]:
    """Events from ten minutes ago: every window closes as soon as the worker has read them."""
    start = datetime.now(UTC) - timedelta(minutes=10)
    mix = GeneratorMix(duplicate_ratio=0.05, zendesk_ratio=0.3)
    stream = generate_stream(n, seed=seed, start=start, rate_per_s=5.0, edit_window_s=WINDOW_S, mix=mix,
                             time_scale=0.02)
    return [item for item in stream if isinstance(item, dict)]


def _crm_state(emulators: Emulators, ids: set[str]) -> dict[str, Any]:
    tasks = [t for t in emulators.salesforce.state()["tasks"] if t.get("CallObject") in ids]
    tickets = emulators.zendesk.state()["tickets"]
    deliveries = [d for d in emulators.webhook.state()["deliveries"] if d.get("interaction_id") in ids]
    return {"tasks": sorted(tasks, key=lambda t: str(t["Id"])), "tickets": tickets,
            "deliveries": [(d["interaction_id"], d["status"], d["body"]) for d in deliveries]}


def _ilog(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*ILOG, *args], cwd=REPO, env=settings_env(settings), capture_output=True, text=True,
                          timeout=300, check=False)


@pytest.fixture
def synced_run(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> Iterator[tuple[Settings, WorkerProcess, set[str]]]:
    """40 interactions folded, finalized and synced by a running `ilog worker all`."""
    run = _settings(settings)
    stream = _stream(40, seed=41)
    seed_zendesk_tickets(fresh_emulators.zendesk.base_url, list(stream))
    produce(run, run.events_topic, stream)
    worker = WorkerProcess("all", run, tmp_path / "worker.log", **fresh_emulators.env)
    ids = {e["subject"] for e in stream}
    try:
        assert wait_settled(run, sorted(ids), timeout_s=120), worker.log_text()[-3000:]
        yield run, worker, ids
    finally:
        assert worker.stop() == 0, worker.log_text()[-3000:]


def test_replaying_the_topic_twice_from_its_first_timestamp_leaves_the_crm_state_unchanged(
    synced_run: tuple[Settings, WorkerProcess, set[str]], fresh_emulators: Emulators,
) -> None:
    run, worker, ids = synced_run
    before = _crm_state(fresh_emulators, ids)
    assert len(ids) == len(before["tasks"])
    assert all(t["Status"] == "Completed" for t in before["tasks"])

    for attempt in (1, 2):
        result = _ilog(run, "replay", "--from", "earliest", "--group", "e2e-backfill")
        assert 0 == result.returncode, result.stderr[-3000:]
        assert 0 == json.loads(result.stdout.strip().splitlines()[-1])["remaining_lag"]
        assert wait_settled(run, sorted(ids), timeout_s=120), worker.log_text()[-3000:]
        assert before == _crm_state(fresh_emulators, ids), f"replay {attempt} changed the CRM state"


def test_dlq_replay_after_fixing_the_webhook_secret_delivers_what_the_receiver_had_refused(
    settings: Settings, fresh_emulators: Emulators, tmp_path: Path
) -> None:
    """A deployment ran with a wrong ILOG_WEBHOOK_SECRET: the receiver answered 401, the webhook target
    paused, and after ILOG_WEBHOOK_MAX_PAUSE_SECONDS the sync stage dead-lettered the waiting webhook
    deliveries with the reason. Salesforce and Zendesk were synced.
    Once the secret is fixed, `ilog dlq replay` resends the letters; the sync stage delivers them to
    the webhook only (the other targets already hold those versions) and nothing is duplicated."""
    run = _settings(settings)
    stream = _stream(10, seed=42)
    ids = {e["subject"] for e in stream}
    seed_zendesk_tickets(fresh_emulators.zendesk.base_url, list(stream))
    produce(run, run.events_topic, stream)
    wrong = WorkerProcess("all", run, tmp_path / "wrong.log",
                          **{**fresh_emulators.env, "ILOG_WEBHOOK_SECRET": "not-the-receivers-secret",
                             "ILOG_WEBHOOK_MAX_PAUSE_SECONDS": "2", "ILOG_TARGET_PAUSE_CEILING_SECONDS": "1"})
    try:
        assert wait_settled(run, sorted(ids), timeout_s=120), wrong.log_text()[-3000:]
    finally:
        assert wrong.stop() == 0, wrong.log_text()[-3000:]
    refused = _crm_state(fresh_emulators, ids)
    assert refused["deliveries"] and {401} == {status for _, status, _ in refused["deliveries"]}
    letters = json.loads(_ilog(run, "dlq", "list", "--json", "--topic", run.upserts_dlq_topic).stdout)
    assert {"webhook:HTTP_401"} == {d["reason"] for d in letters}

    fixed = WorkerProcess("all", run, tmp_path / "fixed.log", **fresh_emulators.env)
    try:
        resent = _ilog(run, "dlq", "replay", "--topic", run.upserts_dlq_topic, "--reason", "HTTP_401", "--yes")
        assert 0 == resent.returncode, resent.stderr[-3000:]
        assert wait_settled(run, sorted(ids), timeout_s=120), fixed.log_text()[-3000:]
    finally:
        assert fixed.stop() == 0, fixed.log_text()[-3000:]
    after = _crm_state(fresh_emulators, ids)
    delivered = {(i, body["event"]) for i, status, body in after["deliveries"] if status == 200}
    assert {(i, "interactionRemoved") for i in ids} <= delivered
    assert refused["tasks"] == after["tasks"]  # Salesforce already had these versions: no call, no duplicate
