"""`ilog demo`, small and quick, as `make run` runs it: a process against the running local stack."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.support import ILOG, REPO


def test_small_demo_completes_and_shows_tasks_comments_deliveries_and_dead_letters(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """The stack fixture makes sure a stack runs, so the demo must reuse it (and leave it running)."""
    summary_path = tmp_path / "summary.json"
    # as an operator runs it: no ILOG_* settings of the tests, only the stack folder the tests' stack is in
    env = {k: v for k, v in os.environ.items() if k == "ILOG_STACK_DIR" or not k.startswith(("ILOG_", "ZENPY_"))}
    env["COLUMNS"] = "200"
    result = subprocess.run(
        [*ILOG, "demo", "--interactions", "20", "--edit-window", "3", "--duration", "10",
         "--summary-json", str(summary_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600, check=False,
    )
    assert 0 == result.returncode, result.stdout[-4000:] + result.stderr[-4000:]
    summary = json.loads(summary_path.read_text())
    assert (True, 20) == (summary["settled"], summary["interactions"])
    assert 20 == summary["tasks"]
    assert summary["zendesk_comments"] >= 1
    assert {"interactionChanged", "interactionDisconnected", "interactionRemoved"} <= set(
        summary["webhook_deliveries"])
    assert 20 == summary["webhook_deliveries"]["interactionRemoved"]
    malformed_reasons = {"invalid", "unknown_type"}
    assert summary["malformed_sent"] >= 3
    assert summary["malformed_sent"] == sum(n for r, n in summary["dlq_reasons"].items() if r in malformed_reasons)
    assert all(d["message"] for d in summary["dead_letters"])

    out = result.stdout
    for shown in ("Salesforce Tasks", "Zendesk comments", "webhook deliveries", "dead letters", "ilog inspect",
                  "ilog dlq list", "/metrics", "edit window 3 s"):
        assert shown in out, shown
    assert "stack: reusing the running one" in out
    running = subprocess.run([str(REPO / "deploy" / "local" / "stack"), "env"], capture_output=True, text=True,
                             check=False)
    assert (0, stack_env["ILOG_KAFKA_BOOTSTRAP"]) == (
        running.returncode, dict(line.split("=", 1) for line in running.stdout.split())["ILOG_KAFKA_BOOTSTRAP"])
