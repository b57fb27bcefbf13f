"""The bytes the Redis stores send and read: a state as stored, packed script calls, one reply."""

from __future__ import annotations

from typing import Any

import redis

from worker.core import native
from worker.core.fold import held_log
from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import State, StateWrite
from worker.store import keys


def encode_state(state: State, document: bytes | None = None) -> tuple[bytes, str]:
    """The stored bytes and kind; `document` is the state's bytes when the caller encoded them already."""
    encoded = document if document is not None else state.to_bytes()
    return encoded, keys.KIND_TOMBSTONE if isinstance(state, Tombstone) else keys.KIND_LOG


_TOMBSTONE_START = b'{"k":"tomb"'
"""How a tombstone's document begins (`Tombstone.to_bytes`: its kind is its first key); a log's begins `{"k":"log"`."""


def decode_state(document: bytes | None, kind: bytes | str | None, *, held: bool = False) -> State | None:
    """The state of a stored document; `kind` as stored beside it (Redis' `k` field, the state changelog's `k`
    header of earlier versions), or None: the document's own first key says. With `held` (the fold stage's
    loads), an open log comes back as a `StoredLog` where `worker.core.fold.held_log` can hold it."""
    if document is None:
        return None
    kind_text = kind.decode() if isinstance(kind, bytes) else kind
    if kind_text == keys.KIND_TOMBSTONE or (kind_text is None and document.startswith(_TOMBSTONE_START)):
        return Tombstone.from_bytes(document)
    if held and (log := held_log(document)) is not None:
        return log
    return InteractionLog.from_bytes(document)


def encoded_write(item: StateWrite) -> tuple[bytes, str]:
    """A write's document and kind as the fenced-write scripts take them: the kind followed by "r" when
    the write puts back a state the store lost (the script marks the hash; no extra argument per write)."""
    document, kind = encode_state(item.state, item.document)
    return document, kind + keys.FIELD_RESTORED if item.restored else kind


def packed(connection: Any, commands: list[list[Any]]) -> list[bytes]:
    """The commands as redis-py packs them: by the compiled core where it runs (a fifth of the CPU for the
    thousands of arguments of a batch's script calls, docs/benchmarks.md), else by redis-py."""
    core = native.CORE
    encoded = core.pack_commands(commands) if core is not None else None
    return [encoded] if encoded is not None else list(connection.pack_commands(commands))


def read_reply(connection: Any) -> Any:
    """One reply read from the connection; an error reply is returned, not raised (the rest must be read)."""
    try:
        return connection.read_response()
    except redis.ResponseError as exc:
        return exc
