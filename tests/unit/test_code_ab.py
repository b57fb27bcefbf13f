"""`tests.bench.code_ab`: both sides run against one local stack, and the summary is per side."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.code_ab import REPO, _stack_env, summary

pytestmark = pytest.mark.unit


def test_both_sides_use_this_checkouts_stack_and_jars_unless_told_otherwise(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv("ILOG_STACK_DIR", raising=False)
    monkeypatch.delenv("ILOG_CACHE_DIR", raising=False)
    env = _stack_env()
    assert (env["ILOG_STACK_DIR"], env["ILOG_CACHE_DIR"]) == (str(REPO / ".stack"), str(REPO / ".cache"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ILOG_STACK_DIR", "bench-stack")  # relative: from the working directory, as the script
    assert _stack_env()["ILOG_STACK_DIR"] == str(tmp_path.resolve() / "bench-stack")


def test_the_summary_gives_each_sides_median_and_range_of_every_number() -> None:
    runs = [{"side": "A", "round": 1, "rate": 10, "cpu": {"main": 5.0}, "ok": True},
            {"side": "A", "round": 2, "rate": 30, "cpu": {"main": 7.0}, "ok": True},
            {"side": "B", "round": 1, "rate": 20, "cpu": {"main": 4.0}, "ok": False}]
    assert summary(runs) == {
        "A": {"rate": {"median": 20.0, "min": 10.0, "max": 30.0}, "cpu.main": {"median": 6.0, "min": 5.0, "max": 7.0}},
        "B": {"rate": {"median": 20.0, "min": 20.0, "max": 20.0}, "cpu.main": {"median": 4.0, "min": 4.0, "max": 4.0}},
    }
