"""Settings read as operators write them: `ILOG_REDIS_CLUSTER` and `ILOG_LOG_LEVEL` in any case."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from worker.runtime.settings import Settings


@pytest.mark.parametrize(("written", "read"), [
    ("auto", "auto"), ("AUTO", "auto"), ("true", "true"), ("True", "true"), ("1", "true"), ("yes", "true"),
    ("on", "true"), ("false", "false"), ("FALSE", "false"), ("0", "false"), ("no", "false"), ("off", "false"),
])
def test_redis_cluster_takes_the_words_the_local_stack_takes(written: str, read: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ILOG_REDIS_CLUSTER", written)
    assert read == Settings(_env_file=None).redis_cluster


def test_redis_cluster_refuses_anything_else(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ILOG_REDIS_CLUSTER", "maybe")
    with pytest.raises(ValidationError, match="Input should be 'auto', 'true' or 'false'"):
        Settings(_env_file=None)


@pytest.mark.parametrize(("written", "read"), [("debug", "DEBUG"), ("Warning", "WARNING"), ("INFO", "INFO")])
def test_log_level_is_read_in_any_case(written: str, read: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ILOG_LOG_LEVEL", written)
    assert read == Settings(_env_file=None).log_level
