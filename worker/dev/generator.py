"""Demo and load events: realistic interaction histories as CloudEvents 1.0 structured-JSON dicts.

Pure and deterministic for a seed: no I/O, no clock; event times are offsets from `start`.
Every interaction draws from its own `Random(f"{seed}:{index}")`, so interaction n looks the
same whatever the count. Malformed payloads exist only in `generate_stream` (as `bytes`).
"""

from __future__ import annotations

import copy
import json
import string
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from random import Random
from typing import Any

from schemas.common import Direction, Media

SOURCE = "/platform/conversations"
FAST_RATE_PER_S = 10.0
"""Interaction start rate used for event times when the caller sends as fast as possible."""

Item = dict[str, Any]
StreamItem = dict[str, Any] | bytes

_SF_KEY_PREFIX = {"Contact": "003", "Lead": "00Q", "Account": "001", "Case": "500", "Opportunity": "006"}
_SF_ID_CHARS = string.ascii_letters + string.digits
_SF_CHECKSUM_CHARS = string.ascii_uppercase + "012345"
_FIRST_NAMES = ("Ada", "Grace", "Alan", "Edsger", "Barbara", "Ken", "Frances", "Niklaus", "Radia", "Linus")
_LAST_NAMES = ("Example", "Lovelace", "Hopper", "Turing", "Liskov", "Allen", "Wirth", "Perlman", "Kay")
_QUEUES = ("Support", "Sales", "Billing", "Retention")
_NOTE_SENTENCES = (
    "Customer asked for a refund.", "Verified identity.", "Order arrived damaged.",
    "Explained the billing cycle.", "Offered a replacement.", "Customer wants a call back tomorrow.",
    "Escalated to second level.", "Updated the shipping address.", "Reset the account password.",
    "Customer is happy with the solution.", "Sent a follow-up email.", "Applied a 10% discount.",
)
_WRAPUP_CODES = ("Resolved", "Follow-up required", "Escalated", "Sale", "No answer")
_DISCONNECT_REASONS = ("customer_hangup", "agent_hangup", "transfer", "system")
_UNKNOWN_TYPE = "conversation.recording.started"
_DROPPABLE_FIELDS = ("id", "source", "specversion", "time")


@dataclass(frozen=True)
class GeneratorMix:
    """What the stream contains besides clean interactions; ratios are probabilities in [0, 1]."""

    duplicate_ratio: float = 0.0
    shuffle_within_interaction: bool = False
    late_edit_ratio: float = 0.0
    malformed_ratio: float = 0.0
    zendesk_ratio: float = 0.2
    queue_ratio: float = 0.4
    outbound_ratio: float = 0.3
    media_weights: tuple[tuple[Media, float], ...] = (
        (Media.VOICE, 0.6), (Media.CHAT, 0.15), (Media.EMAIL, 0.1),
        (Media.CALLBACK, 0.08), (Media.MESSAGE, 0.07),
    )


@dataclass
class _Call:
    """One interaction being built: its timeline as (offset_ms, type, data) before ids are assigned."""

    subject: str
    rng: Random
    zendesk: bool
    queue: str | None
    time_scale: float
    timeline: list[tuple[int, str, Item]]
    notes: str = ""

    def add(self, offset_ms: int, event_type: str, data: Item) -> None:
        self.timeline.append((offset_ms, event_type, data))

    def scaled_ms(self, low_s: float, high_s: float) -> int:
        return max(1, round(self.rng.uniform(low_s, high_s) * 1000 * self.time_scale))

    def grow_notes(self) -> str:
        unused = [sentence for sentence in _NOTE_SENTENCES if sentence not in self.notes]
        sentence = self.rng.choice(unused or _NOTE_SENTENCES)
        self.notes = f"{self.notes} {sentence}".strip()
        return self.notes


def generate_histories(
    n_interactions: int, *, seed: int, start: datetime, rate_per_s: float, edit_window_s: float = 120,
    mix: GeneratorMix | None = None, time_scale: float = 1.0,
) -> list[list[Item]]:
    """One list of events per interaction, in event-time order (unless the mix shuffles them)."""
    if start.tzinfo is None or rate_per_s <= 0 or edit_window_s <= 0 or time_scale <= 0:
        raise ValueError("start must be timezone-aware; rate, edit window and time scale must be > 0")
    mix = mix or GeneratorMix()
    origin = start.astimezone(UTC).replace(microsecond=start.microsecond // 1000 * 1000)
    arrivals = Random(f"{seed}:arrivals")
    offset_ms, histories = 0, []
    for index in range(n_interactions):
        rng = Random(f"{seed}:{index}")
        call = _Call(f"conv-{seed}-{index}", rng, rng.random() < mix.zendesk_ratio, None, time_scale, [])
        _plan_interaction(call, offset_ms, round(edit_window_s * 1000), mix)
        histories.append(_finish(call, origin, mix))
        offset_ms += max(1, round(arrivals.expovariate(rate_per_s) * 1000))
    return histories


def _plan_interaction(call: _Call, t0_ms: int, window_ms: int, mix: GeneratorMix) -> None:
    rng = call.rng
    media = rng.choices([m for m, _ in mix.media_weights], [w for _, w in mix.media_weights])[0]
    end_ms = t0_ms + max(200, call.scaled_ms(20, 600))
    call.queue = rng.choice(_QUEUES) if rng.random() < mix.queue_ratio else None
    call.add(t0_ms, "interaction.connected", _connected_data(call, media, mix))
    if media in (Media.VOICE, Media.CALLBACK):
        _plan_holds(call, t0_ms, end_ms)
    _plan_agent_activity(call, t0_ms, end_ms)
    call.add(end_ms, "interaction.disconnected", {"reason": rng.choice(_DISCONNECT_REASONS)})
    _plan_after_call(call, end_ms, window_ms)
    if rng.random() < mix.late_edit_ratio:
        late_ms = end_ms + window_ms + call.scaled_ms(1, 30)
        call.add(late_ms, "log.updated", {"notes": f"{call.notes} Added after the window.".strip()})


def _connected_data(call: _Call, media: Media, mix: GeneratorMix) -> Item:
    rng = call.rng
    if media is Media.CALLBACK:
        direction = Direction.OUTBOUND
    elif media is Media.CHAT:
        direction = Direction.INBOUND
    else:
        direction = Direction.OUTBOUND if rng.random() < mix.outbound_ratio else Direction.INBOUND
    first, last = rng.choice(_FIRST_NAMES), rng.choice(_LAST_NAMES)
    address = (f"{first}.{last}@example.com".lower() if media in (Media.EMAIL, Media.CHAT)
               else f"+4930{rng.randint(1_000_000, 9_999_999)}")
    screen_pop = _name_record(call) if rng.random() < 0.35 else None
    customer = {"address": address, "name": f"{first} {last}"}
    return {"media": str(media), "direction": str(direction), "queue": call.queue,
            "agent_id": f"agent-{rng.randint(1, 40)}", "customer": customer,
            "name": screen_pop, "related_to": None}


def _plan_holds(call: _Call, t0_ms: int, end_ms: int) -> None:
    holds = call.rng.choice((0, 0, 1, 1, 1, 2, 3))
    segment_ms = (end_ms - t0_ms) // (holds + 1)
    for hold in range(holds):
        held_ms = t0_ms + segment_ms * hold + round(segment_ms * call.rng.uniform(0.1, 0.5))
        call.add(held_ms, "interaction.held", {})
        call.add(held_ms + max(1, round(segment_ms * call.rng.uniform(0.2, 0.4))), "interaction.resumed", {})


def _plan_agent_activity(call: _Call, t0_ms: int, end_ms: int) -> None:
    """Navigation, notes, explicit choices, opening the record, attributes: all while connected."""
    rng = call.rng

    def during() -> int:
        return rng.randint(t0_ms + 1, end_ms - 1)

    for _ in range(rng.randint(0, 4)):
        record = _name_record(call) if rng.random() < 0.4 else _related_record(call)
        call.add(during(), "record.viewed", {"record": record})
    if rng.random() < 0.2:
        choose_name = rng.random() < 0.3
        field, record = ("name", _name_record(call)) if choose_name else ("related_to", _related_record(call))
        call.add(during(), "log.updated", {field: record, "subject": f"Call about {record['type']}"})
    for _ in range(rng.randint(0, 2) if rng.random() < 0.3 else 0):
        call.add(during(), "log.opened", {})
    if rng.random() < 0.6:
        attributes = {"tier": rng.choice(("gold", "silver", "bronze")),
                      "language": rng.choice(("en", "de", "fr")), "score": str(rng.randint(0, 100))}
        call.add(during(), "interaction.attributes", {"attributes": attributes})
    # Notes grow over time, so their text is assigned in time order.
    for note_ms in sorted(during() for _ in range(rng.randint(1, 4))):
        call.add(note_ms, "log.updated", {"notes": call.grow_notes()})


def _plan_after_call(call: _Call, end_ms: int, window_ms: int) -> None:
    rng, latest_ms = call.rng, end_ms + max(1, window_ms * 9 // 10)

    def after() -> int:
        return min(latest_ms, end_ms + call.scaled_ms(2, 60))

    edits = sorted(after() for _ in range(rng.choice((0, 0, 1, 2))))
    for edit_ms in edits:
        call.add(edit_ms, "log.updated", {"notes": call.grow_notes()})
    if call.queue is not None:
        wrapup: Item = {"code": rng.choice(_WRAPUP_CODES)}
        if call.notes and rng.random() < 0.7:
            wrapup["note"] = call.notes
        call.add(max([after(), *edits]), "interaction.wrapup", wrapup)
    if rng.random() < 0.25:
        call.add(after(), "interaction.attributes", {"attributes": {"csat": str(rng.randint(1, 5))}})


def _finish(call: _Call, origin: datetime, mix: GeneratorMix) -> list[Item]:
    """Order the timeline, make times strictly increasing, number the events, apply the mix."""
    rank = {"interaction.connected": 0, "interaction.disconnected": 2}
    ordered = sorted(call.timeline, key=lambda entry: (entry[0], rank.get(entry[1], 1)))
    events, previous_ms = [], -1
    for sequence, (offset_ms, event_type, data) in enumerate(ordered, start=1):
        previous_ms = max(offset_ms, previous_ms + 1)
        events.append({
            "specversion": "1.0", "id": f"evt-{call.subject}-{sequence}", "source": SOURCE,
            "type": event_type, "subject": call.subject,
            "time": rfc3339_ms(origin + timedelta(milliseconds=previous_ms)),
            "sequence": sequence, "data": data,
        })
    for position in reversed(range(len(events))):
        if call.rng.random() < mix.duplicate_ratio:
            later = position + 1 + call.rng.randint(0, min(3, len(events) - 1 - position))
            events.insert(later, copy.deepcopy(events[position]))
    if mix.shuffle_within_interaction:
        call.rng.shuffle(events)
    return events


def rfc3339_ms(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: `2026-11-27T10:00:00.123Z`."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _name_record(call: _Call) -> Item:
    if call.zendesk:
        return {"system": "zendesk", "type": "user", "id": str(call.rng.randint(10**9, 10**10))}
    return _salesforce_record(call.rng, call.rng.choice(("Contact", "Lead")))


def _related_record(call: _Call) -> Item:
    if call.zendesk:
        return {"system": "zendesk", "type": "ticket", "id": str(call.rng.randint(1000, 99_999))}
    return _salesforce_record(call.rng, call.rng.choice(("Account", "Case", "Opportunity")))


def _salesforce_record(rng: Random, sobject: str) -> Item:
    base = _SF_KEY_PREFIX[sobject] + rng.choice(("5g", "8d", "1t", "Dn")) + "00000"
    record_id = base + "".join(rng.choice(_SF_ID_CHARS) for _ in range(15 - len(base)))
    if rng.random() < 0.6:
        record_id = salesforce_id_18(record_id)
    return {"system": "salesforce", "type": sobject, "id": record_id}


def salesforce_id_18(id_15: str) -> str:
    """The case-insensitive 18-character form: one checksum character per block of five."""
    suffix = ""
    for block in (id_15[0:5], id_15[5:10], id_15[10:15]):
        bits = sum(1 << position for position, char in enumerate(block) if char.isupper())
        suffix += _SF_CHECKSUM_CHARS[bits]
    return id_15 + suffix


def interleave(histories: list[list[Item]], *, seed: int) -> list[Item]:
    """Merge histories into one stream by event time, keeping each history's own order.

    Each history's events take its sorted event times as emission slots in list order, so a
    shuffled history stays shuffled while interactions still interleave the way a platform emits them.
    """
    ties = Random(f"{seed}:interleave")
    keyed: list[tuple[datetime, float, int, int, Item]] = []
    for h_index, history in enumerate(histories):
        slots = sorted(datetime.fromisoformat(event["time"]) for event in history)
        tie = ties.random()
        emitted = enumerate(zip(slots, history, strict=True))
        keyed.extend((slot, tie, h_index, position, event) for position, (slot, event) in emitted)
    keyed.sort(key=lambda entry: entry[:4])
    return [entry[4] for entry in keyed]


def generate_stream(
    n_interactions: int, *, seed: int, start: datetime, rate_per_s: float, edit_window_s: float = 120,
    mix: GeneratorMix | None = None, time_scale: float = 1.0,
) -> list[StreamItem]:
    """The interleaved stream plus, per `mix.malformed_ratio`, raw malformed payloads as `bytes`."""
    mix = mix or GeneratorMix()
    histories = generate_histories(n_interactions, seed=seed, start=start, rate_per_s=rate_per_s,
                                   edit_window_s=edit_window_s, mix=mix, time_scale=time_scale)
    rng, stream = Random(f"{seed}:malformed"), list[StreamItem]()
    for event in interleave(histories, seed=seed):
        stream.append(event)
        if rng.random() < mix.malformed_ratio:
            stream.append(malformed_payload(event, rng, f"{event['id']}-bad"))
    return stream


def malformed_payload(event: Item, rng: Random, bad_id: str) -> bytes:
    """Truncated JSON, an unknown type, or a missing required envelope field, derived from `event`."""
    broken = {**event, "id": bad_id}
    kind = rng.choice(("truncated", "unknown_type", "missing_field"))
    if kind == "unknown_type":
        broken["type"] = _UNKNOWN_TYPE
    elif kind == "missing_field":
        del broken[rng.choice(_DROPPABLE_FIELDS)]
    encoded = json.dumps(broken, separators=(",", ":")).encode()
    return encoded[: rng.randint(1, len(encoded) - 2)] if kind == "truncated" else encoded
