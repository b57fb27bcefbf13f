"""Tickets, comments, audits and ticket fields of the emulated Zendesk account.

Shapes copy zenpy's recorded sessions of the real API (tests/test_api/betamax/ in facetoe/zenpy):
ticket + audit from `TestTicketCreateUpdateDelete.test_single_object_update-update-single.json`,
audits from `TestTicketAudits.test_values.json`, comments from the Comment events in them.
"""

from __future__ import annotations

import itertools
import re
from collections import defaultdict
from datetime import UTC, datetime
from typing import Any

AGENT_ID = 9_000_001
MAX_COMMENTS = 5000
_INTEGER_RE = re.compile(r"^-?\d+$")
_DECIMAL_RE = re.compile(r"^-?\d+(?:\.\d+)?$")
_SCALARS = ("subject", "status", "priority", "type", "external_id", "requester_id", "assignee_id",
            "group_id", "organization_id", "due_at")

DEFAULT_TICKET_FIELDS: tuple[dict[str, Any], ...] = (
    {"id": 360001, "type": "textarea", "title": "Interaction log"},
    {"id": 360002, "type": "integer", "title": "Hold count"},
    {"id": 360003, "type": "decimal", "title": "Talk minutes"},
    {"id": 360004, "type": "text", "title": "Tier"},
    {"id": 360005, "type": "tagger", "title": "Contact reason",
     "custom_field_options": [{"id": 3600051, "name": "Billing", "value": "billing"},
                              {"id": 3600052, "name": "Technical", "value": "technical"}]},
    {"id": 360006, "type": "checkbox", "title": "Callback requested"},
)


CLOSED_REFUSAL = "Status: closed prevents ticket update"
"""What Zendesk answers (422 RecordInvalid, `details.status`) to any update of a closed ticket."""


class RecordInvalidError(ValueError):
    """422 RecordInvalid with the `details` Zendesk returns."""

    def __init__(self, details: dict[str, Any]) -> None:
        super().__init__(str(details))
        self.body = {"error": "RecordInvalid", "description": "Record validation errors", "details": details}


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def full_field(base_url: str, spec: dict[str, Any]) -> dict[str, Any]:
    field_id = int(spec["id"])
    stamp = now_iso()
    return {
        "url": f"{base_url}/api/v2/ticket_fields/{field_id}.json", "id": field_id, "type": spec["type"],
        "title": spec["title"], "raw_title": spec["title"], "description": spec.get("description", ""),
        "raw_description": spec.get("description", ""), "position": spec.get("position", 0),
        "active": True, "required": False, "collapsed_for_agents": False, "regexp_for_validation": None,
        "title_in_portal": spec["title"], "visible_in_portal": False, "editable_in_portal": False,
        "required_in_portal": False, "tag": None, "created_at": stamp, "updated_at": stamp,
        "removable": True, "key": None, "agent_description": None,
        "custom_field_options": spec.get("custom_field_options", []),
    }


class TicketStore:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url
        self.tickets: dict[int, dict[str, Any]] = {}
        self.comments: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.audits: dict[int, list[dict[str, Any]]] = defaultdict(list)
        self.fields: dict[int, dict[str, Any]] = {
            int(f["id"]): full_field(base_url, f) for f in DEFAULT_TICKET_FIELDS}
        self._ticket_ids = itertools.count(1)
        self._event_ids = itertools.count(10_000_000)
        self.users: dict[int, dict[str, Any]] = {}  # end users made from a ticket's `requester`
        self._user_ids = itertools.count(20_000_001)

    def state(self) -> dict[str, Any]:
        tickets = [{**t, "comments": self.comments[i]} for i, t in self.tickets.items()]
        return {"tickets": tickets, "ticket_fields": list(self.fields.values()), "users": list(self.users.values())}

    def requester_id(self, requester: dict[str, Any]) -> int:
        """A ticket's `requester` object: the end user with that email, else a new one (as Zendesk makes it)."""
        email = requester.get("email")
        if email:
            for user in self.users.values():
                if str(user.get("email") or "").lower() == str(email).lower():
                    return int(user["id"])
        user_id = next(self._user_ids)
        self.users[user_id] = {"id": user_id, "name": requester.get("name") or email, "email": email or None,
                               "phone": requester.get("phone"), "role": "end-user", "created_at": now_iso()}
        return user_id

    def find(self, ticket_id: int) -> dict[str, Any] | None:
        return self.tickets.get(ticket_id)

    def create(self, payload: dict[str, Any], author_id: int = AGENT_ID) -> tuple[dict[str, Any], dict[str, Any]]:
        comment = payload.get("comment") or ({"body": payload["description"]} if payload.get("description")
                                             else None)
        if not comment or not (comment.get("body") or comment.get("html_body")):
            raise RecordInvalidError({"description": [{"description": "Description: cannot be blank",
                                                  "error": "BlankValue"}]})
        custom = self._checked_custom_fields(payload.get("custom_fields", payload.get("fields", [])))
        ticket_id = int(payload.get("id") or self._next_ticket_id())
        stamp = now_iso()
        ticket = {
            "url": f"{self.base_url}/api/v2/tickets/{ticket_id}.json", "id": ticket_id,
            "external_id": None, "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": stamp, "updated_at": stamp, "type": None, "subject": None, "raw_subject": None,
            "description": comment.get("body") or comment.get("html_body"), "priority": None, "status": "new",
            "recipient": None, "requester_id": author_id, "submitter_id": author_id, "assignee_id": None,
            "organization_id": None, "group_id": None, "collaborator_ids": [], "follower_ids": [],
            "email_cc_ids": [], "followup_ids": [], "has_incidents": False,
            "is_public": bool(comment.get("public", True)),
            "due_at": None, "tags": [], "custom_fields": [{"id": i, "value": None} for i in self.fields],
            "fields": [], "satisfaction_rating": None, "sharing_agreement_ids": [], "allow_channelback": False,
            "allow_attachments": True, "from_messaging_channel": False,
        }
        if isinstance(payload.get("requester"), dict) and payload.get("requester_id") is None:
            # `requester` names (or makes) the end user; a `requester_id` beside it decides, as in Zendesk
            ticket["requester_id"] = self.requester_id(payload["requester"])
            payload = {key: value for key, value in payload.items() if key != "requester_id"}
        self._follow_up(ticket, payload.get("via_followup_source_id"))
        self.tickets[ticket_id] = ticket
        audit = self._apply(ticket, {**payload, "comment": comment}, custom, author_id, "Create")
        return ticket, audit

    def _follow_up(self, ticket: dict[str, Any], source_id: Any) -> None:
        """`via_followup_source_id`: a follow-up of that ticket when it is closed; with any other ticket the
        parameter has no effect (Zendesk's "Creating a follow-up ticket")."""
        source = self.tickets.get(int(source_id)) if isinstance(source_id, int | str) and str(source_id).isdigit() \
            else None
        if source is None or source.get("status") != "closed":
            return
        ticket["via"] = {"channel": "api", "source": {"from": {"ticket_id": source["id"], "subject": source["subject"]},
                                                      "to": {}, "rel": "follow_up"}}
        source["followup_ids"].append(ticket["id"])

    def update(self, ticket: dict[str, Any], payload: dict[str, Any],
               author_id: int = AGENT_ID) -> dict[str, Any]:
        if ticket.get("status") == "closed":  # closed is final: no change, no comment, not even a status
            raise RecordInvalidError({"status": [{"description": CLOSED_REFUSAL}]})
        custom = self._checked_custom_fields(payload.get("custom_fields", payload.get("fields", [])))
        if payload.get("comment") and len(self.comments[ticket["id"]]) >= MAX_COMMENTS:
            raise RecordInvalidError({"base": [{"description": f"Ticket has reached the maximum of {MAX_COMMENTS} "
                                           "comments; no more comments can be added", "error": "TooManyComments"}]})
        return self._apply(ticket, payload, custom, author_id, "Change")

    def _apply(self, ticket: dict[str, Any], payload: dict[str, Any], custom: dict[int, Any],
               author_id: int, kind: str) -> dict[str, Any]:
        audit_id = next(self._event_ids)
        events: list[dict[str, Any]] = []
        comment = payload.get("comment")
        if comment:
            events.append(self.add_comment(ticket["id"], comment, author_id, audit_id))
        for name in _SCALARS:
            if name in payload and payload[name] != ticket.get(name):
                events.append({"id": next(self._event_ids), "type": kind, "value": payload[name],
                               "field_name": name, "previous_value": ticket.get(name)})
                ticket[name] = payload[name]
        if "subject" in payload:
            ticket["raw_subject"] = payload["subject"]
        if "tags" in payload:
            ticket["tags"] = list(payload["tags"])
        for entry in ticket["custom_fields"]:
            if entry["id"] in custom and custom[entry["id"]] != entry["value"]:
                events.append({"id": next(self._event_ids), "type": kind, "value": custom[entry["id"]],
                               "field_name": str(entry["id"]), "previous_value": entry["value"]})
                entry["value"] = custom[entry["id"]]
        ticket["fields"] = ticket["custom_fields"]
        ticket["updated_at"] = now_iso()
        audit = {"id": audit_id, "ticket_id": ticket["id"], "created_at": ticket["updated_at"],
                 "author_id": author_id, "metadata": {"system": {"client": "emulator"}, "custom": {}},
                 "events": events, "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}}}
        self.audits[ticket["id"]].append(audit)
        return audit

    def add_comment(self, ticket_id: int, comment: dict[str, Any], author_id: int,
                     audit_id: int) -> dict[str, Any]:
        body = str(comment.get("body") or comment.get("html_body") or "")
        stored = {
            "id": next(self._event_ids), "type": "Comment", "author_id": int(comment.get("author_id", author_id)),
            "body": body, "html_body": f'<div class="zd-comment" dir="auto"><p dir="auto">{body}</p></div>',
            "plain_body": body, "public": bool(comment.get("public", True)), "attachments": [],
            "audit_id": audit_id, "via": {"channel": "api", "source": {"from": {}, "to": {}, "rel": None}},
            "created_at": now_iso(), "metadata": {"system": {}, "custom": {}},
        }
        self.comments[ticket_id].append(stored)
        return stored

    def _checked_custom_fields(self, entries: Any) -> dict[int, Any]:
        checked: dict[int, Any] = {}
        for entry in entries or []:
            spec = self.fields.get(int(entry.get("id", 0)))
            if spec is None:  # unknown field ids are ignored, as the real API does
                continue
            problem = _value_problem(spec, entry.get("value"))
            if problem:
                raise RecordInvalidError({"base": [{"description": f"{spec['title']}: {problem}",
                                               "error": "InvalidValue", "field_key": spec["id"]}]})
            checked[spec["id"]] = entry.get("value")
        return checked

    def _next_ticket_id(self) -> int:
        while True:
            candidate = next(self._ticket_ids)
            if candidate not in self.tickets:
                return candidate


def _value_problem(spec: dict[str, Any], value: Any) -> str | None:
    if value is None:
        return None
    kind = spec["type"]
    text = str(value)
    if kind == "integer" and (isinstance(value, bool | float) or not _INTEGER_RE.match(text)):
        return "is not a whole number"
    if kind == "decimal" and (isinstance(value, bool) or not _DECIMAL_RE.match(text)):
        return "is not a number"
    if kind == "checkbox" and not isinstance(value, bool):
        return "is not true or false"
    if kind == "tagger" and text not in {o["value"] for o in spec["custom_field_options"]}:
        return f"{text} is not a valid option"
    return None
