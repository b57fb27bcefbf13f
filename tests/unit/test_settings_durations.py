"""Every `*_SECONDS` setting is a finite duration of at most ten years: larger values overflowed the
deadlines and waits computed from them, and the commands ended with an unexpected error (exit 1)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.runtime.settings import MAX_SETTING_SECONDS, Settings

DURATIONS = sorted(name for name in Settings.model_fields if name.endswith("_seconds"))


@pytest.mark.parametrize("name", DURATIONS)
@pytest.mark.parametrize("written", ["inf", "Infinity", "1e30", str(MAX_SETTING_SECONDS + 1)])
def test_a_duration_setting_refuses_infinity_and_anything_over_ten_years(
    name: str, written: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"ILOG_{name.upper()}", written)
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    assert [((name,), f"Input should be a finite number of seconds, at most {MAX_SETTING_SECONDS} (ten years)")] == [
        (error["loc"], error["msg"]) for error in raised.value.errors()]


@pytest.mark.parametrize("name", DURATIONS)
def test_a_duration_setting_takes_ten_years_exactly(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(f"ILOG_{name.upper()}", str(MAX_SETTING_SECONDS))
    assert float(MAX_SETTING_SECONDS) == getattr(Settings(_env_file=None), name)
