"""The `ilog dlq list|replay` commands: options in, a rich table (or JSON) out, exit codes."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from worker.errors import ConfigError
from worker.kafka.dead_letters import DeadLetter
from worker.ops.dlq import (
    Selection,
    check_offsets,
    letters_as_json,
    outcome_as_json,
    read_dead_letters,
    resend,
    select,
)
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

_MESSAGE_CHARS = 90


def dlq_topics(settings: Settings, topic: str | None) -> list[str]:
    """The one asked for, or both DLQs of the project."""
    return [topic] if topic else [settings.events_dlq_topic, settings.upserts_dlq_topic]


def gather(settings: Settings, topics: Sequence[str], *, explicit: bool) -> list[DeadLetter]:
    """The letters of `topics` as one list, oldest first (so `--limit N` keeps the oldest N of all of them)."""
    letters: list[DeadLetter] = []
    for topic in topics:
        try:
            letters.extend(read_dead_letters(settings, topic))
        except ConfigError:
            if explicit:
                raise
    return sorted(letters, key=lambda d: (d.timestamp_ms or 0, d.topic, d.partition, d.offset))


def letters_table(letters: Sequence[DeadLetter], title: str) -> Table:
    table = Table(title=title, show_lines=False, title_justify="left")
    for name, style in (("dlq", "dim"), ("reason", "bold red"), ("message", ""), ("interaction", "cyan"),
                        ("original", "dim"), ("replayed", "")):
        table.add_column(name, style=style, overflow="fold")
    for letter in letters:
        message = letter.header("message") or ""
        table.add_row(
            f"{_short(letter.topic)} {letter.partition}:{letter.offset}", letter.reason,
            message if len(message) <= _MESSAGE_CHARS else message[: _MESSAGE_CHARS - 1] + "…",
            letter.interaction,
            f"{_short(letter.header('original_topic') or '?')}[{letter.header('original_partition')}]"
            f"@{letter.header('original_offset')}",
            "yes" if letter.replayed else "",
        )
    return table


def _short(topic: str) -> str:
    """`run-7.events.dlq` → `events.dlq`: the table stays readable; `--json` has the full names."""
    return ".".join(topic.split(".")[-2:]) if topic.count(".") >= 2 else topic


def list_command(
    settings: Settings, *, topic: str | None, reason: str | None, limit: int | None, as_json: bool
) -> int:
    console = Console()
    if limit is not None and limit < 0:  # a slice would drop the newest letters without a word
        raise ConfigError(f"--limit {limit}: give 0 or more letters to show")
    bootstrap.require_kafka(settings)
    letters = select(gather(settings, dlq_topics(settings, topic), explicit=topic is not None),
                     Selection(reason=reason, include_replayed=True, limit=limit))
    if as_json:
        print(letters_as_json(letters))
        return 0
    if not letters:
        console.print("no dead letters" + (f" with reason {reason!r}" if reason else ""))
        return 0
    console.print(letters_table(letters, f"{len(letters)} dead letter(s)"))
    return 0


def replay_command(
    settings: Settings, *, topic: str | None, reason: str | None, offsets: Sequence[str], yes: bool,
    force: bool, as_json: bool,
) -> int:
    """Select, confirm (unless --yes), resend per DLQ topic; exit 1 when nothing matched."""
    err = Console(stderr=True)
    check_offsets(offsets)
    bootstrap.require_kafka(settings)
    topics = dlq_topics(settings, topic)
    letters = gather(settings, topics, explicit=topic is not None)
    chosen = select(letters, Selection(reason=reason, offsets=tuple(offsets), include_replayed=force))
    refused = [d for d in select(letters, Selection(reason=reason, offsets=tuple(offsets), include_replayed=True))
               if d.replayed and not force]
    if refused:
        err.print(f"{len(refused)} letter(s) were replayed before and are left out "
                  "(pass --force to send them again): " + ", ".join(d.position for d in refused[:10]))
    cut = [d for d in chosen if d.header("truncated") == "true"]
    if cut:  # a cut copy is not the message: resent, it could only be rejected again
        err.print(f"{len(cut)} letter(s) are cut copies (truncated) and are left out; the whole message is at its "
                  "original offset: " + ", ".join(f"{d.position} ({d.original})" for d in cut[:10]))
        chosen = [d for d in chosen if d.header("truncated") != "true"]
    if not chosen:
        err.print("nothing to replay")
        return 1
    if not yes and not _confirmed(err, chosen):
        return 1
    return _resend_all(settings, err, topics, chosen, as_json=as_json)


def _resend_all(
    settings: Settings, err: Console, topics: Sequence[str], chosen: Sequence[DeadLetter], *, as_json: bool
) -> int:
    outcomes = [resend(settings, dlq_topic, batch) for dlq_topic in topics
                if (batch := [d for d in chosen if d.topic == dlq_topic])]
    for outcome in outcomes:
        if as_json:
            print(outcome_as_json(outcome))
        for note in outcome.resent:
            err.print(f"resent {note['dlq']} → {note['to_topic']}[{note['to_partition']}]@{note['to_offset']}")
    return 0


def _confirmed(err: Console, chosen: Sequence[DeadLetter]) -> bool:
    err.print(letters_table(chosen, f"{len(chosen)} dead letter(s) to resend to their original topics"))
    if not sys.stdin.isatty():
        err.print("not a terminal: pass --yes to resend without asking")
        return False
    return err.input("resend them? [y/N] ").strip().lower() in ("y", "yes")
