"""`ilog worker sync|all` refuse to start without a target: one line on stderr, exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ILOG = Path(sys.executable).with_name("ilog")


def ilog(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {key: value for key, value in os.environ.items() if not key.startswith("ILOG_")}
    # Unreachable services: if the check did not come first, the worker would hang or fail differently.
    clean.update({"ILOG_KAFKA_BOOTSTRAP": "127.0.0.1:1", "ILOG_REDIS_URL": "redis://127.0.0.1:1/0", **env})
    return subprocess.run([str(ILOG), *args], capture_output=True, text=True, check=False, cwd=tmp_path,
                          env=clean, timeout=60)


@pytest.mark.parametrize("stage", ["sync", "all"])
def test_no_target_configured_is_one_line_on_stderr_and_exit_2(tmp_path: Path, stage: str) -> None:
    done = ilog(tmp_path, "worker", stage)
    assert (2, "", [f"ilog worker {stage}: no sync target configured: set ILOG_SALESFORCE_INSTANCE_URL, "
                    "ILOG_ZENDESK_URL or ILOG_WEBHOOK_URL"]) == (done.returncode, done.stdout,
                                                                  done.stderr.splitlines())


def test_a_target_missing_a_setting_is_one_line_on_stderr_and_exit_2(tmp_path: Path) -> None:
    done = ilog(tmp_path, "worker", "sync", ILOG_WEBHOOK_URL="https://hooks.acme.example/ilog")
    assert (2, ["ilog worker sync: ILOG_WEBHOOK_SECRET is required"]) == (done.returncode, done.stderr.splitlines())
