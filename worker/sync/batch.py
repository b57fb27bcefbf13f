"""One batch of the sync stage, without Kafka or HTTP: decode, coalesce, dead-letter headers.

Coalescing keeps the newest version per interaction but the strongest trigger seen for it in the
batch, so a target that reacts only to state changes (Salesforce) still sees the hold that a
later notes edit coalesced away.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from pydantic import ValidationError

from schemas.common import Trigger
from schemas.snapshot import LogSnapshot
from worker.core.batch import stronger

_MESSAGE_CHARS = 500


class SyncRecord(NamedTuple):
    """One consumed upsert; `snapshot` is None when it did not decode (`error` says why).

    A NamedTuple: one per consumed message (and one more per coalesced entry), built in a single
    `tuple.__new__` where a frozen dataclass pays an `object.__setattr__` per field."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int | None
    value: bytes | None
    snapshot: LogSnapshot | None
    error: str | None = None
    traceparent: str | None = None
    """The message's W3C `traceparent` header: the trace of the event that made the snapshot."""


class Pending:
    """The newest snapshot of one interaction in the batch (with the strongest trigger), and its record.

    What a queue needs of it (id, version, trigger) is kept beside the model; `release` drops the model
    while the snapshot waits in the targets' queues (its bytes, already validated, stay in the record),
    and `snapshot` decodes it again when a target reads it. A queued interaction then costs about a
    quarter of the memory (docs/benchmarks.md), which lets a slow target hold every open interaction.
    The stage releases only while some queue is long (`worker.sync.stage.KEEP_MODELS_BELOW`)."""

    __slots__ = ("_snapshot", "interaction_id", "record", "trigger", "version")

    def __init__(self, snapshot: LogSnapshot, record: SyncRecord) -> None:
        self._snapshot: LogSnapshot | None = snapshot
        self.record = record
        self.interaction_id = snapshot.interaction_id
        self.version = snapshot.version
        self.trigger = snapshot.trigger

    @property
    def snapshot(self) -> LogSnapshot:
        snapshot = self._snapshot
        if snapshot is None:
            decoded, error = decode_snapshot(self.record.value)
            if decoded is None:  # it decoded when consumed: only a changed model could refuse it now
                raise ValueError(f"snapshot of {self.interaction_id} v{self.version} no longer decodes: {error}")
            if decoded.trigger != self.trigger:
                decoded = decoded.model_copy(update={"trigger": self.trigger})
            self._snapshot = snapshot = decoded
        return snapshot

    def release(self) -> None:
        """Keep only the bytes until a target reads the snapshot again (nothing to drop without them)."""
        if self.record.value:
            self._snapshot = None


def decode_snapshot(value: bytes | None) -> tuple[LogSnapshot | None, str | None]:
    """The snapshot, or why not; the reason names fields, never their (possibly note) values."""
    if value is None:
        return None, "empty message"
    try:
        return LogSnapshot.model_validate_json(value), None
    except ValidationError as exc:
        problems = (
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}"
            for error in exc.errors(include_input=False, include_url=False)
        )
        return None, "; ".join(problems)[:_MESSAGE_CHARS]


def coalesce(records: Sequence[SyncRecord]) -> list[Pending]:
    """Newest version per interaction, strongest trigger of the batch; in first-seen order."""
    newest: dict[str, SyncRecord] = {}
    triggers: dict[str, Trigger] = {}
    for record in records:
        snap = record.snapshot
        if snap is None:
            continue
        interaction_id = snap.interaction_id
        seen = newest.get(interaction_id)
        if seen is None or seen.snapshot is None or snap.version >= seen.snapshot.version:
            newest[interaction_id] = record
        triggers[interaction_id] = stronger(triggers.get(interaction_id), snap.trigger)
    pending: list[Pending] = []
    for interaction_id, record in newest.items():
        snap = record.snapshot
        assert snap is not None
        if snap.trigger != triggers[interaction_id]:  # a copy only when the trigger changes
            snap = snap.model_copy(update={"trigger": triggers[interaction_id]})
        # the record without its model (the entry's alone, released while it waits); built directly:
        # `dataclasses.replace` costs several times a constructor call on this per-message path
        bare = SyncRecord(record.topic, record.partition, record.offset, record.timestamp_ms, record.value, None,
                          None, record.traceparent)
        pending.append(Pending(snap, bare))
    return pending


def redact(message: str, snapshot: LogSnapshot | None) -> str:
    """A target's error text may echo field values: cut it where note text would start."""
    if snapshot is not None:
        for text in (snapshot.notes, snapshot.wrapup_note):
            probe = (text or "").strip()[:24]
            if probe and probe in message:
                message = message[: message.index(probe)] + "[redacted]"
    return message[:_MESSAGE_CHARS]
