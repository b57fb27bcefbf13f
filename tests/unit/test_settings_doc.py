"""README's settings table names every setting, no other, with the default the code has.

A row may name several settings: `ILOG_A_B` / `_C` is `ILOG_A_C` (the shorthand replaces the
name's last words), `ILOG_<TARGET>_…` stands for each target, `ILOG_X__<KEY>` for the dict setting X.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from worker.runtime.settings import Settings, setting_variables

README = Path(__file__).resolve().parents[2] / "README.md"
TARGETS = ("SALESFORCE", "ZENDESK", "WEBHOOK")


def _settings_rows() -> list[tuple[list[str], list[str]]]:
    """(names, defaults) of each row of the table under README's `## Settings`, as written."""
    section = README.read_text().split("\n## Settings\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if line.startswith("| `ILOG_"):
            name_cell, default_cell = (cell.strip() for cell in line.strip("|").split("|")[:2])
            defaults = [_first_code(part) for part in default_cell.split(" / ")] if default_cell else []
            rows.append((re.findall(r"`([^`]+)`", name_cell), defaults))
    return rows


def _first_code(text: str) -> str:
    found = re.search(r"`([^`]*)`", text)
    return found.group(1) if found else text.strip()


def _expand(name: str, previous: str, known: set[str]) -> list[str]:
    """The settings one written name stands for (unknown ones as written, for the failure message)."""
    if name.startswith("_") and previous:
        words, tail = previous.split("_"), name[1:].split("_")
        guesses = ["_".join(words[:cut] + tail) for cut in range(len(words) - 1, 0, -1)]
        return [next((guess for guess in guesses if guess in known), guesses[0])]
    if "<TARGET>" in name:
        return [name.replace("<TARGET>", target) for target in TARGETS]
    return [name.split("__", 1)[0]]


def documented() -> dict[str, str | None]:
    """Every setting the table names, with its stated default (None when the row states none for it)."""
    known = set(setting_variables())
    found: dict[str, str | None] = {}
    for names, defaults in _settings_rows():
        previous = ""
        for position, name in enumerate(names):
            for variable in _expand(name, previous, known):
                found[variable] = defaults[position] if position < len(defaults) else None
            previous = name if not name.startswith("_") else previous
    return found


def _as_written(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def test_the_settings_table_names_every_setting_and_no_other() -> None:
    names = set(documented())
    assert ([], []) == (sorted(set(setting_variables()) - names), sorted(names - set(setting_variables())))


DEFAULTS = {name: value for name, field in Settings.model_fields.items()
            if (value := field.get_default(call_default_factory=True)) is not None and not isinstance(value, dict)}
"""Settings with a default to state (not unset, not a dict of options)."""


@pytest.mark.parametrize("name", sorted(DEFAULTS))
def test_the_settings_table_states_the_default_the_code_has(name: str) -> None:
    assert _as_written(DEFAULTS[name]) == documented()[f"ILOG_{name.upper()}"]


def _contract_defaults() -> list[tuple[str, str]]:
    """(setting, default) of each row of docs/contract.md's "Defaults" table that names a setting."""
    section = (README.parent / "docs" / "contract.md").read_text().split("\n## Defaults\n", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("|") and len(cells) == 3 and cells[2].startswith("`ILOG_"):
            rows.append((_first_code(cells[2]), _first_code(cells[1]).removesuffix(" s")))
    return rows


def test_the_contract_states_the_defaults_the_code_has() -> None:
    stated = _contract_defaults()
    assert stated, "docs/contract.md: no Defaults table found"
    assert [(setting, _as_written(DEFAULTS[setting.removeprefix("ILOG_").lower()])) for setting, _ in stated] == stated
