"""DLQ headers: what the stages write is what `ilog dlq` reads back."""

from __future__ import annotations

from schemas.events import Rejection, RejectReason
from schemas.snapshot import LogSnapshot
from worker.core.batch import Record
from worker.kafka.dead_letters import (
    DeadLetter,
    invalid_snapshot_headers,
    rejection_headers,
    sync_failure_headers,
)
from worker.sync.batch import SyncRecord


def _letter(headers: list[tuple[str, bytes | None]], key: bytes | None = None) -> DeadLetter:
    return DeadLetter("events.dlq", 0, 9, None, key, b"{}", headers)


def test_a_fold_rejection_reads_back_with_its_reason_subject_and_origin() -> None:
    rejection = Rejection("e-1", "conv-1", RejectReason.LATE_EDIT, "after the deadline")
    record = Record("events", 2, 41, b"{}", [("ce_id", b"e-1"), ("reason", b"spoofed")], rejection)
    letter = _letter(rejection_headers(record, rejection))
    assert ("late_edit", "conv-1", "events[2]@41", "after the deadline") == (
        letter.reason, letter.interaction, letter.original, letter.header("message"))
    assert [("ce_id", b"e-1")] == [(k, v) for k, v in letter.headers if k == "ce_id"]  # kept for replay
    assert 1 == sum(1 for k, _ in letter.headers if k == "reason")  # ours replaces a producer's header


def test_a_sync_failure_reads_back_as_target_and_code() -> None:
    snapshot = LogSnapshot.model_validate({"interaction_id": "conv-2", "version": 5, "trigger": "finalized"})
    record = SyncRecord("upserts", 1, 7, None, b"{}", snapshot)
    letter = _letter(sync_failure_headers(snapshot, record, "crm", "STRING_TOO_LONG", "Subject"))
    assert ("crm:STRING_TOO_LONG", "conv-2", "upserts[1]@7", "5") == (
        letter.reason, letter.interaction, letter.original, letter.header("version"))
    shown = letter.as_json()
    assert (5, 1, 7) == (shown["version"], shown["original_partition"], shown["original_offset"])  # numbers, as in logs


def test_an_undecodable_snapshot_reads_back_as_invalid() -> None:
    record = SyncRecord("upserts", 0, 3, None, b"{", None, "not JSON")
    letter = _letter(invalid_snapshot_headers(record, record.error), key=b"conv-3")
    assert ("invalid", "conv-3", "upserts[0]@3", "not JSON") == (
        letter.reason, letter.interaction, letter.original, letter.header("message"))
