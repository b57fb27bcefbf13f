"""Zendesk Support API emulator: tickets, comments, audits, ticket fields, bulk jobs, search, limits.

Job statuses follow zenpy's recorded `TestTicketCreateUpdateDelete.test_multiple_update_full_objects-
update-many.json` (queued → working → completed, per-ticket `results`; pace in `zendesk_jobs`), and
several are read at once with `GET job_statuses/show_many.json?ids=` (`{"job_statuses": [...]}`, as
zenpy's `JobStatusesResponseHandler` reads it); errors follow
`...recordnotfound-update.json` (404 RecordNotFound) and `...toomanyvaluesexception...json`
(400 TooManyValues). Account limits answer with `X-Rate-Limit` / `X-Rate-Limit-Remaining`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import secrets
import time
from collections import deque
from typing import Any

from tests.emulators.faults import Fault
from tests.emulators.server import EmulatorApp, Request, Response
from tests.emulators.zendesk_jobs import Job
from tests.emulators.zendesk_search import SearchQueryError, matching_tickets, parse_query, search_page
from tests.emulators.zendesk_tickets import AGENT_ID, RecordInvalidError, TicketStore, full_field

DEFAULT_EMAIL = "agent@example.com"
DEFAULT_TOKEN = "ilog-emulator-token"
DEFAULT_CONFIG: dict[str, float] = {
    "rate_limit_per_minute": 700, "ticket_update_limit": 30, "ticket_update_window_s": 600,
    "job_queue_s": 0.5, "job_seconds_per_item": 0.02, "max_bulk": 100,
}
_NOT_FOUND = {"error": "RecordNotFound", "description": "Not found"}
_TICKET_RE = re.compile(r"^/api/v2/tickets/(\d+)(?:/(comments|audits))?\.json$")
_FIELD_RE = re.compile(r"^/api/v2/ticket_fields/(\d+)\.json$")
_JOB_RE = re.compile(r"^/api/v2/job_statuses/([\w-]+)\.json$")


def _too_many(retry_after_s: int, description: str) -> Response:
    return Response(429, {"error": "TooManyRequests", "description": description},
                    {"Retry-After": str(max(1, retry_after_s))})


class ZendeskApp(EmulatorApp):
    name = "zendesk"

    def __init__(self, email: str = DEFAULT_EMAIL, token: str = DEFAULT_TOKEN) -> None:
        super().__init__()
        self.email, self.token = email, token
        self.reset()

    def reset(self) -> None:
        self.store = TicketStore(self.base_url)
        self.jobs: dict[str, Job] = {}
        self.idempotency: dict[str, tuple[str, Response]] = {}
        self.ticket_updates: dict[int, deque[float]] = {}
        self.minute_calls: deque[float] = deque()
        self.config = dict(DEFAULT_CONFIG)

    # -- control -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        self._settle_jobs()
        return {**self.store.state(), "jobs": [job.view(self.base_url) for job in self.jobs.values()]}

    def seed(self, payload: dict[str, Any]) -> Response:
        self.config.update({k: float(v) for k, v in payload.get("config", {}).items()})
        for spec in payload.get("ticket_fields", []):
            self.store.fields[int(spec["id"])] = full_field(self.base_url, spec)
        created = []
        for spec in payload.get("tickets", []):
            comments = list(spec.get("comments", [])) or [{"body": spec.get("description", "seeded"),
                                                           "public": True}]
            ticket, audit = self.store.create({**spec, "comment": comments[0]})
            for comment in comments[1:]:
                self.store.add_comment(ticket["id"], comment, AGENT_ID, audit["id"])
            created.append(ticket)
        return Response(200, {"tickets": created})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.name in ("invalid_session", "unauthorized", "invalid_client", "invalid_grant"):
            return Response(401, {"error": "Couldn't authenticate you"})
        if fault.name == "api_disabled":
            return Response(403, {"error": "Forbidden", "description": "You do not have access to this page. "
                                  "Please contact the account owner of this help desk for further help."})
        if fault.name in ("429", "request_limit"):
            return _too_many(fault.retry_after_s, "Number of allowed API requests per minute exceeded")
        return Response(503, {"error": "ServiceUnavailable", "description": "Service temporarily unavailable"})

    def decorate(self, request: Request, response: Response) -> None:
        limit = int(self.config["rate_limit_per_minute"])
        response.headers["X-Rate-Limit"] = str(limit)
        response.headers["X-Rate-Limit-Remaining"] = str(max(0, limit - len(self.minute_calls)))

    # -- API -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if not self._authenticated(request):
            return Response(401, {"error": "Couldn't authenticate you"})
        limited = self._account_limit()
        if limited is not None:
            return limited
        self._settle_jobs()
        try:
            return self._route(request)
        except RecordInvalidError as exc:
            return Response(422, exc.body)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            return Response(400, {"error": "InvalidParameters", "description": str(exc)})

    def _route(self, request: Request) -> Response:
        path, method = request.path, request.method
        if path == "/api/v2/tickets.json":
            return self._create(request) if method == "POST" else self._list_tickets(request)
        if path == "/api/v2/search.json" and method == "GET":
            return self._search(request)
        if path == "/api/v2/tickets/show_many.json" and method == "GET":
            ids = [int(i) for i in (request.param("ids") or "").split(",") if i]
            return self._page(request, "tickets", [t for i in ids if (t := self.store.find(i))])
        if path in ("/api/v2/tickets/update_many.json", "/api/v2/tickets/create_many.json"):
            return self._bulk(request, "create" if "create_many" in path else "update")
        if path == "/api/v2/ticket_fields.json" and method == "GET":
            return self._page(request, "ticket_fields", list(self.store.fields.values()))
        if (match := _FIELD_RE.match(path)) and method == "GET":
            field = self.store.fields.get(int(match.group(1)))
            return Response(200, {"ticket_field": field}) if field else Response(404, _NOT_FOUND)
        if path == "/api/v2/job_statuses/show_many.json" and method == "GET":
            job_ids = [i for i in (request.param("ids") or "").split(",") if i]
            found = [job.view(self.base_url) for i in job_ids if (job := self.jobs.get(i))]
            return Response(200, {"job_statuses": found})
        if (match := _JOB_RE.match(path)) and method == "GET":
            job = self.jobs.get(match.group(1))
            return Response(200, {"job_status": job.view(self.base_url)}) if job else Response(404, _NOT_FOUND)
        if match := _TICKET_RE.match(path):
            return self._ticket(request, int(match.group(1)), match.group(2))
        return Response(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _ticket(self, request: Request, ticket_id: int, sub: str | None) -> Response:
        ticket = self.store.find(ticket_id)
        if ticket is None:
            return Response(404, _NOT_FOUND)
        if sub == "comments" and request.method == "GET":
            return self._page(request, "comments", self.store.comments[ticket_id])
        if sub == "audits" and request.method == "GET":
            return self._page(request, "audits", self.store.audits[ticket_id])
        if sub is None and request.method == "GET":
            return Response(200, {"ticket": ticket})
        if sub is None and request.method == "PUT":
            limited = self.count_ticket_update(ticket_id)
            if limited is not None:
                return limited
            audit = self.store.update(ticket, (request.json() or {}).get("ticket", {}))
            return Response(200, {"ticket": ticket, "audit": audit})
        if sub is None and request.method == "DELETE":
            del self.store.tickets[ticket_id]
            return Response(204)
        return Response(404, {"error": "InvalidEndpoint", "description": "Not found"})

    def _create(self, request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        digest = hashlib.sha256(request.body).hexdigest()
        if key and key in self.idempotency:
            seen_digest, seen = self.idempotency[key]
            if seen_digest != digest:
                return Response(400, {"error": "IdempotentRequestError",
                                      "description": "Request parameters do not match the original request"})
            return Response(seen.status, seen.body, {**seen.headers, "x-idempotency-lookup": "hit"})
        ticket, audit = self.store.create((request.json() or {}).get("ticket", {}))
        response = Response(201, {"ticket": ticket, "audit": audit}, {"Location": ticket["url"]})
        if key:
            self.idempotency[key] = (digest, response)
            response = Response(201, response.body, {**response.headers, "x-idempotency-lookup": "miss"})
        return response

    def _list_tickets(self, request: Request) -> Response:
        tickets = list(self.store.tickets.values())
        external_id = request.param("external_id")
        if external_id is not None:
            tickets = [t for t in tickets if t.get("external_id") == external_id]
        return self._page(request, "tickets", tickets)

    def _search(self, request: Request) -> Response:
        try:
            terms = parse_query(request.param("query") or "")
        except SearchQueryError as exc:
            return Response(400, {"error": "InvalidSearchQuery", "description": str(exc)})
        found = matching_tickets(self.store.tickets.values(), terms)
        link = f"{self.base_url}{request.path}?query={request.param('query')}&page={{}}&per_page={{}}"
        page, per_page = int(request.param("page") or 1), int(request.param("per_page") or 100)
        return Response(200, search_page(found, page, per_page, link))

    def _bulk(self, request: Request, action: str) -> Response:
        body = request.json() or {}
        items = body.get("tickets")
        if items is None and request.param("ids"):
            items = [{**body.get("ticket", {}), "id": int(i)} for i in str(request.param("ids")).split(",")]
        items = list(items or [])
        if len(items) > int(self.config["max_bulk"]):
            return Response(400, {"error": "TooManyValues", "max_count": int(self.config["max_bulk"]),
                                  "description": "Parameter tickets cannot specify more than 100 values"})
        job = Job(id=f"V3-{secrets.token_hex(16)}", action=action, items=items, created_s=time.time())
        self.jobs[job.id] = job
        return Response(200, {"job_status": job.view(self.base_url)})

    # -- limits, pagination, jobs ----------------------------------------------------------
    def count_ticket_update(self, ticket_id: int) -> Response | None:
        window_s, limit = float(self.config["ticket_update_window_s"]), int(self.config["ticket_update_limit"])
        now = time.time()
        stamps = self.ticket_updates.setdefault(ticket_id, deque())
        while stamps and stamps[0] <= now - window_s:
            stamps.popleft()
        if len(stamps) >= limit:
            return _too_many(math.ceil(stamps[0] + window_s - now),
                             "Rate limit for ticket updates exceeded, please wait before updating this ticket again")
        stamps.append(now)
        return None

    def _account_limit(self) -> Response | None:
        now = time.time()
        while self.minute_calls and self.minute_calls[0] <= now - 60:
            self.minute_calls.popleft()
        if len(self.minute_calls) >= int(self.config["rate_limit_per_minute"]):
            return _too_many(math.ceil(self.minute_calls[0] + 60 - now),
                             "Number of allowed API requests per minute exceeded")
        self.minute_calls.append(now)
        return None

    def _settle_jobs(self) -> None:
        now_s = time.time()
        for job in self.jobs.values():
            job.advance(self, now_s)

    def _authenticated(self, request: Request) -> bool:
        scheme, _, encoded = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, secret = base64.b64decode(encoded).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return user == f"{self.email}/token" and secret == self.token

    def _page(self, request: Request, key: str, items: list[dict[str, Any]]) -> Response:
        if request.param("page[size]"):  # cursor pagination (zenpy asks for it on audits)
            return Response(200, {key: items, "meta": {"has_more": False, "after_cursor": None,
                                                       "before_cursor": None},
                                  "links": {"prev": None, "next": None}})
        page, per_page = int(request.param("page") or 1), int(request.param("per_page") or 100)
        chunk = items[(page - 1) * per_page: page * per_page]
        link = f"{self.base_url}{request.path}?page={{}}&per_page={per_page}"
        return Response(200, {
            key: chunk, "count": len(items),
            "next_page": link.format(page + 1) if page * per_page < len(items) else None,
            "previous_page": link.format(page - 1) if page > 1 else None,
        })
