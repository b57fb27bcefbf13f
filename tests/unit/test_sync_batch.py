"""Pure parts of the sync stage: decode, coalesce (strongest trigger kept), redaction."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.base import Failed
from schemas.common import Trigger
from schemas.snapshot import LogSnapshot
from worker.kafka.dead_letters import sync_failure_headers
from worker.sync.batch import (
    Pending,
    SyncRecord,
    coalesce,
    decode_snapshot,
    redact,
)
from worker.sync.queue import Work, WorkQueue


def snap(interaction_id: str, version: int, trigger: str, **extra: Any) -> LogSnapshot:
    return LogSnapshot.model_validate({"interaction_id": interaction_id, "version": version, "trigger": trigger,
                                       **extra})


def record(snapshot: LogSnapshot, offset: int, partition: int = 0) -> SyncRecord:
    return SyncRecord("up", partition, offset, 1_000 + offset, snapshot.to_json_bytes(), snapshot)


@pytest.mark.parametrize(
    ("triggers", "expected"),
    [
        (["created", "updated"], Trigger.CREATED),
        (["state_changed", "updated", "updated"], Trigger.STATE_CHANGED),
        (["updated", "opened", "updated"], Trigger.OPENED),
        (["updated", "state_changed", "finalized"], Trigger.FINALIZED),
        (["updated"], Trigger.UPDATED),
    ],
)
def test_coalescing_keeps_the_newest_version_with_the_strongest_trigger(
    triggers: list[str], expected: Trigger
) -> None:
    records = [record(snap("c-1", n, t, notes=f"v{n}"), n) for n, t in enumerate(triggers, start=1)]
    [pending] = coalesce(records)
    assert (len(triggers), expected, f"v{len(triggers)}") == (
        pending.snapshot.version, pending.snapshot.trigger, pending.snapshot.notes
    )
    newest = records[-1]
    assert (newest.topic, newest.partition, newest.offset, newest.value, None) == (
        pending.record.topic, pending.record.partition, pending.record.offset, pending.record.value,
        pending.record.snapshot)  # the model is the entry's alone


def test_a_released_entry_keeps_its_bytes_and_decodes_the_same_snapshot_with_its_trigger_again() -> None:
    records = [record(snap("c-1", 1, "state_changed", notes="first"), 1),
               record(snap("c-1", 2, "updated", notes="Grüße"), 2)]
    [pending] = coalesce(records)
    held = pending.snapshot
    pending.release()
    assert ("c-1", 2, Trigger.STATE_CHANGED) == (pending.interaction_id, pending.version, pending.trigger)
    again = pending.snapshot
    assert again is not held
    assert held == again
    assert again is pending.snapshot  # decoded once, then kept


def test_an_entry_shared_by_two_queues_serves_each_after_the_other_finished_with_it() -> None:
    [pending] = coalesce([record(snap("c-1", 1, "state_changed", notes="first"), 1),
                          record(snap("c-1", 2, "updated", notes="second"), 2)])
    fast, slow = WorkQueue(lambda snapshot: True), WorkQueue(lambda snapshot: True)
    for queue in (fast, slow):
        queue.put_many([Work(pending, [("up", 0, 2)], 0.0)])
    pending.release()
    [first] = fast.take(10)
    seen_first = first.entry.snapshot
    assert [("up", 0, 2)] == fast.finish(first, done=True)
    [second] = slow.take(10)
    assert (2, Trigger.STATE_CHANGED, "second") == (
        second.entry.snapshot.version, second.entry.snapshot.trigger, second.entry.snapshot.notes)
    assert seen_first == second.entry.snapshot


@pytest.mark.parametrize("short_queues", [True, False])
def test_a_finished_entry_stays_decoded_for_the_other_targets_only_while_the_queues_are_short(
    short_queues: bool,
) -> None:
    [pending] = coalesce([record(snap("c-1", 1, "state_changed", notes="first"), 1)])
    decoded = pending.snapshot
    fast, slow = (WorkQueue(lambda snapshot: True, lambda: short_queues) for _ in range(2))
    for queue in (fast, slow):
        queue.put_many([Work(pending, [("up", 0, 1)], 0.0)])
    [first] = fast.take(10)
    assert [("up", 0, 1)] == fast.finish(first, done=True)
    [second] = slow.take(10)
    slow.give_back([second])
    [second] = slow.take(10)
    assert (second.entry.snapshot is decoded) is short_queues  # else decoded again from the bytes
    assert second.entry.snapshot == decoded


def test_coalescing_ignores_an_older_version_read_after_a_newer_one_and_keeps_ids_apart() -> None:
    records = [record(snap("a", 3, "updated"), 0), record(snap("b", 1, "created"), 1),
               record(snap("a", 2, "state_changed"), 2)]
    assert [("a", 3, Trigger.STATE_CHANGED), ("b", 1, Trigger.CREATED)] == [
        (p.snapshot.interaction_id, p.snapshot.version, p.snapshot.trigger) for p in coalesce(records)
    ]


def test_undecodable_records_are_left_out_of_coalescing() -> None:
    bad = SyncRecord("up", 0, 7, None, b"{", None, "not JSON")
    assert [] == coalesce([bad])


def test_decode_reports_the_field_but_never_the_value() -> None:
    snapshot, error = decode_snapshot(b'{"interaction_id": "c", "version": 0, "trigger": "secret-note-text"}')
    assert snapshot is None
    assert error is not None
    assert "version" in error and "trigger" in error
    assert "secret-note-text" not in error


def test_dead_letter_headers_name_target_code_and_origin_and_cut_note_text() -> None:
    snapshot = snap("a", 4, "finalized", notes="The customer's card number is 4111 1111")
    entry = Pending(snapshot, record(snapshot, 42, partition=3))
    failed = Failed("STRING_TOO_LONG", "Description: data value too large: The customer's card number is 4111")
    headers = dict(sync_failure_headers(entry.snapshot, entry.record, "salesforce", failed.code,
                                        redact(failed.message, entry.snapshot)))
    assert {
        "reason": b"salesforce:STRING_TOO_LONG", "target": b"salesforce", "code": b"STRING_TOO_LONG",
        "message": b"Description: data value too large: [redacted]", "interaction_id": b"a", "version": b"4",
        "original_topic": b"up", "original_partition": b"3", "original_offset": b"42",
    } == headers


def test_redact_leaves_messages_without_note_text_alone() -> None:
    assert "Subject: too long" == redact("Subject: too long", snap("a", 1, "created", notes="hello there"))


_TRIGGERS = ["created", "state_changed", "opened", "updated", "finalized"]


@pytest.mark.parametrize("seed", range(20))
def test_putting_coalesced_entries_queues_what_putting_one_work_per_entry_queues(seed: int) -> None:
    """`put_entries` (the consumer loop's path, no `Work` per entry) against `put_many` of one work per entry:
    the same waiting works (version, strongest trigger, records, wait time) and the same unwanted records,
    over batches with new, merging, taken-and-finished and unwanted interactions."""
    import random

    rng = random.Random(seed)
    wants = lambda snapshot: snapshot.trigger != Trigger.UPDATED or snapshot.version % 3 == 0  # noqa: E731
    by_entries, by_works = WorkQueue(wants), WorkQueue(wants)
    versions: dict[str, int] = {}
    offset = 0
    for batch in range(8):
        records: list[SyncRecord] = []
        for _ in range(rng.randint(1, 12)):
            interaction_id = f"c-{rng.randint(1, 6)}"
            versions[interaction_id] = versions.get(interaction_id, 0) + 1
            offset += 1
            records.append(record(snap(interaction_id, versions[interaction_id], rng.choice(_TRIGGERS)), offset))
        entries = coalesce(records)
        positions: dict[str, list[tuple[str, int, int]]] = {}
        for r in records:
            assert r.snapshot is not None
            positions.setdefault(r.snapshot.interaction_id, []).append((r.topic, r.partition, r.offset))
        unwanted_entries = by_entries.put_entries(entries, positions, float(batch))
        unwanted_works = by_works.put_many(
            [Work(entry, list(positions[entry.interaction_id]), float(batch)) for entry in entries])
        assert unwanted_entries == [work.positions for work in unwanted_works]
        if rng.random() < 0.4:  # a target takes and finishes some
            for queue in (by_entries, by_works):
                for work in queue.take(2):
                    queue.finish(work, done=True)

    def waiting(queue: WorkQueue) -> list[tuple[str, int, Trigger, list[tuple[str, int, int]], float]]:
        return [(w.interaction_id, w.entry.version, w.entry.snapshot.trigger, w.positions, w.queued_at_s)
                for w in queue.take(100)]

    assert waiting(by_works) == waiting(by_entries)
