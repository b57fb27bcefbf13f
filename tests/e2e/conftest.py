"""CRM emulators for end-to-end tests: started once per session in this process.

`Emulators.env` holds the ILOG_* settings for the adapters and the ZENPY_FORCE_NETLOC /
ZENPY_FORCE_SCHEME variables; the session fixture also sets those two in os.environ, because
zenpy reads them from the process environment on every request.
`ca_bundle` is the path of the PEM file of the test CA that signed the Salesforce certificate.
Note: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override `session.verify`; a session
that must trust the test CA needs `trust_env = False` (or `verify=` on each call).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.emulators.cluster import start_all

_ZENPY_VARS = ("ZENPY_FORCE_NETLOC", "ZENPY_FORCE_SCHEME")


@dataclass
class EmulatorHandle:
    base_url: str
    verify: str | bool = True

    def _call(self, method: str, action: str, payload: dict[str, Any] | None = None) -> Any:
        response = requests.request(method, f"{self.base_url}/__emulator/{action}", json=payload,
                                    verify=self.verify, timeout=10)
        response.raise_for_status()
        return response.json()

    def state(self) -> dict[str, Any]:
        return dict(self._call("GET", "state"))

    def requests(self) -> list[dict[str, Any]]:
        return list(self._call("GET", "requests")["requests"])

    def reset(self) -> None:
        self._call("POST", "reset")

    def inject(self, fault: str, count: int = 1, **params: Any) -> None:
        self._call("POST", "faults", {"fault": fault, "count": count, **params})

    def clear_faults(self) -> None:
        self._call("POST", "faults/clear")

    def seed(self, payload: dict[str, Any]) -> None:
        self._call("POST", "seed", payload)

    def expire_sessions(self) -> None:
        """Salesforce: every access token issued so far is invalid from now on."""
        self._call("POST", "expire_sessions")


@dataclass
class Emulators:
    salesforce: EmulatorHandle
    zendesk: EmulatorHandle
    webhook: EmulatorHandle
    ca_bundle: str
    env: dict[str, str]

    def reset(self) -> None:
        for handle in (self.salesforce, self.zendesk, self.webhook):
            handle.reset()


@pytest.fixture(scope="session")
def emulators() -> Iterator[Emulators]:
    with tempfile.TemporaryDirectory(prefix="ilog-emulators-") as state_dir:
        started = start_all(Path(state_dir))
        env = started.env()
        saved = {name: os.environ.get(name) for name in _ZENPY_VARS}
        os.environ.update({name: env[name] for name in _ZENPY_VARS})
        ca_bundle = str(started.ca_path)
        try:
            yield Emulators(
                salesforce=EmulatorHandle(started.salesforce.base_url, verify=ca_bundle),
                zendesk=EmulatorHandle(started.zendesk.base_url),
                webhook=EmulatorHandle(started.webhook.base_url),
                ca_bundle=ca_bundle,
                env=env,
            )
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
            started.stop()


@pytest.fixture
def fresh_emulators(emulators: Emulators) -> Emulators:
    emulators.reset()
    return emulators
