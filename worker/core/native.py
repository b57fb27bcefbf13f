"""The compiled core (`native/`, Rust with PyO3: the module `ilog_native`), and the switch that chooses it.

The Python in `worker.core` is the specification: each compiled function gives exactly what its Python
counterpart gives — the same bytes, the same logs, the same rejections — or `None` for an input it leaves
to the Python (a lone surrogate, an integer past 64 bits, a non-ASCII record type, a rejection to word),
and the caller then runs the Python. `tests/unit/test_native_*.py` compare the two over generated
histories; they fail, not skip, when the module is missing, unless `ILOG_NATIVE_CORE=false`.

`CORE` is the module, or None when it is not installed (a checkout where `make install` has not built
it) or when `ILOG_NATIVE_CORE` is false (read here at import, and again by the settings: the composition
root calls `use_native_core`). Nothing else changes with it: the same bytes go to Redis and Kafka.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from importlib import import_module
from typing import Literal, Protocol, cast

from schemas import fast

__all__ = ["CORE", "Core", "SnapshotJob", "installed", "python_only", "use_native_core"]

_FALSE = ("false", "0", "no", "off")


class SnapshotJob(Protocol):
    """Snapshots being written on a thread of the compiled core (`Core.snapshots_from_states`)."""

    def wait(self) -> list[bytes | None]:
        """The snapshots in the order of the documents; None where the caller writes it from the log."""


class Core(Protocol):
    """The functions of `ilog_native` (native/src): each returns None where it leaves the input to the Python."""

    __version__: str

    def json_value(self, value: object) -> bytes | None: ...

    def json_time_us(self, epoch_us: int) -> bytes | None: ...

    def pack_commands(self, commands: list[list[object]]) -> bytes | None:
        """Redis commands packed as redis-py's `Connection.pack_commands` packs them, as one `bytes`."""

    def pack_fenced_write(self, sha: str, prefix: str, writes: Sequence[object], guard: list[int], marks: str,
                          tombstone: type) -> bytes | None:
        """`pack_commands([RedisStore._fenced_write_command(writes, guard, marks, with_deadlines=True)])`, read off
        the `StateWrite`s (`worker.store.redis_store`); `tombstone` is the `Tombstone` class."""

    def state_bytes(self, log: object) -> bytes | None:
        """`InteractionLog.to_bytes()` (`worker.core.state`)."""

    def snapshot_json(self, log: object, trigger: object) -> bytes | None:
        """`snapshot_json(log, trigger)` (`worker.core.snapshot_json`); `trigger` is a `Trigger` member."""

    def snapshot_from_state(self, document: bytes, trigger: object = None) -> bytes | None:
        """`snapshot_json(log, trigger)` read off `document`, the bytes `log.to_bytes()` gave."""

    def snapshots_from_states(self, items: list[tuple[bytes, str]]) -> SnapshotJob:
        """`snapshot_from_state(document, trigger)` of each (document, trigger), on a thread of its own."""

    def fold_setup(self, names: dict[str, object]) -> None:
        """The Python classes and constants the compiled fold builds its results from (`worker.core.fold`)."""

    def fold(self, state: object, event: object, edit_window_s: float, applied_ids_kept: int) -> object | None:
        """`fold(state, event, …)`'s `FoldResult` (`worker.core.fold`), or None: the Python folds this one."""

    def fold_document(
        self, document: bytes | None, event: object, edit_window_s: float, applied_ids_kept: int,
    ) -> tuple[bytes, int, str, int | None] | tuple[None, int, int, int | None] | Literal[True] | None:
        """`fold` on the stored document: the new document, version, trigger and deadline; True: a duplicate;
        (None, time, deadline, first disconnect): `late_edit` (`worker.core.fold.document_fold`)."""

    def finalize_document(self, document: bytes) -> tuple[bytes, tuple[str, ...]] | None:
        """`finalize(InteractionLog.from_bytes(document)).to_bytes()` and the log's applied ids."""

    def held_log_fields(self, document: bytes) -> tuple[str, int, int | None] | None:
        """`(interaction_id, version, edit_deadline_us)` of `InteractionLog.from_bytes(document)`, or None: not
        exactly what `to_bytes` writes, or finalized (`worker.core.fold.held_log`)."""

    def utc_time(self, text: str) -> datetime | None:
        """`_utc_time(text)` (`schemas.fast`), or None: the Python reads this one."""


def _load() -> Core | None:
    try:
        return cast(Core, import_module("ilog_native"))
    except ImportError:
        return None


def _switch(core: Core | None) -> Core | None:
    """Use `core` (None: the Python everywhere), also for the event times `schemas.fast` reads."""
    global CORE  # the one switch: modules read `native.CORE` at call time
    CORE = core
    fast.compiled_time = None if core is None else core.utc_time
    return core


_INSTALLED = _load()
CORE: Core | None = None
"""The compiled core in use, or None: the Python everywhere."""
_switch(None if os.environ.get("ILOG_NATIVE_CORE", "").strip().lower() in _FALSE else _INSTALLED)


def installed() -> Core | None:
    """The compiled core when it is installed, whether or not it is in use."""
    return _INSTALLED


def use_native_core(enabled: bool) -> Core | None:
    """Use the compiled core when `enabled` and installed (the `native_core` setting); returns what is in use."""
    return _switch(_INSTALLED if enabled else None)


@contextmanager
def python_only() -> Iterator[None]:
    """The Python specification alone inside the block (tests compare it with the compiled core)."""
    before = CORE
    _switch(None)
    try:
        yield
    finally:
        _switch(before)
