"""`ilog demo` and `ilog produce` are development tools: without `worker.dev` they say so and exit 2."""

from __future__ import annotations

import importlib.util
from importlib.machinery import ModuleSpec

import pytest
from typer.testing import CliRunner

from worker.ops import cli

_find_spec = importlib.util.find_spec


def _without_dev_tools(name: str, package: str | None = None) -> ModuleSpec | None:
    return None if name == "worker.dev" else _find_spec(name, package)


@pytest.mark.parametrize("command", [["demo"], ["produce", "--out", "/dev/null"]])
def test_a_development_command_without_the_dev_tools_says_how_to_get_them(
    command: list[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", _without_dev_tools)
    result = CliRunner().invoke(cli.app, command)
    assert 2 == result.exit_code
    assert f"ilog {command[0]}: a development tool, not part of this installation" in result.output
    assert "make install" in result.output
