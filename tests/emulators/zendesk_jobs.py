"""Bulk ticket jobs (create_many / update_many): queued → working → completed, paced by time.

As in zenpy's recorded sessions of the real API (`TestTicketCreateUpdateDelete.test_full_objects_
create-create-multiple.json`, `...test_multiple_update_full_objects-update-many.json`): a job waits
in `queued` (progress null), then works through its tickets one after the other (`working`,
progress = tickets done, message "Creating ticket #N" / "Updating ticket #N", results null), and
reports every ticket's result only once `completed`. The real jobs took 10 to 15 s for 100 tickets;
here the pace is the account config `job_queue_s` + `job_seconds_per_item` * tickets, read at
each look, so a test can change it mid-job. Tickets are written as the job reaches them, whether
or not anyone polls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tests.emulators.zendesk_tickets import RecordInvalidError

if TYPE_CHECKING:
    from tests.emulators.zendesk import ZendeskApp


@dataclass
class Job:
    id: str
    action: str  # "create" | "update"
    items: list[dict[str, Any]]
    created_s: float
    status: str = "queued"
    progress: int | None = None
    message: str | None = None
    results: list[dict[str, Any]] | None = None
    done: list[dict[str, Any]] = field(default_factory=list)

    def view(self, base_url: str) -> dict[str, Any]:
        return {"id": self.id, "url": f"{base_url}/api/v2/job_statuses/{self.id}.json", "total": len(self.items),
                "progress": self.progress, "status": self.status, "message": self.message,
                "results": self.results}

    def advance(self, app: ZendeskApp, now_s: float) -> None:
        """Write the tickets the job has reached by `now_s`; complete it after the last one."""
        if self.status == "completed":
            return
        queue_s, per_item_s = float(app.config["job_queue_s"]), float(app.config["job_seconds_per_item"])
        working_s = now_s - self.created_s - queue_s
        if working_s < 0:
            return
        reached = len(self.items) if per_item_s <= 0 else min(len(self.items), math.floor(working_s / per_item_s))
        while len(self.done) < reached:
            index = len(self.done)
            self.done.append(self._run(app, index, self.items[index]))
        if len(self.done) < len(self.items):
            verb = "Creating" if self.action == "create" else "Updating"
            self.status, self.progress, self.message = "working", len(self.done), f"{verb} ticket #{len(self.done)}"
            return
        self.results = list(self.done)
        self.status, self.progress = "completed", len(self.items)
        self.message = f"Completed at {datetime.now(UTC).strftime('%Y-%m-%d %H:%M:%S +0000')}"

    def _run(self, app: ZendeskApp, index: int, item: dict[str, Any]) -> dict[str, Any]:
        try:
            if self.action == "create":
                ticket, _ = app.store.create(item)
                return {"index": index, "id": ticket["id"], "account_id": 1}
            return self._update(app, index, item)
        except RecordInvalidError as exc:
            return {"index": index, "id": item.get("id"), "success": False, "error": "RecordInvalid",
                    "details": exc.body["details"]}

    @staticmethod
    def _update(app: ZendeskApp, index: int, item: dict[str, Any]) -> dict[str, Any]:
        ticket_id = int(item.get("id") or 0)
        ticket = app.store.find(ticket_id)
        if ticket is None:
            return {"index": index, "id": ticket_id, "action": "update", "success": False,
                    "status": "Failed", "error": "RecordNotFound", "details": "Not found"}
        if app.count_ticket_update(ticket_id) is not None:
            return {"index": index, "id": ticket_id, "action": "update", "success": False,
                    "status": "Failed", "error": "TooManyRequests",
                    "details": "Rate limit for ticket updates exceeded"}
        app.store.update(ticket, {k: v for k, v in item.items() if k != "id"})
        return {"id": ticket_id, "action": "update", "success": True, "status": "Updated"}
