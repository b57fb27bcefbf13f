"""The HTTP(S) layer every emulator shares: routing to an app, control endpoints, faults.

Control endpoints (never logged, never faulted):
  GET  /__emulator/state      every record the emulator holds, as JSON
  GET  /__emulator/requests   the request log
  POST /__emulator/reset      forget records, faults, log and counters
  POST /__emulator/faults     {"fault", "count", "method"?, "path"?, "retry_after"?, "delay_s"?, "for_s"?}
  POST /__emulator/faults/clear  disarm every fault
  POST /__emulator/seed       app-specific seed data
  POST /__emulator/<other>    app-specific actions (e.g. expire_sessions)
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.emulators.faults import APPLYING_FAULTS, Fault, FaultBook, FaultSpecError, RequestLog, parse_fault

CONTROL_PREFIX = "/__emulator/"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")

    def param(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[0] if values else default


@dataclass
class Response:
    status: int
    body: Any = None  # JSON-serialisable, raw bytes, or None for an empty body
    headers: dict[str, str] = field(default_factory=dict)

    def encoded(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


class EmulatorApp:
    """Base for the emulated APIs: one lock serialises every change to the records."""

    name = "emulator"

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.base_url = ""

    def handle(self, request: Request) -> Response:
        return Response(404, {"error": "not found"})

    def fault_response(self, fault: Fault, request: Request) -> Response:
        return Response(503, {"error": "unavailable"})

    def decorate(self, request: Request, response: Response) -> None:
        """Add headers a real API puts on every answer (rate limits, usage)."""

    def state(self) -> dict[str, Any]:
        return {}

    def reset(self) -> None:
        """Forget every record and counter."""

    def seed(self, payload: dict[str, Any]) -> Response:
        return Response(404, {"error": "this emulator takes no seed"})

    def control(self, action: str, request: Request) -> Response | None:
        return None


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out in separate writes
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet: the request log records it
        pass

    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_GET  # noqa: N815 - names http.server dispatches to

    def _read_request(self) -> Request:
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        return Request(self.command, parts.path, parse_qs(parts.query), headers, body)

    def _send(self, response: Response) -> None:
        payload = response.encoded()
        self.send_response(response.status)
        if response.body is not None and not isinstance(response.body, bytes):
            self.send_header("Content-Type", "application/json;charset=UTF-8")
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _dispatch(self) -> None:
        request = self._read_request()
        if request.path.startswith(CONTROL_PREFIX):
            self._send(self.server.control(request))
            return
        started_s = time.time()
        # A request that arrived before a reset (sent by an earlier test's client, still waiting for the
        # app's lock) is answered 503 without being applied or logged: it must not land in the next test.
        generation = self.server.log.generation
        app, faults = self.server.app, self.server.faults
        fault = faults.take(request.method, request.path)
        if fault is not None and fault.name not in APPLYING_FAULTS:
            with app.lock:
                response = app.fault_response(fault, request)
        else:
            if fault is not None and fault.name == "latency":
                time.sleep(fault.delay_s)
            response = self._apply(request, generation)
        app.decorate(request, response)
        if fault is not None and fault.name == "drop_after_apply":
            self.server.log.record(request.method, self.path, None, started_s, fault.name, generation)
            self._drop()
            return
        if fault is not None and fault.name == "timeout":
            time.sleep(fault.delay_s)
        self.server.log.record(request.method, self.path, response.status, started_s,
                               fault.name if fault else None, generation)
        try:
            self._send(response)
        except OSError:  # the client gave up (timeout fault): the write is applied anyway
            self.close_connection = True

    def _apply(self, request: Request, generation: int) -> Response:
        app = self.server.app
        try:
            with app.lock:
                if generation != self.server.log.generation:  # reset under way or done since it arrived
                    return Response(503, {"error": "EmulatorReset", "description": "the emulator was reset"})
                return app.handle(request)
        except Exception as exc:  # an emulator bug must show up as a 500, not a hang
            traceback.print_exc()
            return Response(500, {"error": "EmulatorError", "description": repr(exc)})

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, app: EmulatorApp, host: str, port: int,
                 ssl_context: ssl.SSLContext | None) -> None:
        super().__init__((host, port), _Handler)
        self.app = app
        self.ssl_context = ssl_context
        self.faults = FaultBook()
        self.log = RequestLog()

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake runs here, in the request's own thread, so one slow client
        # cannot stall the accept loop.
        if self.ssl_context is not None:
            try:
                request = self.ssl_context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def control(self, request: Request) -> Response:
        action = request.path[len(CONTROL_PREFIX):].strip("/")
        try:
            return self._control(action, request)
        except (FaultSpecError, ValueError, KeyError, TypeError) as exc:
            return Response(400, {"error": "bad control request", "description": str(exc)})

    def _control(self, action: str, request: Request) -> Response:
        with self.app.lock:
            if action == "state" and request.method == "GET":
                return Response(200, self.app.state())
            if action == "requests" and request.method == "GET":
                return Response(200, {"requests": self.log.entries()})
            if action == "faults" and request.method == "GET":
                return Response(200, {"faults": self.faults.pending()})
            if action == "faults" and request.method == "POST":
                self.faults.arm(parse_fault(request.json()))
                return Response(200, {"armed": self.faults.pending()})
            if action == "faults/clear" and request.method == "POST":
                self.faults.clear()
                return Response(200, {"faults": []})
            if action == "reset" and request.method == "POST":
                self.faults.clear()
                self.log.clear()
                self.app.reset()
                return Response(200, {"reset": True})
            if action == "seed" and request.method == "POST":
                return self.app.seed(request.json() or {})
            answer = self.app.control(action, request)
        return answer if answer is not None else Response(404, {"error": f"no control action {action}"})


class EmulatorServer:
    """One emulator on 127.0.0.1, served from a daemon thread or the calling thread."""

    def __init__(self, app: EmulatorApp, port: int = 0, ssl_context: ssl.SSLContext | None = None,
                 host: str = "127.0.0.1") -> None:
        self.app = app
        self.httpd = EmulatorHTTPServer(app, host, port, ssl_context)
        scheme = "https" if ssl_context is not None else "http"
        self.port: int = self.httpd.server_address[1]
        self.base_url = f"{scheme}://{host}:{self.port}"
        app.base_url = self.base_url
        self._thread: threading.Thread | None = None

    def start(self) -> EmulatorServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.1},
                                        name=f"emulator-{self.app.name}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
