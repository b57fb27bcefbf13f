"""`ilog validate FILE…`: check JSON-lines files of events against the contract, offline.

Each line goes through the worker's own decode (the same one the fold stage uses), so what this
command accepts the worker accepts; an event timed more than ILOG_MAX_CLOCK_SKEW_SECONDS ahead of this
machine's clock is `future_time`, as the worker would answer now. Rules that need the stream (late
edits, closed windows, duplicates) are the fold's business: `ilog fold --rejects` reports those.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from schemas.decode import decode_event
from schemas.events import Rejection
from worker.core.bounds import future_time
from worker.errors import IlogError
from worker.ops.offline import numbered_lines

EXIT_VALID = 0
EXIT_REJECTED = 1
EXIT_UNREADABLE = 2
_FIELD = re.compile(r"^((?:specversion|id|source|type|subject|time|sequence|data)(?:\.(?:[^:]|:(?! ))*)?): ")
"""A message that starts with a field's path: an envelope field, or a path under `data` (an attribute key
a producer chose may hold any character; a colon too, as in `crm:tier`, unless a space follows it)."""
_KEY_SUFFIX = ".[key]"
_ATTRIBUTES = "data.attributes"


@dataclass(frozen=True)
class LineRejection:
    file: str
    line: int
    rejection: Rejection

    @property
    def field(self) -> str:
        """The field the message starts with (`data.media`), or `event` when it is about the whole line.

        An object's key that breaks a bound (`data.attributes.<key>.[key]`) names the object."""
        found = _FIELD.match(self.rejection.message)
        if not found:
            return "event"
        field = found.group(1)
        if field.endswith(_KEY_SUFFIX):
            return _ATTRIBUTES if field.startswith(_ATTRIBUTES + ".") else field.removesuffix(_KEY_SUFFIX)
        return field

    def as_json(self) -> dict[str, object]:
        return {"file": self.file, "line": self.line, "field": self.field, **self.rejection.to_dict()}

    def as_text(self) -> str:
        return f"{self.file}:{self.line}: {self.rejection.reason} ({self.field}): {self.rejection.message}"


@dataclass(frozen=True)
class Clock:
    """The wall clock the `future_time` rule is judged against, and the skew it allows."""

    now_ms: int
    max_skew_ms: int


def rejections_in(name: str, raw: bytes, clock: Clock) -> tuple[int, list[LineRejection]]:
    """(non-blank lines read, the rejected ones) of one file's bytes."""
    count = 0
    found = []
    for line_number, line in numbered_lines(raw):
        count += 1
        decoded = decode_event(line)
        rejection = decoded if isinstance(decoded, Rejection) else future_time(decoded, clock.now_ms,
                                                                               clock.max_skew_ms)
        if rejection is not None:
            found.append(LineRejection(name, line_number, rejection))
    return count, found


def validate_command(files: Sequence[Path], clock: Clock, *, as_json: bool, out: TextIO | None = None) -> int:
    """Print every rejection (text or JSON lines) and a summary on stderr; 0 all valid, 1 any rejected."""
    stdout = out if out is not None else sys.stdout
    total = 0
    rejected = 0
    for path, raw in _read_all(files):
        count, found = rejections_in(str(path), raw, clock)
        total += count
        rejected += len(found)
        for item in found:
            stdout.write((json.dumps(item.as_json(), ensure_ascii=False) if as_json else item.as_text()) + "\n")
    print(f"ilog validate: {rejected} of {total} event(s) rejected in {len(files)} file(s)", file=sys.stderr)
    return EXIT_REJECTED if rejected else EXIT_VALID


class UnreadableFileError(IlogError):
    """A file named on the command line cannot be read."""


def _read_all(files: Sequence[Path]) -> Iterator[tuple[Path, bytes]]:
    contents = []
    for path in files:
        try:
            contents.append((path, path.read_bytes()))
        except OSError as error:
            raise UnreadableFileError(f"cannot read {path}: {error.strerror or error}") from error
    yield from contents
