"""The health port of a running worker: /healthz, /readyz, /metrics."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.support import WorkerProcess, event, produce, wait_for
from worker.runtime.settings import Settings

CONNECTED: dict[str, Any] = {"media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
                             "customer": {"address": "+4930123456", "name": "Ada Example"}}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()
    except OSError:
        return 0, ""


def _poll(url: str, status: int, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code, body = _get(url)
        if code == status:
            return body
        time.sleep(0.2)
    raise AssertionError(f"{url} never answered {status}")


def test_worker_serves_health_readiness_and_metrics(settings: Settings, tmp_path: Path) -> None:
    port = _free_port()
    configured = settings.model_copy(update={"http_port": port})
    worker = WorkerProcess("fold", configured, tmp_path / "worker.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert "ok" in _poll(f"{base}/healthz", 200)
        assert "ready" in _poll(f"{base}/readyz", 200)
        produce(configured, configured.events_topic, [b"not json at all"])
        metrics = ""
        deadline = time.monotonic() + 30
        while 'ilog_events_rejected_total{reason="invalid"} 1.0' not in metrics and time.monotonic() < deadline:
            metrics = _poll(f"{base}/metrics", 200)
            time.sleep(0.2)
        assert 'ilog_events_rejected_total{reason="invalid"} 1.0' in metrics
        assert "ilog_events_consumed_total 1.0" in metrics
        assert 404 == _get(f"{base}/nothing")[0]
    finally:
        assert 0 == worker.stop()


def _open_windows(metrics: str) -> float:
    """The sum of `ilog_open_windows` over the partitions the worker reports."""
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("ilog_open_windows{"))


def test_open_windows_rise_when_calls_disconnect_and_fall_when_their_windows_close(
    settings: Settings, tmp_path: Path
) -> None:
    port = _free_port()
    configured = settings.model_copy(update={"http_port": port, "edit_window_seconds": 20.0})
    worker = WorkerProcess("fold", configured, tmp_path / "worker.log")
    try:
        base = f"http://127.0.0.1:{port}"
        assert "ready" in _poll(f"{base}/readyz", 200)
        now = datetime.now(UTC)
        produce(configured, configured.events_topic, [
            event(kind, f"open-{n}", seq, now, data)
            for n in range(2)
            for seq, (kind, data) in enumerate([("interaction.connected", dict(CONNECTED)),
                                                ("interaction.disconnected", {})], start=1)
        ])
        assert wait_for(lambda: _open_windows(_poll(f"{base}/metrics", 200)) == 2.0, 15.0, 0.5), \
            "two windows are open, and /metrics does not say so"
        assert wait_for(lambda: _open_windows(_poll(f"{base}/metrics", 200)) == 0.0, 45.0, 0.5)
    finally:
        assert 0 == worker.stop()
