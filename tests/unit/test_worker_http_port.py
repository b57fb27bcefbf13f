"""The worker's health port: a port set on purpose that cannot be bound is a bad setting (exit 2); the
default port taken by another worker on the host (fold and sync side by side) falls back to a free one.

The worker runs as the operator runs it (a subprocess), with Kafka and Redis on closed loopback ports:
the port is bound before anything connects, and the worker waits for the services while it serves.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.unit.test_cli_failures import ILOG, closed_port, ilog

DEFAULT_PORT = 9108


@contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Hold `port` on 127.0.0.1 (when something else already holds it, it is taken just the same)."""
    with socket.socket() as holder:
        try:
            holder.bind(("127.0.0.1", port))
            holder.listen()
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
        yield


def test_a_chosen_port_in_use_stops_the_worker_with_one_line_naming_the_setting_and_exit_2(tmp_path: Path) -> None:
    port = closed_port()
    with port_taken(port):
        done = ilog(["worker", "fold"], tmp_path, ILOG_HTTP_PORT=str(port))
    assert (2, "") == (done.returncode, done.stdout), done.stderr
    assert done.stderr.splitlines()[-1] == (
        f"ilog worker fold: cannot serve /metrics, /healthz and /readyz on 127.0.0.1:{port} (Address already in use); "
        "set ILOG_HTTP_PORT (and ILOG_HTTP_HOST) to a free port this host can bind, 0 for any")
    assert "cannot reach" not in done.stderr  # the port is checked before any service is asked


def test_the_default_port_in_use_falls_back_to_a_free_port_named_in_the_log(tmp_path: Path) -> None:
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    down = closed_port()
    env.update({"ILOG_KAFKA_BOOTSTRAP": f"127.0.0.1:{down}", "ILOG_REDIS_URL": f"redis://127.0.0.1:{down}/0",
                "ILOG_LOG_FORMAT": "json"})
    log_path = tmp_path / "worker.log"
    with port_taken(DEFAULT_PORT), log_path.open("wb") as log_file:
        worker = subprocess.Popen([str(ILOG), "worker", "fold"], cwd=tmp_path, env=env, stdout=log_file,
                                  stderr=log_file)
        try:
            warning = _wait_for_line(log_path, "health port in use", worker)
            assert DEFAULT_PORT == warning["default_port"]
            port = int(warning["http_port"])
            assert port != DEFAULT_PORT
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as answer:
                assert 200 == answer.status
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)


def _wait_for_line(path: Path, event: str, worker: subprocess.Popen[bytes], timeout_s: float = 30) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith("{") and event in line:
                found: dict[str, Any] = json.loads(line)
                return found
        assert worker.poll() is None, path.read_text(errors="replace")
        time.sleep(0.1)
    raise AssertionError(f"no {event!r} line in {path}: {path.read_text(errors='replace')}")
