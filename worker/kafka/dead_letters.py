"""Dead letters: every header the stages write on a DLQ record, and the reading of them, in one place.

`<events>.dlq` (fold rejections): `reason`, `message`, `event_id`, `subject`, `original_*`, plus the
original headers (a binary-mode event needs them to be replayed); a copy cut to fit the DLQ topic adds
`truncated: true` and `original_size`. `<upserts>.dlq` (sync failures):
`target`, `code`, `message`, `interaction_id`, `version`, `original_*`; or `reason=invalid` and
`code=INVALID_SNAPSHOT` for a snapshot that did not decode. A replayed letter's message carries
`replayed_from`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.decode import Rejection
from schemas.snapshot import LogSnapshot
from worker.core.batch import Record
from worker.kafka.clients import Headers, Positioned

OUR_HEADERS = frozenset({  # what replay strips before resending
    "reason", "message", "original_topic", "original_partition", "original_offset", "event_id", "subject",
    "target", "code", "interaction_id", "replayed_from", "truncated", "original_size",
})
_CUT_HEADER_BYTES = 1024


def origin_headers(record: Positioned) -> Headers:
    """Where the dead record was read."""
    return [
        ("original_topic", record.topic.encode()),
        ("original_partition", str(record.partition).encode()),
        ("original_offset", str(record.offset).encode()),
    ]


def rejection_headers(record: Record, rejection: Rejection) -> Headers:
    """The original headers (binary-mode events need them to be replayed) plus why and from where."""
    ours: Headers = [
        ("reason", rejection.reason.value.encode()),
        ("message", _utf8(rejection.message)),
        *origin_headers(record),
    ]
    if rejection.event_id is not None:
        ours.append(("event_id", _utf8(rejection.event_id)))
    if rejection.subject is not None:
        ours.append(("subject", _utf8(rejection.subject)))
    kept = [(name, value) for name, value in record.headers if name not in {n for n, _ in ours}]
    return kept + ours


def rejection_message(record: Record, rejection: Rejection, max_value_bytes: int) -> tuple[bytes | None, Headers]:
    """The DLQ copy of a rejected record: value and headers, cut to fit the DLQ topic when they are too large.

    A value over `max_value_bytes` is cut to that many bytes; original headers over it together are
    cut to `_CUT_HEADER_BYTES` each. A cut copy says so: `truncated: true` and `original_size` (bytes
    of the value). The `original_topic`/`_partition`/`_offset` headers always point at the whole one.
    """
    headers = rejection_headers(record, rejection)
    value = record.value
    value_over = value is not None and len(value) > max_value_bytes
    headers_over = sum(len(name) + len(raw or b"") for name, raw in record.headers) > max_value_bytes
    if not value_over and not headers_over:
        return value, headers
    if headers_over:
        headers = [(name, raw[:_CUT_HEADER_BYTES] if raw else raw) for name, raw in headers]
    original_size = len(value) if value is not None else 0
    cut = value[:max_value_bytes] if value is not None else None
    return cut, [*headers, ("truncated", b"true"), ("original_size", str(original_size).encode())]


def _utf8(text: str) -> bytes:
    """Header text; a lone surrogate (possible in what a rejection quotes) becomes `?`."""
    return text.encode("utf-8", errors="replace")


def sync_failure_headers(snapshot: LogSnapshot, record: Positioned, target: str, code: str, message: str) -> Headers:
    """A target's permanent failure; `message` already redacted by the caller. Its `reason` is
    `<target>:<code>`, so every letter of either DLQ carries a `reason` header."""
    return [
        ("reason", f"{target}:{code}".encode()),
        ("target", target.encode()),
        ("code", code.encode()),
        ("message", message.encode()),
        ("interaction_id", snapshot.interaction_id.encode()),
        ("version", str(snapshot.version).encode()),
        *origin_headers(record),
    ]


def invalid_snapshot_headers(record: Positioned, error: str | None) -> Headers:
    return [
        ("reason", b"invalid"),
        ("code", b"INVALID_SNAPSHOT"),
        ("message", (error or "invalid").encode()),
        *origin_headers(record),
    ]


@dataclass
class DeadLetter:
    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    headers: Headers
    replayed: bool = False

    def header(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return None if value is None else value.decode("utf-8", errors="replace")
        return None

    @property
    def position(self) -> str:
        return f"{self.topic}:{self.partition}:{self.offset}"

    @property
    def reason(self) -> str:
        """The fold's reason, or `<target>:<code>` for a sync failure."""
        reason = self.header("reason")
        if reason is not None:
            return reason
        target, code = self.header("target"), self.header("code")
        return f"{target}:{code}" if target or code else "unknown"

    @property
    def interaction(self) -> str:
        return self.header("subject") or self.header("interaction_id") or (
            self.key.decode("utf-8", errors="replace") if self.key else "")

    @property
    def original(self) -> str:
        topic = self.header("original_topic") or "?"
        return f"{topic}[{self.header('original_partition')}]@{self.header('original_offset')}"

    def as_json(self) -> dict[str, object]:
        return {
            "dlq": self.position, "reason": self.reason, "message": self.header("message"),
            "interaction": self.interaction, "event_id": self.header("event_id"),
            "version": _int_or_none(self.header("version")), "original_topic": self.header("original_topic"),
            "original_partition": _int_or_none(self.header("original_partition")),
            "original_offset": _int_or_none(self.header("original_offset")),
            "replayed": self.replayed,
            "timestamp": None if self.timestamp_ms is None else datetime.fromtimestamp(
                self.timestamp_ms / 1000, UTC).isoformat(),
        }


def _int_or_none(text: str | None) -> int | None:
    return int(text) if text is not None and text.lstrip("-").isdigit() else None
