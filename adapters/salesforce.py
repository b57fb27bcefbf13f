"""Salesforce target: one Task per interaction, created once, then updated by its stored Id.

Idempotency does not come from upsert (Activity fields cannot be External IDs): `CallObject`
carries the interaction id, and every item without a stored Task Id (never seen, state lost or
expired, a replay, an uncertain create) is looked up by it before anything is created, a batch
at a time (`adapters.salesforce_lookup`); a Task found is updated, never created again. Writes go
through sObject Collections (`composite/sobjects`, ≤ 200 records a request, allOrNone=false) and
every record's result is handled on its own.

The client is built from a fetched token (`session_id`), so simple-salesforce never re-logs in by
itself; this adapter re-logs in once on INVALID_SESSION_ID. Target-level errors pause the target
(`TargetUnavailableError`): a refused login, a 401 right after a new login, a 403 or 404 that the
API root repeats; the next attempt logs in again (reading the secret file again).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import requests
import structlog
from simple_salesforce.api import Salesforce
from simple_salesforce.exceptions import SalesforceError, SalesforceExpiredSession

from adapters.attributes import FieldValue
from adapters.base import (
    BudgetExhausted,
    BudgetLimits,
    Failed,
    PermanentSyncError,
    Retry,
    RetryableSyncError,
    Skipped,
    Synced,
    SyncError,
    SyncItem,
    SyncOutcome,
    TargetTraits,
    TargetUnavailableError,
    outcome_for_error,
)
from adapters.http_session import RecordingSession, transport_error
from adapters.salesforce_auth import SalesforceCredentials, fetch_access_token
from adapters.salesforce_fields import FieldSpec, parse_describe, task_fields
from adapters.salesforce_lookup import (
    FoundTask,
    chunk_ids,
    estimated_requests,
    ids_to_look_up,
    lookup_soql,
    tasks_by_call_object,
)
from schemas.common import Trigger
from schemas.snapshot import LogSnapshot

log = structlog.get_logger(__name__)

COLLECTION_LIMIT = 200
FINAL_LINGER_S = 1.0
"""How long a finalized log may wait for others to fill a collection request (its update is due, not urgent)."""
_WANTED = frozenset({Trigger.CREATED, Trigger.STATE_CHANGED, Trigger.OPENED, Trigger.FINALIZED})
_CREATE_ONLY_FIELDS = frozenset({"TaskSubtype"})
_RETRYABLE_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})


def error_code(content: Any) -> tuple[str, str]:
    """(errorCode, message) from a Salesforce error body: a list of errors or one object."""
    first = content[0] if isinstance(content, list) and content else content
    if isinstance(first, dict):
        code = first.get("errorCode") or first.get("statusCode") or first.get("error") or "UNKNOWN"
        return str(code), str(first.get("message", ""))
    return "UNKNOWN", str(content)[:200]


def record_outcome(result: Mapping[str, Any], version: int, remote_id: str | None) -> SyncOutcome:
    """One sObject Collections result → the item's outcome."""
    if result.get("success"):
        return Synced(remote_id=str(result.get("id") or remote_id), version=version)
    code, message = error_code(result.get("errors") or [])
    if code in _RETRYABLE_RECORD_CODES:
        budget = code == "REQUEST_LIMIT_EXCEEDED"
        return Retry(retry_after_s=None, error=f"{code}: {message}", budget_exhausted=budget)
    return Failed(code=code, message=message)


def chunked(items: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SalesforceTarget:
    name = "salesforce"

    def __init__(
        self,
        *,
        instance_url: str,
        credentials: SalesforceCredentials,
        session: RecordingSession,
        api_version: str,
        attribute_fields: Mapping[str, str],
        budget_pause_s: float = 60.0,
        budget: BudgetLimits | None = None,
        concurrent_calls: int = 1,
    ) -> None:
        self._instance_url = instance_url
        self._credentials = credentials
        self._session = session
        self._api_version = api_version
        self._attribute_fields = dict(attribute_fields)
        self._budget_pause_s = budget_pause_s
        # Calls beside one under way wait for a full collection's worth: smaller ones would spend more
        # requests of the API budget on the same records. Finalized logs (the window closed: nobody is
        # waiting on that update) wait up to FINAL_LINGER_S for others: they come from the fold stage's
        # finalizer a few at a tick, and alone would each cost a request (docs/benchmarks.md).
        self.traits = TargetTraits(budget=budget, concurrent_calls=concurrent_calls, side_call_items=COLLECTION_LIMIT,
                                   final_linger_s=FINAL_LINGER_S, linger_items=COLLECTION_LIMIT)
        self._client: Salesforce | None = None
        self._specs: dict[str, FieldSpec] | None = None

    def wants(self, snapshot: LogSnapshot) -> bool:
        """The triggers of DESIGN.md, from the first connect on: a log created by an event that came before
        its connect (out of order) gets its Task at the connect, as the call it is (TaskSubtype and the call
        fields are known then; Salesforce cannot change a Task's subtype later), or at finalization."""
        if snapshot.trigger not in _WANTED:
            return False
        return snapshot.connected_at is not None or snapshot.finalized

    def estimate_requests(self, items: Sequence[SyncItem]) -> int:
        """Batched CallObject look-ups, then sObject Collections (`COLLECTION_LIMIT` records a request)."""
        return estimated_requests(items, COLLECTION_LIMIT)

    def close(self) -> None:
        self._session.close()

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        outcomes: list[SyncOutcome | None] = [
            None if self.wants(item.snapshot) else Skipped(f"trigger {item.snapshot.trigger.value}")
            for item in batch
        ]
        due = [index for index, outcome in enumerate(outcomes) if outcome is None]
        try:
            specs = self._task_specs()
            remote_ids = self._known_task_ids(batch, due, outcomes)
        except SyncError as exc:
            return [outcome or outcome_for_error(exc) for outcome in outcomes]
        due = [index for index in due if outcomes[index] is None]
        records = [task_fields(item.snapshot, self._attribute_fields, specs) for item in batch]
        updates = [index for index in due if remote_ids[index] is not None]
        creates = [index for index in due if remote_ids[index] is None]
        requests_due = [("PATCH", chunk) for chunk in chunked(updates, COLLECTION_LIMIT)]
        requests_due += [("POST", chunk) for chunk in chunked(creates, COLLECTION_LIMIT)]
        for position, (method, chunk) in enumerate(requests_due):
            try:
                self._write(method, chunk, batch, records, remote_ids, outcomes)
            except SyncError as exc:
                self._fail_rest(exc, requests_due[position:], remote_ids, outcomes)
                break
        return [outcome or Retry(None, "not attempted") for outcome in outcomes]

    def _known_task_ids(
        self, batch: Sequence[SyncItem], due: Sequence[int], outcomes: list[SyncOutcome | None]
    ) -> list[str | None]:
        """The stored Task Id, else the one found by `CallObject` (batched look-ups), else None.

        A found Task that is closed already holds a final log: a snapshot that is not final (an
        older version, replayed without sync state) is Synced without a write instead of reopening it.
        """
        found: dict[str, FoundTask] = {}
        for chunk in chunk_ids(ids_to_look_up(batch, due)):
            found.update(self._find_tasks(chunk))
        remote_ids: list[str | None] = [None] * len(batch)
        for index in due:
            snapshot, state = batch[index].snapshot, batch[index].target_state
            task = None if state.remote_id is not None else found.get(snapshot.interaction_id)
            remote_ids[index] = state.remote_id or (task.task_id if task else None)
            if task is not None and task.closed and not snapshot.finalized:
                outcomes[index] = Synced(remote_id=task.task_id, version=snapshot.version)
        return remote_ids

    def _find_tasks(self, interaction_ids: Sequence[str]) -> dict[str, FoundTask]:
        records = self._query_all(lookup_soql(interaction_ids))
        chosen, duplicates = tasks_by_call_object(records)
        for interaction_id, count in duplicates.items():
            log.warning("salesforce.duplicate_tasks", interaction_id=interaction_id, count=count)
        return chosen

    def _query_all(self, soql: str) -> list[dict[str, Any]]:
        """Every record of a query, following `nextRecordsUrl` (Salesforce answers ≤ 2,000 a page)."""
        page = self._call("GET", "query", params={"q": soql}) or {}
        records = list(page.get("records") or [])
        while not page.get("done", True) and page.get("nextRecordsUrl"):
            locator = str(page["nextRecordsUrl"]).rsplit("/query/", 1)[-1]
            page = self._call("GET", f"query/{locator}") or {}
            records.extend(page.get("records") or [])
        return records

    def _task_specs(self) -> dict[str, FieldSpec]:
        if self._specs is None:
            self._specs = parse_describe(self._call("GET", "sobjects/Task/describe") or {})
        return self._specs

    def _write(
        self,
        method: str,
        chunk: Sequence[int],
        batch: Sequence[SyncItem],
        records: Sequence[dict[str, FieldValue | None]],
        remote_ids: Sequence[str | None],
        outcomes: list[SyncOutcome | None],
    ) -> None:
        body = [self._collection_record(records[index], remote_ids[index]) for index in chunk]
        # encoded here (orjson) rather than by requests' `json=` (the standard library's encoder, ~4 % of the
        # sync worker's time at 500 interactions/s); values are str, int, finite float or bool
        payload = orjson.dumps({"allOrNone": False, "records": body})
        results = self._call(method, "composite/sobjects", data=payload)
        if not isinstance(results, list) or len(results) != len(chunk):
            raise RetryableSyncError("composite/sobjects: unexpected response", uncertain=True)
        for index, result in zip(chunk, results, strict=True):
            outcome = record_outcome(result, batch[index].snapshot.version, remote_ids[index])
            if isinstance(outcome, Failed):
                log.warning(
                    "salesforce.record_failed",
                    interaction_id=batch[index].snapshot.interaction_id,
                    code=outcome.code,
                )
            outcomes[index] = outcome

    @staticmethod
    def _collection_record(fields: Mapping[str, FieldValue | None], task_id: str | None) -> dict[str, Any]:
        record: dict[str, Any] = {"attributes": {"type": "Task"}}
        if task_id is None:
            record.update(fields)
        else:
            record.update({key: value for key, value in fields.items() if key not in _CREATE_ONLY_FIELDS})
            record["id"] = task_id
        return record

    @staticmethod
    def _fail_rest(
        exc: SyncError,
        requests_due: Sequence[tuple[str, Sequence[int]]],
        remote_ids: Sequence[str | None],
        outcomes: list[SyncOutcome | None],
    ) -> None:
        """The failed request's records get the error; records of later requests were never sent."""
        _, failed_chunk = requests_due[0]
        for index in failed_chunk:
            outcomes[index] = outcome_for_error(exc, remote_ids[index])
        later = outcome_for_error(exc)
        if isinstance(later, Retry):
            later = Retry(
                later.retry_after_s, f"not sent: {later.error}", budget_exhausted=later.budget_exhausted
            )
        for _, chunk in requests_due[1:]:
            for index in chunk:
                outcomes[index] = later

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        """One REST call; INVALID_SESSION_ID re-logs in once, client errors become SyncErrors."""
        for attempt in (1, 2):
            client = self._connected()
            try:
                return client.restful(path, method=method, **kwargs)
            except SalesforceExpiredSession as exc:
                self._client = None
                if attempt == 2:
                    raise TargetUnavailableError("INVALID_SESSION_ID", "refused right after a new login") from exc
                log.info("salesforce.relogin", reason="INVALID_SESSION_ID")
            except SalesforceError as exc:
                raise self._translate(exc, client) from exc
            except requests.RequestException as exc:
                raise transport_error(exc) from exc
        raise AssertionError("unreachable")

    @staticmethod
    def _api_root_refused(client: Salesforce) -> bool:
        """A 403 or 404 the API root repeats is about the org, the user or the instance, not a record
        (API disabled, insufficient access, an unknown instance): probe `GET /services/data/vNN.N/`."""
        try:
            client.restful("", method="GET")
        except SalesforceError as exc:
            return exc.status in (401, 403, 404)
        except requests.RequestException:
            return False
        return False

    def _connected(self) -> Salesforce:
        if self._client is None:
            token = fetch_access_token(self._session, self._credentials)
            self._client = Salesforce(
                instance_url=self._instance_url,
                session_id=token,
                session=self._session,
                version=self._api_version,
            )
        return self._client

    def _translate(self, exc: SalesforceError, client: Salesforce) -> SyncError:
        code, message = error_code(exc.content)
        retry_after_s = self._session.last_retry_after_s()
        if exc.status == 429 or exc.status >= 500:
            return RetryableSyncError(f"HTTP {exc.status} {code}", retry_after_s)
        if code == "REQUEST_LIMIT_EXCEEDED":
            return BudgetExhausted(f"{code}: {message}", retry_after_s or self._budget_pause_s)
        if exc.status in (403, 404) and self._api_root_refused(client):
            return TargetUnavailableError(code if code != "UNKNOWN" else f"HTTP_{exc.status}", message[:200])
        if exc.status in (400, 403, 404):
            return PermanentSyncError(code, message)
        return RetryableSyncError(f"HTTP {exc.status} {code}", retry_after_s)
