"""Plumbing for the sync-stage e2e and fault tests: settings against the emulators, events, waits."""


from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from tests.e2e.conftest import Emulators
from tests.support import WorkerProcess
from tests.support import event as event  # re-exported for the sync tests
from tests.support import wait_for as wait_for  # re-exported for the sync tests
from worker.runtime.settings import Settings

CONTACT_ID = "0035g00000AbCdEAAZ"
CASE_ID = "5005g00000XyZabAAB"
ACCOUNT_ID = "0015g00000QrStUAAV"
FAST_GROUP = {"ILOG_KAFKA__SESSION_TIMEOUT_MS": "6000", "ILOG_KAFKA__HEARTBEAT_INTERVAL_MS": "500"}
_TARGET_PREFIX = {"salesforce": "ILOG_SALESFORCE_", "zendesk": "ILOG_ZENDESK_", "webhook": "ILOG_WEBHOOK_"}
_SECRETS = {"salesforce_client_secret", "zendesk_token", "webhook_secret"}


def sync_settings(
    settings: Settings, emulators: Emulators, targets: tuple[str, ...] = ("salesforce", "zendesk", "webhook"),
    **overrides: Any,
) -> Settings:
    """The test's settings pointed at the emulators (only `targets` on), short window and grace."""
    values: dict[str, Any] = {"edit_window_seconds": 3.0, "finalize_grace_seconds": 1.0,
                              "salesforce_timeout_seconds": 3.0, "zendesk_timeout_seconds": 3.0,
                              "webhook_timeout_seconds": 3.0, "zendesk_job_poll_seconds": 0.1,
                              "salesforce_budget_pause_seconds": 1.0, "drain_timeout_seconds": 10.0}
    for key, value in emulators.env.items():
        if any(key.startswith(_TARGET_PREFIX[t]) for t in targets):
            name = key.removeprefix("ILOG_").lower()
            values[name] = SecretStr(value) if name in _SECRETS else value
    values.update(overrides)
    return settings.model_copy(update=values)


def connected(media: str = "voice", direction: str = "inbound", **extra: Any) -> dict[str, Any]:
    return {"media": media, "direction": direction, "queue": None, "agent_id": "agent-7",
            "customer": {"address": "+4930123456", "name": "Ada Example"}, **extra}


def sf_ref(kind: str, record_id: str) -> dict[str, str]:
    return {"system": "salesforce", "type": kind, "id": record_id}


def zd_ticket(ticket_id: int) -> dict[str, str]:
    return {"system": "zendesk", "type": "ticket", "id": str(ticket_id)}


def wait_assigned(worker: WorkerProcess, stages: int, timeout_s: float = 30) -> None:
    """Both consumer groups joined (one 'partitions assigned' line per stage)."""
    joined = wait_for(lambda: worker.log_text().count("partitions assigned") >= stages, timeout_s)
    assert joined, worker.log_text()[-3000:]


def tasks_by_call(emulators: Emulators) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for task in emulators.salesforce.state()["tasks"]:
        found.setdefault(str(task.get("CallObject")), []).append(task)
    return found


def task_writes(emulators: Emulators) -> list[str]:
    """Methods of the sObject writes the Salesforce emulator answered (POST create, PATCH update)."""
    return [
        entry["method"]
        for entry in emulators.salesforce.requests()
        if entry["method"] in ("POST", "PATCH") and "/services/data/" in entry["path"]
        and entry["path"].rstrip("/").endswith(("composite/sobjects", "sobjects/Task")) and entry["fault"] is None
    ]


def seed_ticket(emulators: Emulators, subject: str) -> int:
    before = {t["id"] for t in emulators.zendesk.state()["tickets"]}
    emulators.zendesk.seed({"tickets": [{"subject": subject, "description": "Where is my order?"}]})
    [ticket_id] = [t["id"] for t in emulators.zendesk.state()["tickets"] if t["id"] not in before]
    return int(ticket_id)


def ticket(emulators: Emulators, ticket_id: int) -> dict[str, Any]:
    return next(t for t in emulators.zendesk.state()["tickets"] if t["id"] == ticket_id)


def worker_comments(found: dict[str, Any]) -> list[str]:
    return [comment["body"] for comment in found["comments"] if "[interaction " in comment["body"]]


def custom_values(found: dict[str, Any]) -> dict[int, Any]:
    return {int(e["id"]): e["value"] for e in found["custom_fields"] if e["value"] is not None}
