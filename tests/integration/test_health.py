"""The health port of a running worker: /healthz, /readyz, /metrics."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.support import WorkerProcess, produce
from worker.runtime.settings import Settings


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
