"""One small HTTP port: `/metrics` (Prometheus), `/healthz` (the loops come round), `/readyz` (dependencies up).

The port is bound before the stages connect to anything. `ILOG_HTTP_PORT` left at its default and
already taken (a second `ilog worker` on one host: fold and sync side by side) falls back to a free
port, logged in `worker started`; a port set on purpose that cannot be bound is a bad setting.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from worker.errors import ConfigError

ReadinessCheck = Callable[[], tuple[bool, str]]

log = structlog.get_logger("ilog.runner")


def _not_started() -> tuple[bool, str]:
    return False, "starting"


class HealthServer:
    """Serves health and metrics on a daemon thread; `port` is the bound port (0 picks a free one).

    The port is bound at construction; `start` sets the checks and begins serving."""

    def __init__(self, host: str, port: int, readiness: ReadinessCheck = _not_started,
                 liveness: ReadinessCheck | None = None) -> None:
        self._readiness = readiness
        self._liveness = liveness or (lambda: (True, "ok"))
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self, readiness: ReadinessCheck | None = None, liveness: ReadinessCheck | None = None) -> HealthServer:
        """Serve with these checks; once serving, a later call only replaces the checks."""
        if readiness is not None:
            self._readiness = readiness
        if liveness is not None:
            self._liveness = liveness
        if not self._thread.is_alive():
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():  # `shutdown` waits for a serving loop that was never started otherwise
            self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:

        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    alive, detail = server._liveness()
                    self._reply(200 if alive else 503, f"{detail}\n".encode(), "text/plain")
                elif self.path == "/readyz":
                    ready, detail = server._readiness()
                    self._reply(200 if ready else 503, f"{detail}\n".encode(), "text/plain")
                else:
                    self._reply(404, b"not found\n", "text/plain")

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                return None

        return Handler


def bind_health_server(host: str, port: int, *, port_chosen: bool) -> HealthServer:
    """The health port, bound: a default port already in use falls back to a free one (with a warning);
    a port or host that was set and cannot be bound is a `ConfigError` (exit 2)."""
    try:
        return HealthServer(host, port)
    except OSError as error:
        if error.errno == errno.EADDRINUSE and not port_chosen:
            server = HealthServer(host, 0)
            log.warning("health port in use; serving /metrics, /healthz and /readyz on a free port instead "
                        "(set ILOG_HTTP_PORT to choose one)", default_port=port, http_port=server.port)
            return server
        raise ConfigError(
            f"cannot serve /metrics, /healthz and /readyz on {host}:{port} ({error.strerror or error}); "
            "set ILOG_HTTP_PORT (and ILOG_HTTP_HOST) to a free port this host can bind, 0 for any") from error
