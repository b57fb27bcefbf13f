"""The three emulators together, and the ILOG_* settings that point the adapters at them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.emulators.salesforce import DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET, SalesforceApp
from tests.emulators.server import EmulatorServer
from tests.emulators.tls import server_context
from tests.emulators.webhook import WebhookApp
from tests.emulators.zendesk import DEFAULT_EMAIL, DEFAULT_TOKEN, ZendeskApp

API_VERSION = "62.0"
DEFAULT_WEBHOOK_SECRET = "whsec_aWxvZy1lbXVsYXRvci13ZWJob29rLXNlY3JldA=="
"""A Standard Webhooks secret (`whsec_` + base64), so a receiver built on a Standard Webhooks library verifies the
emulators' deliveries with the secret `deploy/local/emulators env` prints; the key is `ilog-emulator-webhook-secret`."""
WEBHOOK_PATH = "/hooks/interaction-log"


@dataclass
class EmulatorSet:
    salesforce: EmulatorServer
    zendesk: EmulatorServer
    webhook: EmulatorServer
    ca_path: Path
    webhook_secret: str

    def env(self) -> dict[str, str]:
        """ILOG_* settings, plus the ZENPY_FORCE_* variables zenpy reads to reach a local host."""
        return {
            "ILOG_SALESFORCE_INSTANCE_URL": self.salesforce.base_url,
            "ILOG_SALESFORCE_LOGIN_URL": self.salesforce.base_url,
            "ILOG_SALESFORCE_CLIENT_ID": DEFAULT_CLIENT_ID,
            "ILOG_SALESFORCE_CLIENT_SECRET": DEFAULT_CLIENT_SECRET,
            "ILOG_SALESFORCE_API_VERSION": API_VERSION,
            "ILOG_SALESFORCE_CA_BUNDLE": str(self.ca_path),
            "ILOG_ZENDESK_URL": self.zendesk.base_url,
            "ILOG_ZENDESK_EMAIL": DEFAULT_EMAIL,
            "ILOG_ZENDESK_TOKEN": DEFAULT_TOKEN,
            "ILOG_WEBHOOK_URL": self.webhook.base_url + WEBHOOK_PATH,
            "ILOG_WEBHOOK_SECRET": self.webhook_secret,
            "ZENPY_FORCE_NETLOC": f"127.0.0.1:{self.zendesk.port}",
            "ZENPY_FORCE_SCHEME": "http",
        }

    def stop(self) -> None:
        for server in (self.salesforce, self.zendesk, self.webhook):
            server.stop()


def start_all(state_dir: Path, salesforce_port: int = 0, zendesk_port: int = 0, webhook_port: int = 0,
              webhook_secret: str = DEFAULT_WEBHOOK_SECRET) -> EmulatorSet:
    """Start all three on 127.0.0.1 in daemon threads; the CA PEM goes to state_dir/ca.pem."""
    ca_path = state_dir / "ca.pem"
    salesforce = EmulatorServer(SalesforceApp(), salesforce_port, ssl_context=server_context(ca_path))
    zendesk = EmulatorServer(ZendeskApp(), zendesk_port)
    webhook = EmulatorServer(WebhookApp(webhook_secret or None), webhook_port)
    for server in (salesforce, zendesk, webhook):
        server.start()
    # The Zendesk store builds ticket URLs from the base URL, known only once the port is bound.
    zendesk.app.reset()
    return EmulatorSet(salesforce, zendesk, webhook, ca_path, webhook_secret)
