"""The demo's closing report: the `export` line it prints for looking further is one a shell can run."""

from __future__ import annotations

import subprocess

from rich.console import Console

from worker.dev.demo_report import DemoReport, print_report


def test_the_export_line_keeps_a_path_with_a_space_whole_and_leaves_secrets_out() -> None:
    console = Console(record=True, width=80, color_system=None)
    env = {"ILOG_SALESFORCE_CA_BUNDLE": "/tmp/stack dir/emulators/ca.pem", "ILOG_KEY_PREFIX": "ilog-[demo]",
           "ILOG_WEBHOOK_SECRET": "whsec_x", "ZENPY_FORCE_SCHEME": "http"}
    print_report(DemoReport("demo-1", True, 0, 0, 0), console, env, 9108, keep=False)
    export = next(line.strip() for line in console.export_text().splitlines() if line.strip().startswith("export "))
    shell = f'{export}\nprintf "%s\\n" "$ILOG_SALESFORCE_CA_BUNDLE" "$ILOG_KEY_PREFIX" "${{ILOG_WEBHOOK_SECRET-unset}}"'
    ran = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=10, check=True)
    assert ["/tmp/stack dir/emulators/ca.pem", "ilog-[demo]", "unset"] == ran.stdout.splitlines()
