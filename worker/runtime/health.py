"""One small HTTP port: `/metrics` (Prometheus), `/healthz` (the loops come round), `/readyz` (dependencies up)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

ReadinessCheck = Callable[[], tuple[bool, str]]


class HealthServer:
    """Serves health and metrics on a daemon thread; `port` is the bound port (0 picks a free one)."""

    def __init__(self, host: str, port: int, readiness: ReadinessCheck, liveness: ReadinessCheck | None = None) -> None:
        self._readiness = readiness
        self._liveness = liveness or (lambda: (True, "ok"))
        handler = self._handler_class()
        self._server = ThreadingHTTPServer((host, port), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, name="health", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        readiness, liveness = self._readiness, self._liveness

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, generate_latest(), CONTENT_TYPE_LATEST)
                elif self.path == "/healthz":
                    alive, detail = liveness()
                    self._reply(200 if alive else 503, f"{detail}\n".encode(), "text/plain")
                elif self.path == "/readyz":
                    ready, detail = readiness()
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
