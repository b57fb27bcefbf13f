"""Webhook target: the snapshot POSTed as signed JSON to the customer's own system.

Body: `{"event": <name>, "id": <stored receiver id or null>, "log": <snapshot>}`.
Signed as Standard Webhooks (`adapters.webhook_signature`): `webhook-id` (deterministic per
interaction version: the receiver's idempotency key, the same on every attempt),
`webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`.
Deprecated, sent for one more version: `X-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
which covers the body only (a delivery replayed later still verifies). `Idempotency-Key:
<interaction id>:v<version>` stays (an id beyond printable ASCII percent-encoded: a header carries
no more). A receiver answering `{"id": "..."}` gets that id back on every later call for the
interaction. `traceparent` (W3C Trace Context) is sent when the event that made the snapshot carried one.
Coalescing in the sync loop sends only the latest version per interaction, named after the strongest
change among those due at once (`event_name`): the first delivery that carries the disconnect is
`interactionDisconnected`.

With no stored state the receiver is not asked anything first: the `webhook-id` is its look-up
(a receiver that already processed that id answers 2xx without processing it again). So a delivery
whose answer was lost before any id was known is sent again as it was before a newer version goes
(`WebhookTarget._answer_of_lost_delivery`): the receiver's answer to it carries the id the lost one did.
"""

from __future__ import annotations

import hashlib
import hmac
import string
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from adapters.base import (
    Failed,
    Retry,
    RetryableSyncError,
    Synced,
    SyncError,
    SyncItem,
    SyncOutcome,
    TargetTraits,
    TargetUnavailableError,
    outcome_for_error,
    parse_retry_after,
)
from adapters.webhook_signature import signed_headers, signing_key, webhook_id
from schemas.common import State, Trigger
from schemas.snapshot import LogSnapshot

SIGNATURE_HEADER = "X-Signature"  # deprecated: the body only, no timestamp
_HEADER_SAFE = string.punctuation.replace("%", "")
"""Printable ASCII a header value carries as it is (`%` is the escape, so it is escaped too)."""
# Answers about the receiver, not the record: our signature or credentials refused, nothing at that
# URL. The target pauses on these; every other 4xx dead-letters the record.
TARGET_LEVEL_STATUSES = frozenset({401, 403, 404, 407, 410})


def event_name(snapshot: LogSnapshot) -> str:
    """The event name agent-client integrators know, from the snapshot's trigger and state.

    A disconnected snapshot whose trigger is `created` covers the disconnect too (the call's events
    were folded, or coalesced, into one snapshot; or the log began with the disconnect): it is the
    receiver's first word of the disconnect, so it is `interactionDisconnected` as well."""
    if snapshot.finalized or snapshot.trigger == Trigger.FINALIZED:
        return "interactionRemoved"
    if snapshot.state != State.DISCONNECTED:
        return "interactionChanged"
    if snapshot.trigger in (Trigger.STATE_CHANGED, Trigger.CREATED):
        return "interactionDisconnected"
    return "interactionChangedAfterDisconnect"


def sign(secret: bytes, body: bytes) -> str:
    """The deprecated `X-Signature` value."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def verify_signature(secret: bytes, body: bytes, header: str) -> bool:
    """What a receiver does; constant-time comparison."""
    return hmac.compare_digest(sign(secret, body), header)


def request_body(snapshot: LogSnapshot, receiver_id: str | None) -> bytes:
    """`{"event": …, "id": …, "log": <the snapshot's JSON>}`, compact, UTF-8: the snapshot is serialized
    by its model's compiled serializer straight into the body (the same JSON as `model_dump(mode="json")`)."""
    head = orjson.dumps({"event": event_name(snapshot), "id": receiver_id})
    return b"".join((head[:-1], b',"log":', snapshot.__pydantic_serializer__.to_json(snapshot), b"}"))


class Response(Protocol):
    """What the target reads of an answer (`adapters.http_post.Answer`)."""


    @property
    def status_code(self) -> int: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    @property
    def text(self) -> str: ...
    def json(self) -> Any: ...


class Session(Protocol):
    """What the target posts through (`adapters.http_post.Poster`); transport failures raise `SyncError`s."""

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> Response: ...
    def close(self) -> None: ...


def idempotency_key(interaction_id: str, version: int) -> str:
    """`<interaction id>:v<version>`. An id with characters an HTTP header cannot carry (beyond printable
    ASCII: `ü`, a control character) is percent-encoded as UTF-8, so it cannot stop its delivery."""
    if interaction_id.isascii() and interaction_id.isprintable():
        return f"{interaction_id}:v{version}"
    return f"{quote(interaction_id, safe=_HEADER_SAFE)}:v{version}"


def receiver_id_from(response: Response, previous: str | None) -> str | None:
    try:
        answer: Any = response.json()
    except ValueError:
        return previous
    found = answer.get("id") if isinstance(answer, dict) else None
    return str(found) if found not in (None, "") else previous


class WebhookTarget:
    name = "webhook"
    traits = TargetTraits()

    def __init__(self, *, url: str, secret: str, session: Session, concurrency: int = 8) -> None:
        self._url = url
        self._secret = secret.encode()  # the deprecated X-Signature's key, as it always was
        self._signing_key = signing_key(secret)
        self._session = session
        # At most the poster's pool of 10 connections, so no connection is thrown away.
        self._concurrency = max(1, min(concurrency, 10))
        self._pool = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="webhook")
        self._unanswered: dict[str, _Unanswered] = {}  # interaction id → its delivery whose answer was lost
        self._lock = threading.Lock()

    def wants(self, snapshot: LogSnapshot) -> bool:
        return True

    def estimate_requests(self, items: Sequence[SyncItem]) -> int:
        return len(items)  # one POST per snapshot; the look-up is its idempotency key, no request of its own

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._session.close()

    def sync(self, batch: Sequence[SyncItem]) -> list[SyncOutcome]:
        """Posts in waves of `concurrency` (a batch holds one snapshot per interaction, so per-interaction
        order is kept); after a wave with a transient failure the rest of the batch waits."""
        outcomes: list[SyncOutcome] = []
        for start in range(0, len(batch), self._concurrency):
            wave = batch[start : start + self._concurrency]
            results = list(self._pool.map(self._post_safely, wave)) if len(wave) > 1 else [self._post_safely(wave[0])]
            outcomes.extend(outcome for outcome, _ in results)
            failures = [error for _, error in results if error is not None]
            if failures:
                # The receiver is struggling: the rest of the batch waits rather than piling on.
                not_sent = Retry(getattr(failures[0], "retry_after_s", None), f"not sent: {failures[0]}")
                outcomes.extend(not_sent for _ in batch[start + len(wave) :])
                break
        return outcomes

    def _post_safely(self, item: SyncItem) -> tuple[SyncOutcome, SyncError | None]:
        try:
            return self._post(item), None
        except SyncError as exc:
            return outcome_for_error(exc), exc

    def _post(self, item: SyncItem) -> SyncOutcome:
        snapshot = item.snapshot
        receiver_id = item.target_state.remote_id
        if receiver_id is None:
            receiver_id = self._answer_of_lost_delivery(snapshot)
        body = request_body(snapshot, receiver_id)
        try:
            response = self._deliver(snapshot.interaction_id, snapshot.version, body, item.traceparent)
        except RetryableSyncError as exc:
            if exc.uncertain and receiver_id is None:
                self._remember_unanswered(snapshot, body, item.traceparent)
            raise
        status = response.status_code
        if status >= 400:
            return Failed(code=f"HTTP_{status}", message=response.text[:200])
        if status >= 300:
            return Failed(code=f"HTTP_{status}", message="redirects are not followed for signed posts")
        with self._lock:
            self._unanswered.pop(snapshot.interaction_id, None)
        return Synced(remote_id=receiver_id_from(response, receiver_id), version=snapshot.version)

    def _deliver(self, interaction_id: str, version: int, body: bytes, traceparent: str | None) -> Response:
        """One signed POST; 429/5xx and target-level answers raise, any other answer is returned."""
        message_id = webhook_id(interaction_id, version)
        headers = {
            "Content-Type": "application/json",
            **signed_headers(self._signing_key, message_id, int(time.time()), body),
            SIGNATURE_HEADER: sign(self._secret, body),
            "Idempotency-Key": idempotency_key(interaction_id, version),
        }
        if traceparent is not None:  # W3C Trace Context: the receiver's work joins the event's trace
            headers["traceparent"] = traceparent
        response = self._session.post(self._url, data=body, headers=headers)  # transport failures: SyncError
        status = response.status_code
        if status == 429 or status >= 500:
            retry_after_s = parse_retry_after(response.headers.get("Retry-After"))
            raise RetryableSyncError(f"HTTP {status}", retry_after_s)
        if status in TARGET_LEVEL_STATUSES:
            raise TargetUnavailableError(f"HTTP_{status}", response.text[:200])
        return response

    def _remember_unanswered(self, snapshot: LogSnapshot, body: bytes, traceparent: str | None) -> None:
        with self._lock:
            self._unanswered.pop(snapshot.interaction_id, None)
            self._unanswered[snapshot.interaction_id] = _Unanswered(snapshot.version, body, traceparent)
            while len(self._unanswered) > UNANSWERED_KEPT:
                del self._unanswered[next(iter(self._unanswered))]

    def _answer_of_lost_delivery(self, snapshot: LogSnapshot) -> str | None:
        """The receiver id of an earlier delivery of this interaction whose answer was lost (a timeout, a
        dropped connection), when a newer version is about to go: that delivery is sent again as it was,
        same `webhook-id` and body, and the receiver answers it as the first time (docs/webhooks.md).
        Without this, a receiver that created its record on the lost delivery and answers its id only
        then would never have it sent back. None when there is no such delivery or no id in the answer."""
        with self._lock:
            lost = self._unanswered.get(snapshot.interaction_id)
        if lost is None or lost.version >= snapshot.version:
            return None
        response = self._deliver(snapshot.interaction_id, lost.version, lost.body, lost.traceparent)
        with self._lock:
            self._unanswered.pop(snapshot.interaction_id, None)
        return receiver_id_from(response, None) if response.status_code < 300 else None


UNANSWERED_KEPT = 10_000
"""Deliveries whose answer was lost kept (in memory, newest) to be sent again before a newer version."""


@dataclass(frozen=True)
class _Unanswered:
    version: int
    body: bytes
    traceparent: str | None
