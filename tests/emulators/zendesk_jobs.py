"""Bulk ticket jobs (create_many / update_many): queued → working → completed.

Each poll moves a job one step; a job older than `job_complete_after_s` completes on the next
request of any kind, so a client that never polls still sees its writes land, later.
"""

from __future__ import annotations

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
    polls: int = field(default=0)

    def view(self, base_url: str) -> dict[str, Any]:
        return {"id": self.id, "url": f"{base_url}/api/v2/job_statuses/{self.id}.json", "total": len(self.items),
                "progress": self.progress, "status": self.status, "message": self.message,
                "results": self.results}

    def poll(self, app: ZendeskApp, base_url: str) -> dict[str, Any]:
        self.polls += 1
        if self.status == "queued":
            self.status, self.progress = "working", len(self.items) // 2
            verb = "Creating" if self.action == "create" else "Updating"
            self.message = f"{verb} ticket #{self.progress}"
        elif self.status == "working":
            self.complete(app)
        return self.view(base_url)

    def complete(self, app: ZendeskApp) -> None:
        self.results = [self._run(app, index, item) for index, item in enumerate(self.items)]
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
