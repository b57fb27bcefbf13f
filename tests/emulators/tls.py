"""A throw-away certificate authority for the HTTPS emulator (Salesforce URLs are always https)."""

from __future__ import annotations

import ssl
from pathlib import Path

import trustme


def server_context(ca_path: Path) -> ssl.SSLContext:
    """Create a CA, write its PEM to `ca_path`, return a server context for 127.0.0.1/localhost."""
    ca = trustme.CA(organization_name="ilog emulator test CA")
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_path.parent.mkdir(parents=True, exist_ok=True)
    ca.cert_pem.write_to_path(str(ca_path))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context
