"""Fuzz the real path decode → batch plan (fold, encode state, encode snapshot) → finalize, with edge values.

Whatever comes in, every record gets exactly one answer (applied, duplicate or rejected), every state
written reads back equal, and every snapshot is JSON the snapshot model accepts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.common import Trigger
from schemas.decode import decode_event
from schemas.events import EVENT_TYPES
from schemas.snapshot import LogSnapshot
from worker.core.batch import BatchPlan, Record, TtlPolicy, plan_batch
from worker.core.fold import finalize, tombstone_of
from worker.core.snapshot_json import encoded_snapshot
from worker.core.state import InteractionLog, StoredLog, Tombstone, as_log
from worker.core.writes import Stored
from worker.fold.finalizer import closed

TTL = TtlPolicy(retention_ms=60_000, open_log_ttl_ms=600_000)
NOW_MS = int(datetime(2026, 11, 27, 10, tzinfo=UTC).timestamp() * 1000)

ODD_TEXT = ["", "\x00", "\ud800", "\udfff", "\u2028", "é", "😀", "\ufeff", "a" * 255, "a" * 256, "b" * 1001,
            "n" * 32_001, "x" * 300_000]
EDGE_INTS = [0, -1, 1, 2**31, 2**53 + 1, 2**63 - 1, 2**63, 2**64, -(2**63), 10**30]
TIMES = ["2026-11-27T10:00:00Z", "2026-11-27T10:04:59.999999Z", "2026-11-27T11:00:00+14:00", "0001-01-01T00:00:00Z",
         "9999-12-31T23:59:59.999999Z", "2099-01-01T00:00:00Z", "2026-11-27T10:00:00", "not a time", 1764237600]

text = st.sampled_from(ODD_TEXT) | st.text(max_size=20)
scalar = st.none() | st.booleans() | st.sampled_from(EDGE_INTS) | st.integers() | st.floats() | text
json_ish = st.recursive(scalar, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                        max_leaves=8)
ref = st.fixed_dictionaries({"system": st.sampled_from(["salesforce", "zendesk", "custom", "sap"]),
                             "type": st.sampled_from(["Contact", "Case", "user", ""]), "id": text})
data = st.fixed_dictionaries({}, optional={
    "media": st.sampled_from(["voice", "chat", "fax"]), "direction": st.sampled_from(["inbound", "outbound"]),
    "queue": text | st.none(), "agent_id": text, "customer": st.fixed_dictionaries({}, optional={
        "name": text, "address": text}), "name": ref | st.none(), "related_to": ref | st.none(), "record": ref,
    "notes": text | st.none(), "subject": text, "code": text, "note": text, "reason": text,
    "attributes": st.dictionaries(text, text | st.sampled_from(EDGE_INTS), max_size=4)
    | st.just({f"k{i}": "v" for i in range(101)}),
    "deep": json_ish,
})
envelope = st.fixed_dictionaries({
    "specversion": st.sampled_from(["1.0", "1.0", "0.3"]),
    "id": st.sampled_from(["e1", "e2", "e3", "e4"]) | text,
    "source": st.just("/fuzz") | text,
    "type": st.sampled_from(sorted(EVENT_TYPES)) | text,
    "subject": st.sampled_from(["c1", "c2"]) | text,
    "time": st.sampled_from(TIMES),
    "data": data,
}, optional={"sequence": st.sampled_from(EDGE_INTS) | st.sampled_from(["17", str(2**64), "-1"]) | st.floats()})


valid_text = st.sampled_from(["", "é", "😀", "\u2028", "\x00", "\ufeff", "a" * 255]) | st.text(max_size=10)
valid_ref = st.fixed_dictionaries({"system": st.sampled_from(["salesforce", "zendesk", "custom"]),
                                   "type": st.sampled_from(["Contact", "Case", "user"]),
                                   "id": st.sampled_from(["1", "i" * 255, "😀"])})
VALID_DATA: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "interaction.connected": st.fixed_dictionaries({
        "media": st.sampled_from(["voice", "chat"]), "direction": st.sampled_from(["inbound", "outbound"])},
        optional={"queue": valid_text, "agent_id": valid_text, "name": valid_ref,
                  "customer": st.fixed_dictionaries({}, optional={"name": valid_text, "address": valid_text})}),
    "interaction.held": st.just({}),
    "interaction.resumed": st.just({}),
    "log.opened": st.just({}),
    "interaction.disconnected": st.fixed_dictionaries({}, optional={"reason": valid_text}),
    "log.updated": st.fixed_dictionaries({"notes": st.sampled_from(["n" * 32_000, "x", None])},
                                         optional={"subject": valid_text, "related_to": valid_ref}),
    "record.viewed": st.fixed_dictionaries({"record": valid_ref}),
    "interaction.wrapup": st.fixed_dictionaries({"code": st.just("done")},
                                                optional={"note": st.sampled_from(["w" * 32_000, "x"])}),
    "interaction.attributes": st.fixed_dictionaries({"attributes": st.dictionaries(
        st.text(min_size=1, max_size=3), st.sampled_from(["v" * 1000, "x", "😀"]), max_size=5)
        | st.just({f"k{i}": "v" * 1000 for i in range(100)})}),
}


@st.composite
def valid_event(draw: st.DrawFn) -> dict[str, Any]:
    event_type = draw(st.sampled_from(sorted(VALID_DATA)))
    document: dict[str, Any] = {
        "specversion": "1.0", "id": draw(st.sampled_from(["e1", "e2", "e3", "e4", "e5", "e6"])), "source": "/fuzz",
        "type": event_type, "subject": draw(st.sampled_from(["c1", "c2"])),
        "time": draw(st.sampled_from(TIMES[:3])), "data": draw(VALID_DATA[event_type]),
    }
    sequence = draw(st.sampled_from([None, 0, 5, 2**63 - 1]))
    if sequence is not None:
        document["sequence"] = sequence
    return document


def as_bytes(document: dict[str, Any], nesting: int) -> bytes:
    raw = json.dumps(document).encode()
    if nesting:  # deep nesting inside `data`, past any recursion limit a parser might have
        raw = raw[:-1] + b', "nested": ' + b"[" * nesting + b"]" * nesting + b"}"
    return raw


def answers(plan: BatchPlan) -> int:
    return len(plan.rejections) + sum(plan.accepted.values()) + plan.duplicates


def check_outputs(plan: BatchPlan) -> None:
    for write in plan.writes:
        assert isinstance(write.state, InteractionLog | StoredLog)
        assert write.document is not None and InteractionLog.from_bytes(write.document) == as_log(write.state)
    for _partition, snap in plan.snapshots:
        parsed = LogSnapshot.model_validate_json(snap.payload)
        assert (parsed.interaction_id, parsed.version) == (snap.interaction_id, snap.version)
        assert len(snap.payload) <= 50_000


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(documents=st.lists(valid_event() | envelope, min_size=1, max_size=8),
       nesting=st.sampled_from([0, 0, 50, 100_000]), binary=st.booleans())
def test_arbitrary_events_through_decode_fold_encode_and_finalize_raise_nothing(
    documents: list[dict[str, Any]], nesting: int, binary: bool,
) -> None:
    messages = [as_bytes(document, nesting if index == 0 else 0) for index, document in enumerate(documents)]
    records = [Record("events", 0, offset, value, [], decode_event(value)) for offset, value in enumerate(messages)]
    if binary:  # the first event again, in binary mode: envelope in ce_ headers, data as the value
        headers: list[tuple[str, bytes | None]] = [
            (f"ce_{name}", (value if isinstance(value, str) else json.dumps(value)).encode("utf-8", "replace"))
            for name, value in documents[0].items() if name != "data"]
        value = json.dumps(documents[0]["data"]).encode()
        records.append(Record("events", 0, len(records), value, headers, decode_event(value, headers)))
    plan = plan_batch(records, {}, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=NOW_MS,
                      max_skew_ms=300_000, max_snapshot_bytes=50_000)
    assert answers(plan) == len(records)
    check_outputs(plan)

    # read again against what was written: every record is answered again, nothing is applied twice
    loaded = {w.interaction_id: Stored(w.state.version, w.state) for w in plan.writes}
    again = plan_batch(records, loaded, edit_window_s=120, applied_ids_kept=256, ttl=TTL, now_ms=NOW_MS,
                       max_skew_ms=300_000, max_snapshot_bytes=50_000)
    assert answers(again) == len(records) and again.accepted == {}
    check_outputs(again)

    for write in plan.writes:
        assert isinstance(write.state, InteractionLog | StoredLog)
        final = finalize(as_log(write.state))
        snapshot, tombstone = closed(write.state)  # the finalizer's way: off the document when it is held as one
        assert (snapshot, tombstone) == (encoded_snapshot(final, Trigger.FINALIZED), tombstone_of(final))
        assert LogSnapshot.model_validate_json(snapshot.payload).finalized
        assert Tombstone.from_bytes(tombstone.to_bytes()) == tombstone
