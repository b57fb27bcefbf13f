"""Injected faults and the request log shared by every emulator.

A fault is armed with `POST /__emulator/faults` and fires on the next `count` requests that
match its optional `method` and `path` (substring) filters, or, with `for_s`, on every matching
request for that many seconds (a refused secret, API access turned off for a while).
`POST /__emulator/faults/clear` disarms every fault. Control requests under `/__emulator/` never
match and are never logged.

Refusals, shaped as the real services answer them: `invalid_client` (Salesforce token endpoint:
400 `{"error": "invalid_client", ...}`; Zendesk: 401), `invalid_grant` (Salesforce token endpoint: 400
`{"error": "invalid_grant", "error_description": "authentication failure"}`, as after a password or
key rotation; Zendesk: 401), `unauthorized` (Zendesk 401
`{"error": "Couldn't authenticate you"}`; Salesforce 401 INVALID_SESSION_ID), `api_disabled`
(Salesforce 403 API_DISABLED_FOR_ORG; Zendesk 403 Forbidden).

`latency` is not an error: the request waits `delay_s` before it is applied and answered as usual, as
over a link to a service a few hundred milliseconds away (with `for_s`, every matching request).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

FAULT_NAMES = frozenset({"429", "503", "invalid_session", "request_limit", "timeout", "drop_after_apply",
                         "invalid_client", "invalid_grant", "unauthorized", "api_disabled", "latency"})
# Faults that let the request reach the emulator's records before they misbehave.
APPLYING_FAULTS = frozenset({"timeout", "drop_after_apply", "latency"})


class FaultSpecError(ValueError):
    """The fault request body does not describe a known fault."""


@dataclass
class Fault:
    name: str
    remaining: int
    method: str | None = None
    path: str | None = None
    retry_after_s: int = 1
    delay_s: float = 5.0
    until_s: float | None = None  # monotonic; set: fires on every match until then, `remaining` unused

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method.upper():
            return False
        return not (self.path and self.path not in path)


def parse_fault(spec: dict[str, Any]) -> Fault:
    name = str(spec.get("fault", ""))
    if name not in FAULT_NAMES:
        raise FaultSpecError(f"unknown fault {name!r}; known: {sorted(FAULT_NAMES)}")
    count = int(spec.get("count", 1))
    if count < 1:
        raise FaultSpecError("count must be >= 1")
    retry_after = spec.get("retry_after", spec.get("retry_after_s", 1))
    for_s = spec.get("for_s")
    return Fault(
        name=name,
        remaining=count,
        method=spec.get("method"),
        path=spec.get("path"),
        retry_after_s=int(retry_after),
        delay_s=float(spec.get("delay_s", 5.0)),
        until_s=None if for_s is None else time.monotonic() + float(for_s),
    )


@dataclass
class FaultBook:
    """Armed faults, consumed first-armed first."""

    _faults: list[Fault] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def arm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            now_s = time.monotonic()
            self._faults = [f for f in self._faults if f.until_s is None or f.until_s > now_s]
            for fault in self._faults:
                if fault.matches(method, path) and fault.until_s is not None:
                    return fault
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining <= 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[dict[str, Any]]:
        with self._lock:
            return [{"fault": f.name, "remaining": f.remaining, "method": f.method, "path": f.path}
                    for f in self._faults]


@dataclass
class RequestLog:
    """Every API request answered (or dropped): method, path, status, time, fault."""

    _entries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    generation: int = 0
    """Counts resets: a request that arrived before the last one belongs to an earlier test."""

    def record(self, method: str, path: str, status: int | None, started_s: float,
               fault: str | None, generation: int | None = None) -> None:
        """Log one answered request; one that arrived before the last reset (`generation`) is not logged."""
        entry = {
            "method": method,
            "path": path,
            "status": status,
            "time": started_s,
            "duration_ms": round((time.time() - started_s) * 1000, 3),
            "fault": fault,
        }
        with self._lock:
            if generation is None or generation == self.generation:
                self._entries.append(entry)

    def entries(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.generation += 1
