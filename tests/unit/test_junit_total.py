"""`make test`'s closing line adds up both pytest runs, failures and errors counted as failed."""

from __future__ import annotations

from pathlib import Path

from tests.junit_total import totals


def _suite(path: Path, *, tests: int, failures: int, errors: int, skipped: int) -> Path:
    path.write_text(
        '<?xml version="1.0" encoding="utf-8"?><testsuites>'
        f'<testsuite name="pytest" tests="{tests}" failures="{failures}" errors="{errors}" skipped="{skipped}"/>'
        "</testsuites>",
        encoding="utf-8",
    )
    return path


def test_both_runs_are_added_up_and_errors_count_as_failed(tmp_path: Path) -> None:
    first = _suite(tmp_path / "all.xml", tests=100, failures=1, errors=2, skipped=4)
    second = _suite(tmp_path / "cluster.xml", tests=30, failures=0, errors=0, skipped=1)
    assert (93 + 29, 3, 5) == totals([first, second])
