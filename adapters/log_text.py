"""The log rendered as readable text: the Salesforce Description and the Zendesk comment share it."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from schemas.common import RecordRef
from schemas.snapshot import LogSnapshot

ATTRIBUTES_TEXT_LIMIT = 2_000


def format_duration(seconds: int | None) -> str:
    """`0s`, `45s`, `4m 05s`, `1h 02m 03s`; an em dash when unknown."""
    if seconds is None:
        return "—"
    hours, rest = divmod(max(0, seconds), 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def format_time(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def format_ref(ref: RecordRef | None) -> str:
    return "—" if ref is None else f"{ref.type} {ref.id} ({ref.system.value})"


def _customer_line(snapshot: LogSnapshot) -> str:
    customer = snapshot.customer
    if customer is None:
        return "—"
    if customer.name and customer.address:
        return f"{customer.name} <{customer.address}>"
    return customer.name or customer.address or "—"


def detail_lines(snapshot: LogSnapshot) -> list[str]:
    """Times, durations, parties and wrap-up, one fact per line."""
    media = snapshot.media.value if snapshot.media else "—"
    direction = snapshot.direction.value if snapshot.direction else "—"
    lines = [
        f"Interaction: {snapshot.interaction_id} ({media}, {direction})",
        f"Customer: {_customer_line(snapshot)}",
        f"Queue: {snapshot.queue or '—'} · Agent: {snapshot.agent_id or '—'}",
        f"Connected: {format_time(snapshot.connected_at)}",
        f"Disconnected: {format_time(snapshot.disconnected_at)}",
        f"Duration: {format_duration(snapshot.duration_seconds)} · Talk: "
        f"{format_duration(snapshot.talk_seconds)} · Hold: {format_duration(snapshot.hold_seconds)} "
        f"({snapshot.hold_count}×)",
        f"Name: {format_ref(snapshot.name)}",
        f"Related to: {format_ref(snapshot.related_to)}",
        f"Wrap-up: {snapshot.wrapup_code or '—'}",
    ]
    if snapshot.wrapup_note and snapshot.wrapup_note != snapshot.notes:
        lines.append(f"Wrap-up note: {snapshot.wrapup_note}")
    if snapshot.attributes:
        lines.append(f"Attributes: {attributes_text(snapshot.attributes)}")
    return lines


def attributes_text(attributes: Mapping[str, str], limit: int = ATTRIBUTES_TEXT_LIMIT) -> str:
    """`key=value` pairs by key, so every target shows the interaction attributes (mapped ones also go to
    their own fields); cut at `limit` characters, ending in `…`, as 100 long values would crowd the log."""
    text = ", ".join(f"{key}={attributes[key]}" for key in sorted(attributes))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def render_log_text(snapshot: LogSnapshot) -> str:
    """Notes first (what the agent wrote), then the interaction details."""
    notes = (snapshot.notes or "").strip()
    parts = [notes] if notes else []
    parts.append("\n".join(detail_lines(snapshot)))
    return "\n\n".join(parts)
