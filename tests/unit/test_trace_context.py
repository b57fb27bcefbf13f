"""The CloudEvents distributed-tracing attribute: read from events, carried to snapshots and log lines."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas.decode import decode_event
from schemas.events import Rejection, trace_context
from schemas.fast import decode_event_fast
from worker.core.batch import Record, TtlPolicy, plan_batch, record_trace
from worker.runtime.logs import trace_fields

T0 = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)
A = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
B = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


@pytest.mark.parametrize(("value", "kept"), [
    (A, True),
    ("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", True),  # a later version, same fields
    (A.upper(), False),  # hex must be lower case
    ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", False),  # version ff is invalid
    ("00-00000000000000000000000000000000-00f067aa0ba902b7-01", False),  # all-zero trace id
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", False),  # all-zero span id
    ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7", False),  # no flags
    (A + "\n", False),
    ("", False),
    (12, False),
    (None, False),
])
def test_a_traceparent_is_kept_only_when_well_formed(value: object, kept: bool) -> None:
    assert (value if kept else None) == trace_context(value)


def _event(kind: str, subject: str, n: int, traceparent: object = None, **extra: Any) -> bytes:
    document: dict[str, Any] = {"specversion": "1.0", "id": f"{subject}-{n}", "source": "/t", "type": kind,
                                "subject": subject, "time": (T0 + timedelta(seconds=n)).isoformat(), "sequence": n,
                                "data": extra.get("data", {})}
    if traceparent is not None:
        document["traceparent"] = traceparent
    return json.dumps(document).encode()


@pytest.mark.parametrize("traceparent", [A, A.upper(), 7, ["x"], {"a": 1}, "", None])
def test_both_decoders_read_the_same_traceparent_and_never_refuse_the_event_for_it(traceparent: object) -> None:
    value = _event("interaction.held", "c1", 1, traceparent)
    fast, model = decode_event_fast(value), decode_event(value)
    assert not isinstance(fast, Rejection)
    assert not isinstance(model, Rejection)
    assert (A if traceparent == A else None) == fast.traceparent == model.traceparent


def test_binary_mode_reads_the_ce_traceparent_header() -> None:
    headers = [("ce_specversion", b"1.0"), ("ce_id", b"e-1"), ("ce_source", b"/t"), ("ce_type", b"interaction.held"),
               ("ce_subject", b"c1"), ("ce_time", b"2026-11-27T10:00:00Z"), ("ce_traceparent", A.encode())]
    decoded = decode_event_fast(b"{}", headers)
    assert not isinstance(decoded, Rejection)
    assert A == decoded.traceparent


def _record(value: bytes, offset: int, headers: list[tuple[str, bytes | None]] | None = None) -> Record:
    return Record("events", 0, offset, value, headers or [], decode_event_fast(value, headers))


def _traces(records: list[Record]) -> dict[str, str | None]:
    plan = plan_batch(records, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=0)
    return {snap.interaction_id: snap.traceparent for _, snap in plan.snapshots}


def test_a_snapshot_carries_the_trace_of_the_newest_event_of_its_batch_that_had_one() -> None:
    connected = {"media": "voice", "direction": "inbound"}
    assert {"c1": B, "c2": A, "c3": None} == _traces([
        _record(_event("interaction.connected", "c1", 1, A, data=connected), 0),
        _record(_event("interaction.held", "c1", 2, B), 1),
        _record(_event("interaction.resumed", "c1", 3), 2),  # none of its own: B stays
        _record(_event("interaction.connected", "c2", 1, data=connected), 3, [("traceparent", A.encode())]),
        _record(_event("interaction.connected", "c3", 1, "not-a-trace", data=connected), 4),
    ])


def test_a_record_that_did_not_decode_still_names_its_trace_for_the_log_line() -> None:
    broken = _record(b"{not json", 0, [("traceparent", B.encode())])
    assert isinstance(broken.item, Rejection)
    assert B == record_trace(broken)
    binary: list[tuple[str, bytes | None]] = [("ce_specversion", b"1.0"), ("ce_type", b"nope"),
                                             ("ce_traceparent", A.encode())]
    assert A == record_trace(_record(b"{}", 1, binary))
    assert None is record_trace(_record(b"{not json", 2))


def test_log_fields_split_the_traceparent() -> None:
    assert {"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736", "span_id": "00f067aa0ba902b7"} == trace_fields(A)
    assert {} == trace_fields(None)
