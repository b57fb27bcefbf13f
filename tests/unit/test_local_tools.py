"""The dev tools find `deploy/local` from the working directory and read what its scripts print."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.dev.local_tools import parse_env_lines, repository_root

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_is_found_from_any_folder_inside_it() -> None:
    assert REPO == repository_root(REPO / "worker" / "dev")
    assert REPO == repository_root(REPO)


def test_outside_a_checkout_there_is_no_repository(tmp_path: Path) -> None:
    assert repository_root(tmp_path) is None


def test_the_working_directory_is_where_the_search_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO / "tests")
    assert REPO == repository_root()


def test_env_lines_read_plain_exported_and_quoted_values_and_skip_comments() -> None:
    text = "# the stack\nILOG_KAFKA_BOOTSTRAP=127.0.0.1:9092\nexport ILOG_REDIS_URL='redis://127.0.0.1:6379/0'\nnoise\n"
    assert {"ILOG_KAFKA_BOOTSTRAP": "127.0.0.1:9092", "ILOG_REDIS_URL": "redis://127.0.0.1:6379/0"} == parse_env_lines(
        text)


def test_env_lines_read_a_shell_quoted_value_with_a_space_as_the_shell_does() -> None:
    text = "ILOG_SALESFORCE_CA_BUNDLE='/tmp/stack dir/emulators/ca.pem'\nILOG_ZENDESK_TOKEN=t\n"
    assert {"ILOG_SALESFORCE_CA_BUNDLE": "/tmp/stack dir/emulators/ca.pem", "ILOG_ZENDESK_TOKEN": "t"} == (
        parse_env_lines(text))
