"""A log loaded from the store is held as its document (`held_log`, `native/src/held.rs`) exactly where that is
what the fold stage would have held had it written the log itself.

`held_log_fields(document)` must give the interaction id, version and edit deadline of
`InteractionLog.from_bytes(document)` for every open log's document `to_bytes` writes, and None for a finalized
log and for any document `to_bytes` would not write as it is (those are decoded as before, and a corrupt one is
refused as before). The stage's loads ask for held logs; other readers get the objects.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_native_fold import CONNECT, decoded, document, generated
from tests.unit.test_native_fold_document import AWKWARD, DocumentFolds, awkward_history, core, shapes
from worker.core import native
from worker.core.fold import finalize, held_log
from worker.core.state import InteractionLog, StoredLog, Tombstone
from worker.core.writes import StateWrite
from worker.dev.generator import GeneratorMix
from worker.store import keys
from worker.store.memory import MemoryStore
from worker.store.wire import decode_state

pytestmark = pytest.mark.unit


class HeldChecks(DocumentFolds):
    """Every document a history meets (before each event) is also read by `held_log_fields` and compared."""

    held = 0

    def finalize(self, raw: bytes) -> None:
        super().finalize(raw)
        with native.python_only():
            log = InteractionLog.from_bytes(raw)
            closed = finalize(log).to_bytes() if not log.finalized else None
        assert log.to_bytes() == raw  # the history's documents are the Python's own
        fields = core().held_log_fields(raw)
        if log.finalized:
            assert fields is None
        else:
            assert fields == (log.interaction_id, log.version, log.edit_deadline_us)
            assert type(fields[0]) is str
            self.held += 1
        if closed is not None:
            assert core().held_log_fields(closed) is None  # finalized: never held


@pytest.mark.parametrize(("mix", "window_s", "kept"), [
    (GeneratorMix(), 120, 256),
    (GeneratorMix(duplicate_ratio=0.3, shuffle_within_interaction=True, late_edit_ratio=0.5), 120, 256),
    (GeneratorMix(duplicate_ratio=0.5), 5.5, 0),
], ids=["clean", "duplicates-shuffled-late", "no-ids-kept"])
def test_every_open_log_of_generated_histories_is_held_with_its_fields(
    mix: GeneratorMix, window_s: float, kept: int,
) -> None:
    checks = HeldChecks(window_s, kept)
    for history in generated(mix, 40, seed=23):
        checks.all([decoded(item, fast=True) for item in history])
    assert checks.held > 200


@pytest.mark.parametrize("text", AWKWARD, ids=range(len(AWKWARD)))
def test_an_interaction_id_that_needs_escaping_is_read_back_as_it_was(text: str) -> None:
    checks = HeldChecks()
    checks.all(awkward_history(text, 0))
    assert checks.held == 8


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=12))
def test_any_interaction_id_is_read_back_as_it_was(text: str) -> None:
    HeldChecks().all(awkward_history(text, 1))


def _open_document() -> bytes:
    events = [decoded(document(0, "interaction.connected", 0, CONNECT, 0), fast=True),
              decoded(document(1, "interaction.disconnected", 1, None, 1), fast=True)]
    raw = DocumentFolds().all(events)
    assert raw is not None
    return raw


def test_documents_to_bytes_would_not_write_are_not_held_and_decode_as_before() -> None:
    raw = _open_document()
    assert core().held_log_fields(raw) is not None
    for changed in shapes(raw):
        assert core().held_log_fields(changed) is None, changed
        assert held_log(changed) is None
        try:
            decoded_state = decode_state(changed, keys.KIND_LOG, held=True)
        except ValueError:
            continue  # corrupt: refused as `decode_state` without `held` refuses it
        assert isinstance(decoded_state, InteractionLog)  # an earlier version's document: read into objects
        assert decoded_state == decode_state(changed, keys.KIND_LOG)


@pytest.mark.usefixtures("compiled_core")
def test_decode_state_holds_an_open_log_only_when_asked_and_where_the_compiled_fold_runs() -> None:
    raw = _open_document()
    log = InteractionLog.from_bytes(raw)
    held = decode_state(raw, keys.KIND_LOG, held=True)
    assert held == StoredLog(log.interaction_id, log.version, log.edit_deadline_us, raw)
    assert held is not None and not isinstance(held, Tombstone) and held.log() == log
    assert decode_state(raw, keys.KIND_LOG) == log
    with native.python_only():  # no compiled fold over documents: nothing to hold a document for
        assert decode_state(raw, keys.KIND_LOG, held=True) == log
    tomb = Tombstone("conv-0", 3, datetime(2026, 12, 5, tzinfo=UTC), ("e0", "e1"))
    assert decode_state(tomb.to_bytes(), keys.KIND_TOMBSTONE, held=True) == tomb


@pytest.mark.usefixtures("compiled_core")
def test_the_memory_store_gives_back_what_redis_would() -> None:
    raw = _open_document()
    log = InteractionLog.from_bytes(raw)
    store = MemoryStore()
    store.write([StateWrite(log.interaction_id, 0, log, ttl_ms=60_000)])
    held = store.load([log.interaction_id], held=True)[log.interaction_id].state
    assert isinstance(held, StoredLog) and held == held_log(raw)
    assert store.load([log.interaction_id])[log.interaction_id].state == log
