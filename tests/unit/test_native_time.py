"""The compiled event-time reader (`native/src/time.rs`) gives what `schemas.fast._utc_time` gives, or None.

None means "the Python reads this one": the test checks that the compiled reader answers for every form the
generator and producers write, and that where it answers, its datetime is the Python's, value and time zone.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import fast
from tests.unit.test_native_core import core
from worker.core import native

pytestmark = pytest.mark.unit


def _same(text: str) -> datetime | None:
    """The compiled answer, checked against the Python's where there is one."""
    compiled = core().utc_time(text)
    expected = fast._utc_time(text)
    if compiled is not None:
        assert expected is not None, text
        assert compiled == expected, text
        assert compiled.tzinfo is UTC and compiled.utcoffset() == timedelta(0), text
        assert (compiled.year, compiled.microsecond, compiled.fold) == (expected.year, expected.microsecond, 0)
    return compiled


@pytest.mark.parametrize("text", [
    "2026-12-04T10:00:00Z", "2026-12-04T10:00:00.123Z", "2026-12-04T10:00:00.123456Z",
    "2026-12-04t10:00:00.1z", "2026-12-04T10:00:00.1234567Z", "2026-12-04T10:00:00.999999999Z",
    "2026-12-04T00:30:00+01:00", "2026-12-31T23:30:00-01:00", "2024-02-29T12:00:00+23:59",
    "2026-03-01T00:00:00+00:00", "2026-03-01T00:00:00-00:00", "0001-01-01T00:00:00Z",
    "9999-12-31T23:59:59.999999Z", "0001-01-01T23:00:00+22:00", "1970-01-01T00:00:00.5-00:01",
])
def test_the_forms_producers_write_are_read_compiled(text: str) -> None:
    assert _same(text) is not None


@pytest.mark.parametrize("text", [
    "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "0000-01-01T00:00:00Z", "2026-12-04T24:00:00Z",
    "2026-12-04T10:60:00Z", "2026-12-04T10:00:60Z", "2026-12-04T10:00:00", "2026-12-04 10:00:00Z",
    "2026-12-04T10:00:00.Z", "2026-12-04T10:00:00.1234567890Z", "2026-12-04T10:00:00+24:00",
    "2026-12-04T10:00:00+01:60", "2026-12-04T10:00:00+0100", "2026-12-04T10:00:00Z\n", "2026-12-04T10:00:00ZZ",
    "0001-01-01T00:30:00+01:00", "9999-12-31T23:30:00-01:00", "２026-12-04T10:00:00Z", "2026-12-04T10:00:00\ud800Z",
    "+2026-12-04T10:00:00Z", "2026-1-04T10:00:00Z", "",
])
def test_what_the_python_refuses_is_left_to_it(text: str) -> None:
    assert core().utc_time(text) is None
    assert fast._utc_time(text) is None


_DIGITS = st.integers(0, 9).map(str)


@st.composite
def _times(draw: st.DrawFn) -> str:
    """Texts near the pattern: each part drawn in and just out of its range."""
    year = draw(st.sampled_from(["0001", "0400", "1900", "1970", "2000", "2024", "2026", "9999", "0000", "10000"]))
    month, day = draw(st.integers(0, 13)), draw(st.integers(0, 32))
    hour, minute, second = draw(st.integers(0, 25)), draw(st.integers(0, 61)), draw(st.integers(0, 61))
    fraction = "".join(draw(st.lists(_DIGITS, max_size=10)))
    zone = draw(st.one_of(
        st.sampled_from(["Z", "z", "", "+00:00", "-00:00", "ZZ", "\n"]),
        st.builds(lambda sign, h, m: f"{sign}{h:02d}:{m:02d}", st.sampled_from("+-"), st.integers(0, 25),
                  st.integers(0, 61)),
    ))
    separator = draw(st.sampled_from(["T", "t", " "]))
    point = "." if fraction or draw(st.booleans()) else ""
    return f"{year}-{month:02d}-{day:02d}{separator}{hour:02d}:{minute:02d}:{second:02d}{point}{fraction}{zone}"


@settings(max_examples=3000, deadline=None)
@given(_times())
def test_drawn_texts_read_alike(text: str) -> None:
    _same(text)


@settings(max_examples=500, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
       st.integers(-23 * 60 - 59, 23 * 60 + 59))
def test_every_valid_instant_is_read_compiled(moment: datetime, offset_minutes: int) -> None:
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    text = f"{moment.isoformat(timespec='microseconds')}{sign}{hours:02d}:{minutes:02d}"
    assert _same(text) is not None


def test_the_switch_sets_the_decoders_reader() -> None:
    compiled = core()
    assert fast.compiled_time is compiled.utc_time or native.CORE is None
    with native.python_only():
        assert fast.compiled_time is None
    assert fast.compiled_time is (None if native.CORE is None else compiled.utc_time)
