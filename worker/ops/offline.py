"""`ilog fold FILE`: fold a JSON-lines file of events offline, with the same decode and fold as Kafka.

Events are applied in file order. Logs are printed as they stand after the last line and are NOT
finalized: closing a window needs the partition clock, which a file does not have (late edits are
still rejected by event time). The trigger is the one of the last accepted event. As in the worker,
an event timed more than `ILOG_MAX_CLOCK_SKEW_SECONDS` ahead of the wall clock (when the command
runs) is rejected `future_time`, and one that would take its log's state or snapshot over
`ILOG_MAX_SNAPSHOT_BYTES` is rejected `too_large`, the log staying as it was.
"""

from __future__ import annotations

import codecs
import json
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from schemas.decode import decode_event
from schemas.events import Rejection
from worker.core.bounds import ENCODE_ERRORS, encoding_problem, future_time, snapshot_surely_fits
from worker.core.fold import Accepted, Rejected, fold_guarded, snapshot
from worker.core.state import InteractionLog, Tombstone
from worker.runtime.settings import Settings

EXIT_OK = 0
EXIT_UNREADABLE = 2


@dataclass
class OfflineFold:
    """Logs by interaction id plus the rejections (with their line numbers) of one file."""

    edit_window_s: float
    applied_ids_kept: int = 256
    now_ms: int | None = None  # with max_skew_ms: reject events timed further ahead than that
    max_skew_ms: int = 300_000
    max_snapshot_bytes: int | None = None  # the worker's bound on a log's state and snapshot (`too_large`)
    logs: dict[str, InteractionLog | Tombstone] = field(default_factory=dict)
    rejections: list[tuple[int, Rejection]] = field(default_factory=list)

    def apply_lines(self, lines: Iterable[tuple[int, bytes]]) -> None:
        for line_number, raw in lines:
            self.apply(line_number, raw)

    def apply(self, line_number: int, raw: bytes) -> None:
        decoded = decode_event(raw)
        if isinstance(decoded, Rejection):
            self.rejections.append((line_number, decoded))
            return
        if self.now_ms is not None and (ahead := future_time(decoded, self.now_ms, self.max_skew_ms)):
            self.rejections.append((line_number, ahead))
            return
        result = fold_guarded(self.logs.get(decoded.subject), decoded, edit_window_s=self.edit_window_s,
                              applied_ids_kept=self.applied_ids_kept)
        outcome = result.outcome
        if isinstance(outcome, Accepted) and isinstance(result.log, InteractionLog) \
                and not self._surely_fits(result.log):
            refused = encoding_problem(result.log, decoded, outcome.trigger, self.max_snapshot_bytes)
            if refused is not None:  # as the worker's guarded fold: the event is refused, the log stays
                self.rejections.append((line_number, refused))
                return
        if isinstance(outcome, Rejected):
            self.rejections.append((line_number, outcome.rejection))
        elif result.log is not None:
            self.logs[decoded.subject] = result.log

    def _surely_fits(self, log: InteractionLog) -> bool:
        try:
            return snapshot_surely_fits(log.to_bytes(), self.max_snapshot_bytes)
        except ENCODE_ERRORS:
            return False  # `encoding_problem` words why

    def snapshot_lines(self) -> Iterator[str]:
        for interaction_id in sorted(self.logs):
            log = self.logs[interaction_id]
            if isinstance(log, InteractionLog):
                yield snapshot(log).model_dump_json()

    def rejection_lines(self) -> Iterator[str]:
        for line_number, rejection in self.rejections:
            yield json.dumps({**rejection.to_dict(), "line": line_number}, ensure_ascii=False)


def numbered_lines(raw: bytes) -> Iterator[tuple[int, bytes]]:
    """Non-blank lines with their 1-based line numbers; a file's UTF-8 byte order mark (what some Windows
    editors write first) is not part of its first line."""
    for index, line in enumerate(raw.removeprefix(codecs.BOM_UTF8).split(b"\n"), start=1):
        if line.strip():
            yield index, line


def fold_file_command(file: Path, rejects: Path | None, settings: Settings,
                      out: TextIO | None = None) -> int:
    """Fold `file`, print final logs (sorted by id), write rejections; exit code 0, or 2 if unreadable."""
    stdout = out if out is not None else sys.stdout
    try:
        raw = file.read_bytes()
    except OSError as error:
        print(f"ilog fold: cannot read {file}: {error.strerror or error}", file=sys.stderr)
        return EXIT_UNREADABLE
    offline = OfflineFold(settings.edit_window_seconds, settings.applied_ids_kept, now_ms=int(time.time() * 1000),
                          max_skew_ms=int(settings.max_clock_skew_seconds * 1000),
                          max_snapshot_bytes=settings.max_snapshot_bytes)
    offline.apply_lines(numbered_lines(raw))
    if rejects is not None:  # before any log is printed: a fold that fails prints nothing
        try:
            rejects.write_text("".join(line + "\n" for line in offline.rejection_lines()), encoding="utf-8")
        except OSError as error:
            print(f"ilog fold: cannot write {rejects}: {error.strerror or error}", file=sys.stderr)
            return EXIT_UNREADABLE
    for line in offline.snapshot_lines():
        stdout.write(line + "\n")
    if rejects is None and offline.rejections:
        print(f"ilog fold: {len(offline.rejections)} event(s) rejected (see --rejects FILE)", file=sys.stderr)
    return EXIT_OK
