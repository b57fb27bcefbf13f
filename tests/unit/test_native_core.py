"""The compiled core is installed, and its JSON writers give orjson's bytes (`native/src/json.rs`).

The fold stage's compiled functions build on these writers; their own differential tests compare them
with the Python specification in `worker.core` (`tests/unit/test_native_*.py`).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker.core import native
from worker.core.state import InteractionLog, Tombstone
from worker.core.writes import StateWrite
from worker.store.redis_store import RedisStore

pytestmark = pytest.mark.unit

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_US = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime(9999, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1)


def core() -> native.Core:
    installed = native.installed()
    if installed is None:
        if os.environ.get("ILOG_NATIVE_CORE", "").lower() in ("false", "0", "no", "off"):
            pytest.skip("ILOG_NATIVE_CORE is false: the Python alone is under test")
        pytest.fail("the compiled core (ilog_native) is not installed: run `make install`")
    return installed


def test_the_compiled_core_is_installed_and_in_use() -> None:
    assert core() is native.CORE or os.environ.get("ILOG_NATIVE_CORE")
    assert core().__version__


def test_the_switch_chooses_the_python_and_back() -> None:
    compiled = core()
    try:
        assert native.use_native_core(False) is None
        assert native.CORE is None
        assert native.use_native_core(True) is compiled
        with native.python_only():
            assert native.CORE is None
        assert native.CORE is compiled
    finally:
        native.use_native_core(True)


_TEXT = st.text(st.characters(codec="utf-8"), max_size=30) | st.sampled_from(["\x00\x1f\x7f\u2028\"\\", "é😀", ""])
_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | _TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(_VALUES)
def test_values_are_written_as_orjson_writes_them(value: Any) -> None:
    assert core().json_value(value) == orjson.dumps(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, "\ud800", ["ok", "\udfff"], {1: "non-str key"}, 1.5, b"x"])
def test_what_it_does_not_handle_is_left_to_the_python(value: Any) -> None:
    assert core().json_value(value) is None


@settings(max_examples=600, deadline=None)
@given(st.integers(_MIN_US, _MAX_US) | st.integers(_MIN_US // 1_000_000, _MAX_US // 1_000_000).map(lambda s: s * 10**6))
def test_times_are_written_as_orjson_writes_an_aware_utc_datetime(epoch_us: int) -> None:
    moment = _EPOCH + timedelta(microseconds=epoch_us)
    assert core().json_time_us(epoch_us) == orjson.dumps(moment, option=orjson.OPT_UTC_Z)


@pytest.mark.parametrize("epoch_us", [_MIN_US - 1, _MAX_US + 1])
def test_times_outside_pythons_range_are_left_to_the_python(epoch_us: int) -> None:
    assert core().json_time_us(epoch_us) is None


_ARGUMENTS = st.lists(
    st.binary(max_size=40) | _TEXT | st.integers(-(2**63), 2**63 - 1), max_size=12,
)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["EVALSHA", "SET", b"HMGET", "ZADD"]), _ARGUMENTS), min_size=1, max_size=4))
def test_commands_are_packed_as_redis_py_packs_them(commands: list[tuple[str | bytes, list[Any]]]) -> None:
    import redis

    connection = redis.Redis().connection_pool.make_connection()  # never connects: packing only
    as_lists = [[name, *arguments] for name, arguments in commands]
    assert core().pack_commands(as_lists) == b"".join(connection.pack_commands(as_lists))  # type: ignore[no-untyped-call]


@pytest.mark.parametrize("command", [["SET", "k", 1.5], ["CONFIG GET", "x"], ["SET", "\ud800"], ["SET", True],
                                     ["SET", 2**64], [""]])
def test_arguments_it_does_not_take_are_left_to_redis_py(command: list[Any]) -> None:
    assert core().pack_commands([command]) is None


_SHA = "0123456789abcdef0123456789abcdef01234567"
_VERSIONS = st.integers(0, 2**63 - 1)


@st.composite
def _state_writes(draw: st.DrawFn) -> StateWrite:
    interaction_id = draw(_TEXT)
    version = draw(st.integers(1, 2**63 - 1))
    states: list[InteractionLog | Tombstone] = [InteractionLog(interaction_id, version=version),
                                                 Tombstone(interaction_id, version, datetime(2026, 12, 5, tzinfo=UTC))]
    state = draw(st.sampled_from(states))
    deadline, unschedule = draw(st.sampled_from([(None, None), ("a", None), (None, "r"), ("a", "r")]))
    return StateWrite(
        interaction_id, draw(_VERSIONS), state, draw(st.integers(-(2**40), 2**62)),
        deadline=(draw(st.integers(0, 64)), draw(st.integers(0, 2**62))) if deadline else None,
        unschedule_partition=draw(st.integers(0, 64)) if unschedule else None,
        document=draw(st.none() | st.binary(max_size=60)), restored=draw(st.booleans()),
    )


def _python_packed(writes: list[StateWrite], guard: list[int], marks: str) -> bytes:
    import redis

    store = RedisStore.__new__(RedisStore)  # packing only: no client
    store._prefix, store._sha = "ilog", _SHA
    connection = redis.Redis().connection_pool.make_connection()  # never connects
    command = store._fenced_write_command(writes, guard, marks, with_deadlines=True)
    return b"".join(connection.pack_commands([command]))  # type: ignore[no-untyped-call]


@settings(max_examples=400, deadline=None)
@given(st.lists(_state_writes(), min_size=1, max_size=6), st.lists(st.integers(0, 64), max_size=5))
def test_a_fenced_write_is_packed_as_redis_py_packs_the_pythons_command(
    writes: list[StateWrite], guard: list[int],
) -> None:
    """`RedisStore.send_write`'s script call, packed off the `StateWrite`s, or left to the Python exactly where
    a document is missing or a write both schedules and unschedules (which the Python refuses)."""
    packed = core().pack_fenced_write(_SHA, "ilog", writes, guard, "ilog:{marks}", Tombstone)
    left = any(w.document is None or (w.deadline is not None and w.unschedule_partition is not None) for w in writes)
    if left:
        assert packed is None
    else:
        assert packed == _python_packed(writes, guard, "ilog:{marks}")


def test_a_write_with_a_lone_surrogate_id_or_a_bool_version_is_left_to_the_python() -> None:
    log = InteractionLog("conv-1", version=3)
    assert core().pack_fenced_write(_SHA, "ilog", [StateWrite("\ud800", 2, log, 10, document=b"{}")], [],
                                    "m", Tombstone) is None
    assert core().pack_fenced_write(_SHA, "ilog", [StateWrite("conv-1", True, log, 10, document=b"{}")], [],
                                    "m", Tombstone) is None


def test_a_panic_in_the_compiled_core_leaves_the_input_to_the_python() -> None:
    """Every compiled function runs its body under `guarded` (native/src/lib.rs): a panic is `None`, and the
    caller runs the Python, instead of a `PanicException` that would stop the stage on the same message."""
    probe = getattr(core(), "_guard_probe")  # noqa: B009  (not part of `Core`: a test hook)
    assert probe() is None
