"""`python -m tests.emulators serve|env --state-dir DIR`: run the emulators as one process.

`serve` starts Salesforce (HTTPS), Zendesk and the webhook receiver, writes the ILOG_* lines (shell-quoted
where needed) to DIR/env once all three listen, and runs until SIGTERM/SIGINT. `env` prints DIR/env.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from tests.emulators.cluster import DEFAULT_WEBHOOK_SECRET, start_all


def _serve(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    emulators = start_all(state_dir, args.salesforce_port, args.zendesk_port, args.webhook_port,
                          args.webhook_secret)
    # quoted where a shell needs it (a state folder with a space): the lines are meant for `eval`
    lines = "".join(f"{key}={shlex.quote(value)}\n" for key, value in emulators.env().items())
    partial = state_dir / "env.tmp"
    partial.write_text(lines)
    os.replace(partial, state_dir / "env")
    sys.stdout.write(lines)
    sys.stdout.flush()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    emulators.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.emulators")
    parser.add_argument("command", choices=["serve", "env"])
    parser.add_argument("--state-dir", default=".stack/emulators")
    parser.add_argument("--salesforce-port", type=int, default=int(os.environ.get("SALESFORCE_PORT", 0)))
    parser.add_argument("--zendesk-port", type=int, default=int(os.environ.get("ZENDESK_PORT", 0)))
    parser.add_argument("--webhook-port", type=int, default=int(os.environ.get("WEBHOOK_PORT", 0)))
    parser.add_argument("--webhook-secret",
                        default=os.environ.get("ILOG_EMULATOR_WEBHOOK_SECRET", DEFAULT_WEBHOOK_SECRET))
    args = parser.parse_args(argv)
    if args.command == "env":
        sys.stdout.write((Path(args.state_dir) / "env").read_text())
        return 0
    return _serve(args)


if __name__ == "__main__":
    raise SystemExit(main())
