"""Salesforce REST API emulator: Task CRUD, describe, sObject Collections, SOQL, limits.

Shapes follow the REST API Developer Guide pages "Create a Record", "Update a Record",
"sObject Collections: Create/Update", "Query", "Status Codes and Error Responses" and
"Limits"; `Sforce-Limit-Info: api-usage=N/M` is on every API answer.
"""

from __future__ import annotations

import itertools
import re
from datetime import UTC, datetime
from typing import Any

from tests.emulators.faults import Fault
from tests.emulators.salesforce_auth import INVALID_CLIENT, USER_ID, TokenIssuer
from tests.emulators.salesforce_query import SoqlError, parse_soql
from tests.emulators.salesforce_schema import (
    JsonParserError,
    check_record,
    describe_task,
    integrity_errors,
    is_salesforce_id,
    record_error,
)
from tests.emulators.server import EmulatorApp, Request, Response

DEFAULT_CLIENT_ID = "ilog-emulator-client"
DEFAULT_CLIENT_SECRET = "ilog-emulator-secret"
DEFAULT_API_LIMIT = 100_000
MAX_COLLECTION_RECORDS = 200
QUERY_BATCH_SIZE = 2000  # records a query answer holds; the rest behind nextRecordsUrl
_DATA_RE = re.compile(r"^/services/data/v(?P<version>\d+\.\d)(?:/(?P<rest>.*?))?/?$")
_ROLLED_BACK = record_error(
    "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "Record rolled back because not all records were valid and the request was using AllOrNone header", [])
_TOO_MANY_RECORDS = "record limit reached. cannot submit more than 200 records into this call"
_NOT_FOUND = [{"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"}]


def sf_error(code: str, message: str, fields: list[str] | None = None) -> list[dict[str, Any]]:
    return [{"message": message, "errorCode": code, "fields": fields or []}]


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+0000"


class SalesforceApp(EmulatorApp):
    name = "salesforce"

    def __init__(self, client_id: str = DEFAULT_CLIENT_ID,
                 client_secret: str = DEFAULT_CLIENT_SECRET) -> None:
        super().__init__()
        self.auth = TokenIssuer(client_id, client_secret)
        self.reset()

    def reset(self) -> None:
        self.tasks: dict[str, dict[str, Any]] = {}
        self.deleted: set[str] = set()
        self.api_used = 0
        self.api_limit = DEFAULT_API_LIMIT
        self.validation_rules: list[dict[str, str]] = []
        self._ids = itertools.count(1)
        self._cursors: dict[str, list[dict[str, Any]]] = {}  # query locator → rows not yet answered
        self._locators = itertools.count(1)

    # -- control -------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "tasks": list(self.tasks.values()),
            "deleted_ids": sorted(self.deleted),
            "api_usage": {"used": self.api_used, "limit": self.api_limit},
            "logins": self.auth.logins,
        }

    def seed(self, payload: dict[str, Any]) -> Response:
        config = payload.get("config", {})
        self.api_limit = int(config.get("api_limit", self.api_limit))
        # an org's validation rules, as `{"field": "Subject", "contains": "text", "message": "..."}`: a Task whose
        # field contains the text is refused, that record alone (FIELD_CUSTOM_VALIDATION_EXCEPTION)
        self.validation_rules = list(config.get("validation_rules", self.validation_rules))
        created = [self._insert(dict(task)) for task in payload.get("tasks", [])]
        return Response(200, {"tasks": created})

    def control(self, action: str, request: Request) -> Response | None:
        if action == "expire_sessions" and request.method == "POST":
            self.auth.expire_all()
            return Response(200, {"expired": True})
        return None

    def fault_response(self, fault: Fault, request: Request) -> Response:
        if fault.name == "invalid_client":
            return Response(400, INVALID_CLIENT)
        if fault.name == "invalid_grant":
            return Response(400, {"error": "invalid_grant", "error_description": "authentication failure"})
        if fault.name == "unauthorized":
            return Response(401, sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
        if fault.name == "api_disabled":
            return Response(403, sf_error("API_DISABLED_FOR_ORG",
                                          "API is not enabled for this Organization or Partner"))
        if fault.name == "invalid_session":
            self.auth.expire_all()
            return Response(401, sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
        if fault.name == "request_limit":
            return Response(403, sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        if fault.name == "429":
            return Response(429, sf_error("REQUEST_LIMIT_EXCEEDED", "Too many requests; retry later."),
                            {"Retry-After": str(fault.retry_after_s)})
        return Response(503, sf_error("SERVER_UNAVAILABLE", "Server temporarily unavailable."))

    def decorate(self, request: Request, response: Response) -> None:
        if request.path.startswith("/services/data"):
            response.headers["Sforce-Limit-Info"] = f"api-usage={self.api_used}/{self.api_limit}"

    # -- API -------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") == "/services/oauth2/token" and request.method == "POST":
            return self.auth.token_endpoint(request, self.base_url)
        match = _DATA_RE.match(request.path)
        if match is None:
            return Response(404, _NOT_FOUND)
        if not self.auth.valid(request):
            return Response(401, sf_error("INVALID_SESSION_ID", "Session expired or invalid"))
        self.api_used += 1
        if self.api_used > self.api_limit:
            return Response(403, sf_error("REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded."))
        try:
            return self._route(request, match.group("version"), match.group("rest") or "")
        except JsonParserError as exc:
            return Response(400, sf_error("JSON_PARSER_ERROR", str(exc)))
        except ValueError as exc:  # a body that is not JSON at all
            return Response(400, sf_error("JSON_PARSER_ERROR", f"Unexpected character: {exc}"))

    def _route(self, request: Request, version: str, rest: str) -> Response:
        method, parts = request.method, rest.split("/")
        if rest == "" and method == "GET":  # the API root: the resources of this version
            return Response(200, {name: f"/services/data/v{version}/{name}"
                                  for name in ("sobjects", "query", "limits", "composite")})
        if rest == "limits" and method == "GET":
            return Response(200, {"DailyApiRequests": {"Max": self.api_limit,
                                                       "Remaining": self.api_limit - self.api_used}})
        if rest == "query" and method == "GET":
            return self._query(request.param("q") or "", version)
        if parts[0] == "query" and len(parts) == 2 and method == "GET":
            return self._query_more(parts[1], version)
        if rest == "composite/sobjects" and method in ("POST", "PATCH"):
            return self._collection(request.json(), creating=method == "POST")
        if parts[0] != "sobjects" or len(parts) < 2:
            return Response(404, _NOT_FOUND)
        if parts[1] != "Task":
            return Response(404, sf_error("NOT_FOUND", f"The requested resource does not exist: {parts[1]}"))
        if len(parts) == 2 and method == "POST":
            return self._create_one(request.json())
        if len(parts) == 3 and parts[2] == "describe" and method == "GET":
            return Response(200, describe_task())
        if len(parts) == 3:
            return self._one(method, parts[2], request, version)
        return Response(404, _NOT_FOUND)

    def _one(self, method: str, task_id: str, request: Request, version: str) -> Response:
        if task_id in self.deleted:
            return Response(404, sf_error("ENTITY_IS_DELETED", "entity is deleted"))
        task = self._find(task_id)
        if task is None:
            return Response(404, _NOT_FOUND)
        if method == "GET":
            return Response(200, {"attributes": self._attributes(task["Id"], version), **task})
        if method == "PATCH":
            checked = check_record(request.json(), creating=False)
            checked.errors += [] if checked.errors else self._saving_errors({**task, **checked.values})
            if checked.errors:
                return Response(400, [_as_rest_error(e) for e in checked.errors])
            _touch(task, checked.values)
            return Response(204)
        if method == "DELETE":
            del self.tasks[task["Id"]]
            self.deleted.add(task["Id"])
            return Response(204)
        return Response(405, sf_error("METHOD_NOT_ALLOWED", f"HTTP Method '{method}' not allowed."))

    def _create_one(self, body: Any) -> Response:
        if not isinstance(body, dict):
            return Response(400, sf_error("JSON_PARSER_ERROR", "Expected a JSON object for the record"))
        checked = check_record(body, creating=True)
        checked.errors += [] if checked.errors else self._saving_errors(checked.values)
        if checked.errors:
            return Response(400, [_as_rest_error(e) for e in checked.errors])
        task = self._insert(checked.values)
        return Response(201, {"id": task["Id"], "success": True, "errors": []})

    def _collection(self, body: Any, creating: bool) -> Response:
        records = body.get("records") if isinstance(body, dict) else None
        if not isinstance(records, list):
            return Response(400, sf_error("JSON_PARSER_ERROR", "records: expected an array"))
        if len(records) > MAX_COLLECTION_RECORDS:
            return Response(400, sf_error("EXCEEDED_ID_LIMIT", _TOO_MANY_RECORDS))
        all_or_none = bool(body.get("allOrNone", False))
        plans = [self._plan(record, creating) for record in records]  # may raise JsonParserError
        if all_or_none and any(errors for _, _, errors in plans):
            return Response(200, [
                {"id": target if not creating else None, "success": False, "errors": errors or [_ROLLED_BACK]}
                for target, _, errors in plans])
        return Response(200, [self._commit(target, values, errors, creating)
                              for target, values, errors in plans])

    def _plan(self, record: Any, creating: bool) -> tuple[str | None, dict[str, Any], list[dict[str, Any]]]:
        if not isinstance(record, dict):
            raise JsonParserError("Cannot deserialize instance of SObject from a non-object value")
        sobject = (record.get("attributes") or {}).get("type")
        if sobject != "Task":
            return None, {}, [record_error("INVALID_TYPE", "Must send a concrete entity type.", [])]
        checked = check_record(record, creating)
        target = None if creating else record.get("id", record.get("Id"))
        if not creating:
            checked.errors[:0] = self._update_target_errors(target)
        if not checked.errors:
            saved = checked.values if creating else {**(self._find(str(target)) or {}), **checked.values}
            checked.errors += self._saving_errors(saved)
        return target, checked.values, checked.errors

    def _update_target_errors(self, target: Any) -> list[dict[str, Any]]:
        if not target:
            return [record_error("MISSING_ARGUMENT", "Id not specified in an update call", [])]
        if not is_salesforce_id(target):
            message = f"Activity ID: id value of incorrect type: {target}"
            return [record_error("MALFORMED_ID", message, ["Id"])]
        if target in self.deleted:
            return [record_error("ENTITY_IS_DELETED", "entity is deleted", [])]
        if self._find(target) is None:
            return [record_error("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [])]
        return []

    def _saving_errors(self, task: dict[str, Any]) -> list[dict[str, Any]]:
        """What the org refuses of the Task as it would be saved: cross-field rules, then validation rules."""
        errors = integrity_errors(task)
        for rule in self.validation_rules:
            value = task.get(rule["field"])
            if isinstance(value, str) and rule["contains"] in value:
                errors.append(record_error("FIELD_CUSTOM_VALIDATION_EXCEPTION",
                                           rule.get("message", "validation rule"), [rule["field"]]))
        return errors

    def _commit(self, target: str | None, values: dict[str, Any], errors: list[dict[str, Any]],
                creating: bool) -> dict[str, Any]:
        if errors:
            return {"id": target, "success": False, "errors": errors}
        if creating:
            return {"id": self._insert(values)["Id"], "success": True, "errors": []}
        task = self._find(str(target))
        assert task is not None
        _touch(task, values)
        return {"id": task["Id"], "success": True, "errors": []}

    def _query(self, soql: str, version: str) -> Response:
        try:
            query = parse_soql(soql)
        except SoqlError as exc:
            return Response(400, [{"message": str(exc), "errorCode": exc.code}])
        rows = query.run(self.tasks.values())
        records = [{"attributes": self._attributes(str(row.get("Id") or ""), version), **row} for row in rows]
        return self._page(f"01gD{next(self._locators):011d}", records, 0, len(records), version)

    def _query_more(self, locator: str, version: str) -> Response:
        """`GET query/<locator>-<offset>`: the next page of an earlier query (its rows as of then)."""
        cursor, _, offset = locator.rpartition("-")
        rows = self._cursors.get(cursor)
        if rows is None or not offset.isdigit() or int(offset) >= len(rows):
            return Response(400, sf_error("INVALID_QUERY_LOCATOR", "invalid query locator"))
        return self._page(cursor, rows, int(offset), len(rows), version)

    def _page(self, cursor: str, records: list[dict[str, Any]], offset: int, total: int, version: str) -> Response:
        """≤ QUERY_BATCH_SIZE records; `done` false and `nextRecordsUrl` when more remain."""
        end = offset + QUERY_BATCH_SIZE
        body: dict[str, Any] = {"totalSize": total, "done": end >= total, "records": records[offset:end]}
        if end < total:
            self._cursors[cursor] = records
            body["nextRecordsUrl"] = f"/services/data/v{version}/query/{cursor}-{end}"
        else:
            self._cursors.pop(cursor, None)
        return Response(200, body)

    # -- records ---------------------------------------------------------------------------
    def _insert(self, values: dict[str, Any]) -> dict[str, Any]:
        task_id = values.pop("Id", None) or f"00T8d{next(self._ids):010d}QAA"
        now = _now()
        task = {"Id": task_id, "OwnerId": USER_ID, "IsClosed": values.get("Status") == "Completed",
                **values, "CreatedDate": now, "LastModifiedDate": now}
        self.tasks[task_id] = task
        return task

    def _find(self, task_id: str) -> dict[str, Any] | None:
        # 15-character ids are the case-sensitive prefix of the 18-character form.
        if len(task_id) == 15:
            return next((t for i, t in self.tasks.items() if i[:15] == task_id), None)
        return self.tasks.get(task_id)

    @staticmethod
    def _attributes(task_id: str, version: str) -> dict[str, str]:
        return {"type": "Task", "url": f"/services/data/v{version}/sobjects/Task/{task_id}"}


def _touch(task: dict[str, Any], values: dict[str, Any]) -> None:
    task.update(values)
    task["IsClosed"] = task.get("Status") == "Completed"
    task["LastModifiedDate"] = _now()


def _as_rest_error(error: dict[str, Any]) -> dict[str, Any]:
    """Per-record error → the single-record REST shape `{"message", "errorCode", "fields"}`."""
    return {"message": error["message"], "errorCode": error["statusCode"], "fields": error["fields"]}
