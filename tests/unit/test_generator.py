"""The demo/load generator: contract-shaped events, a realistic mix, determinism, and the fault mix."""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from schemas.decode import Rejection, decode_event
from worker.dev.generator import (
    SOURCE,
    GeneratorMix,
    generate_histories,
    generate_stream,
    interleave,
    rfc3339_ms,
    salesforce_id_18,
)

START = datetime(2026, 11, 27, 10, 0, tzinfo=UTC)
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SF_PREFIX = {"Contact": "003", "Lead": "00Q", "Account": "001", "Case": "500", "Opportunity": "006"}
ENVELOPE_FIELDS = {"specversion", "id", "source", "type", "subject", "time", "sequence", "data"}
EDITS = {"log.updated", "interaction.wrapup", "interaction.attributes"}


def when(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(event["time"])


def histories(
    n: int = 300, seed: int = 11, mix: GeneratorMix | None = None, **kwargs: Any
) -> list[list[dict[str, Any]]]:
    return generate_histories(n, seed=seed, start=START, rate_per_s=2.0, mix=mix, **kwargs)


def check_ref(ref: Any) -> None:
    assert isinstance(ref, dict) and set(ref) == {"system", "type", "id"}
    assert ref["system"] in {"salesforce", "zendesk", "custom"}
    if ref["system"] == "salesforce":
        assert ref["id"][:3] == SF_PREFIX[ref["type"]]
        assert len(ref["id"]) in (15, 18) and ref["id"].isalnum()
        if len(ref["id"]) == 18:
            assert ref["id"] == salesforce_id_18(ref["id"][:15])
    else:
        assert ref["type"] in {"ticket", "user"} and ref["id"].isdigit()


def check_data(event_type: str, data: dict[str, Any]) -> None:
    """CONTRACT.md's data table, checked by hand so the shape holds independently of the schemas."""
    if event_type == "interaction.connected":
        assert data["media"] in {"voice", "callback", "chat", "email", "message"}
        assert data["direction"] in {"inbound", "outbound"}
        assert data["queue"] is None or isinstance(data["queue"], str)
        assert isinstance(data["agent_id"], str)
        assert set(data["customer"]) == {"address", "name"}
        for field in ("name", "related_to"):
            if data.get(field) is not None:
                check_ref(data[field])
    elif event_type in {"interaction.held", "interaction.resumed", "log.opened"}:
        assert data == {}
    elif event_type == "interaction.disconnected":
        assert set(data) <= {"reason"}
    elif event_type == "log.updated":
        assert data and set(data) <= {"notes", "subject", "name", "related_to"}
        for field in ("name", "related_to"):
            if field in data:
                check_ref(data[field])
    elif event_type == "record.viewed":
        check_ref(data["record"])
    elif event_type == "interaction.wrapup":
        assert isinstance(data["code"], str) and set(data) <= {"code", "note"}
    elif event_type == "interaction.attributes":
        assert data["attributes"] and all(isinstance(v, str) for v in data["attributes"].values())
    else:
        pytest.fail(f"type outside the contract: {event_type}")


def test_every_event_has_the_contract_envelope_and_data_shape() -> None:
    for history in histories():
        subject = history[0]["subject"]
        for event in history:
            assert set(event) == ENVELOPE_FIELDS
            assert (event["specversion"], event["source"], event["subject"]) == ("1.0", SOURCE, subject)
            assert TIME_RE.match(event["time"])
            check_data(event["type"], event["data"])


def test_histories_are_numbered_in_event_time_order_with_unique_ids() -> None:
    all_ids: list[str] = []
    for history in histories():
        assert [event["sequence"] for event in history] == list(range(1, len(history) + 1))
        times = [when(event) for event in history]
        assert times == sorted(times) and len(set(times)) == len(times)
        assert history[0]["type"] == "interaction.connected"
        all_ids += [event["id"] for event in history]
    assert len(all_ids) == len(set(all_ids))


def test_every_generated_dict_decodes_to_an_event() -> None:
    stream = generate_stream(300, seed=5, start=START, rate_per_s=3.0,
                             mix=GeneratorMix(duplicate_ratio=0.1, late_edit_ratio=0.2))
    rejected = [(item, decode_event(json.dumps(item).encode())) for item in stream]
    assert [(item, result) for item, result in rejected if isinstance(result, Rejection)] == []


def test_every_malformed_item_decodes_to_an_invalid_or_unknown_type_rejection() -> None:
    stream = generate_stream(200, seed=5, start=START, rate_per_s=3.0, mix=GeneratorMix(malformed_ratio=0.2))
    malformed = [item for item in stream if isinstance(item, bytes)]
    decoded = [decode_event(item) for item in malformed]
    reasons = Counter(str(result.reason) for result in decoded if isinstance(result, Rejection))
    assert set(reasons) == {"invalid", "unknown_type"}
    assert sum(reasons.values()) == len(malformed) > 100


def test_malformed_items_are_truncated_json_unknown_types_or_missing_fields() -> None:
    stream = generate_stream(200, seed=9, start=START, rate_per_s=3.0, mix=GeneratorMix(malformed_ratio=0.2))
    kinds = Counter[str]()
    for item in (item for item in stream if isinstance(item, bytes)):
        try:
            document = json.loads(item)
        except ValueError:
            kinds["truncated"] += 1
            continue
        missing = {"id", "source", "specversion", "time"} - set(document)
        kinds["missing_field" if missing else "unknown_type"] += 1
        assert missing or document["type"] == "conversation.recording.started"
    assert set(kinds) == {"truncated", "unknown_type", "missing_field"}


def test_no_malformed_items_without_the_ratio() -> None:
    stream = generate_stream(100, seed=9, start=START, rate_per_s=3.0)
    assert all(isinstance(item, dict) for item in stream)


def test_same_seed_gives_the_same_events_and_another_seed_does_not() -> None:
    mix = GeneratorMix(duplicate_ratio=0.2, shuffle_within_interaction=True, late_edit_ratio=0.3,
                       malformed_ratio=0.1)
    first = generate_stream(100, seed=3, start=START, rate_per_s=4.0, mix=mix)
    assert first == generate_stream(100, seed=3, start=START, rate_per_s=4.0, mix=mix)
    assert first != generate_stream(100, seed=4, start=START, rate_per_s=4.0, mix=mix)


def test_an_interaction_does_not_depend_on_how_many_are_generated() -> None:
    assert histories(10)[3][1:] == histories(50)[3][1:]


def test_duplicates_repeat_an_earlier_event_with_the_same_id_and_content() -> None:
    clean, doubled = histories(100), histories(100, mix=GeneratorMix(duplicate_ratio=0.3))
    copies = 0
    for original, history in zip(clean, doubled, strict=True):
        first_seen: dict[str, dict[str, Any]] = {}
        for event in history:
            if event["id"] in first_seen:
                copies += 1
                assert first_seen[event["id"]] == event and first_seen[event["id"]] is not event
            first_seen.setdefault(event["id"], event)
        assert list(first_seen.values()) == original
    assert copies > 100


def test_shuffling_keeps_every_event_and_its_sequence_number() -> None:
    clean = histories(100)
    shuffled = histories(100, mix=GeneratorMix(shuffle_within_interaction=True))
    assert clean != shuffled
    assert [sorted(h, key=lambda e: e["sequence"]) for h in shuffled] == clean


def test_late_edits_come_after_the_edit_window_and_the_rest_within_it() -> None:
    window_s = 120
    late_found = 0
    for history in histories(200, mix=GeneratorMix(late_edit_ratio=0.5), edit_window_s=window_s):
        disconnected = next(when(e) for e in history if e["type"] == "interaction.disconnected")
        deadline = disconnected + timedelta(seconds=window_s)
        late = [e for e in history if when(e) > deadline]
        assert all(e["type"] == "log.updated" and "notes" in e["data"] for e in late)
        assert late == [] or late == history[-1:]
        late_found += len(late)
    assert 60 < late_found < 140


def test_without_late_edits_everything_happens_within_the_window() -> None:
    for history in histories(200, edit_window_s=30):
        disconnected = next(when(e) for e in history if e["type"] == "interaction.disconnected")
        assert when(history[-1]) <= disconnected + timedelta(seconds=30)


def test_the_mix_is_mostly_voice_with_queue_interactions_wrapped_up() -> None:
    generated = histories(1000)
    connects = [h[0]["data"] for h in generated]
    media = Counter(c["media"] for c in connects)
    assert media.most_common(1)[0][0] == "voice"
    assert set(media) == {"voice", "chat", "email", "callback", "message"}
    assert {c["direction"] for c in connects} == {"inbound", "outbound"}
    assert 0.33 < sum(c["queue"] is not None for c in connects) / len(connects) < 0.47
    for history in generated:
        wrapups = [e for e in history if e["type"] == "interaction.wrapup"]
        assert len(wrapups) == (1 if history[0]["data"]["queue"] else 0)


def test_holds_alternate_only_on_calls_and_number_at_most_three() -> None:
    hold_counts = Counter[int]()
    for history in histories(500):
        states = [e["type"] for e in history if e["type"] in {"interaction.held", "interaction.resumed"}]
        assert states == ["interaction.held", "interaction.resumed"] * (len(states) // 2)
        if history[0]["data"]["media"] not in {"voice", "callback"}:
            assert states == []
        else:
            hold_counts[len(states) // 2] += 1
    assert set(hold_counts) == {0, 1, 2, 3}


def test_navigation_happens_while_connected_and_edits_follow_disconnect() -> None:
    types = Counter[str]()
    for history in histories(500):
        disconnect_at = next(i for i, e in enumerate(history) if e["type"] == "interaction.disconnected")
        types.update(e["type"] for e in history)
        during, after = history[1:disconnect_at], history[disconnect_at + 1:]
        assert all(e["type"] in EDITS for e in after)
        assert all(e["type"] not in {"interaction.connected", "interaction.wrapup"} for e in during)
    assert types["record.viewed"] > 500 and types["log.opened"] > 50 and types["interaction.attributes"] > 200


def test_notes_grow_as_full_text() -> None:
    for history in histories(200):
        notes = [e["data"]["notes"] for e in history if "notes" in e["data"]]
        assert notes
        assert all(later.startswith(earlier) and later != earlier for earlier, later in pairwise(notes))


def test_records_are_salesforce_or_zendesk_by_interaction() -> None:
    systems = Counter[str]()
    for history in histories(300, mix=GeneratorMix(zendesk_ratio=0.3)):
        views = {e["data"]["record"]["system"] for e in history if e["type"] == "record.viewed"}
        assert len(views) <= 1
        systems.update(views)
    assert systems["zendesk"] > 30 and systems["salesforce"] > 3 * systems["zendesk"] // 2


def test_durations_follow_the_time_scale() -> None:
    for scale, low_s, high_s in ((1.0, 20, 600), (0.1, 2, 60)):
        for history in histories(200, time_scale=scale):
            end = next(when(e) for e in history if e["type"] == "interaction.disconnected")
            assert low_s <= (end - when(history[0])).total_seconds() <= high_s + 0.05


def test_interactions_start_at_the_requested_rate() -> None:
    starts = [when(h[0]) for h in generate_histories(2000, seed=1, start=START, rate_per_s=20.0)]
    assert starts[0] == START and starts == sorted(starts)
    assert 18.0 < len(starts) / (starts[-1] - starts[0]).total_seconds() < 22.0


def test_interleave_orders_the_stream_by_event_time() -> None:
    generated = histories(100)
    stream = interleave(generated, seed=1)
    assert sorted(stream, key=when) == stream
    assert sorted(e["id"] for e in stream) == sorted(e["id"] for h in generated for e in h)


def test_interleave_keeps_each_interactions_own_order() -> None:
    generated = histories(100, mix=GeneratorMix(shuffle_within_interaction=True, duplicate_ratio=0.1))
    stream = interleave(generated, seed=1)
    for history in generated:
        assert [e for e in stream if e["subject"] == history[0]["subject"]] == history


@pytest.mark.parametrize(
    ("id_15", "id_18"),
    [("0035g00000AbCdE", "0035g00000AbCdEAAV"), ("001000000000000", "001000000000000AAA"),
     ("ABCDEABCDEABCDE", "ABCDEABCDEABCDE555")],
)
def test_salesforce_18_character_ids_carry_the_case_checksum(id_15: str, id_18: str) -> None:
    assert salesforce_id_18(id_15) == id_18


def test_times_are_utc_with_milliseconds_and_z() -> None:
    moment = datetime(2026, 11, 27, 11, 0, 1, 234567, tzinfo=UTC).astimezone()
    assert rfc3339_ms(moment) == "2026-11-27T11:00:01.234Z"


@pytest.mark.parametrize("bad", [{"start": datetime(2026, 1, 1)}, {"rate_per_s": 0.0}, {"time_scale": 0.0}])
def test_invalid_arguments_are_refused(bad: dict[str, Any]) -> None:
    arguments: dict[str, Any] = {"seed": 1, "start": START, "rate_per_s": 1.0, **bad}
    with pytest.raises(ValueError, match="must be"):
        generate_histories(1, **arguments)
