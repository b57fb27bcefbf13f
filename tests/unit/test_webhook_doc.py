"""The verification snippet of docs/webhooks.md, run as written against requests the webhook target signs."""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adapters.base import SyncItem
from adapters.webhook import WebhookTarget
from schemas.snapshot import LogSnapshot
from tests.emulators.standard_webhooks import VerificationError, reference_key

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

Verify = Callable[[str, dict[str, str], bytes], bool]


def doc_snippet() -> str:
    text = DOC.read_text()
    marker = text.index("<!-- verification snippet")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.DOTALL)
    assert match is not None
    return match.group(1)


@pytest.fixture(scope="module")
def verify_delivery() -> Verify:
    namespace: dict[str, Any] = {}
    exec(compile(doc_snippet(), str(DOC), "exec"), namespace)
    verify: Verify = namespace["verify_delivery"]
    return verify


class _Answer:
    status_code = 200
    text = "{}"

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def json(self) -> dict[str, Any]:
        return {}


class CapturingSession:
    """Stands in for the HTTP session: keeps what the target would have sent."""

    timeout_s = 5.0

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, dict[str, str]]] = []

    def post(self, url: str, *, data: bytes, headers: dict[str, str]) -> _Answer:
        self.sent.append((data, {name.lower(): value for name, value in headers.items()}))
        return _Answer()

    def close(self) -> None:
        return None


def signed_request(secret: str) -> tuple[bytes, dict[str, str]]:
    session = CapturingSession()
    target = WebhookTarget(url="https://hooks.acme.example/ilog", secret=secret, session=session)
    try:
        snapshot = LogSnapshot.model_validate({"interaction_id": "conv-42", "version": 7, "trigger": "updated"})
        target.sync([SyncItem(snapshot)])
    finally:
        target.close()
    [request] = session.sent
    return request


@pytest.mark.parametrize("secret", [WHSEC, "a plain secret", "c2VjcmV0", "Grüße"])
def test_the_doc_snippet_accepts_what_the_target_signs(verify_delivery: Verify, secret: str) -> None:
    body, headers = signed_request(secret)
    assert verify_delivery(secret, headers, body)


@pytest.mark.parametrize("secret", [WHSEC, "a plain secret"])
def test_the_doc_snippet_rejects_a_changed_body_another_secret_and_a_stale_delivery(
    verify_delivery: Verify, secret: str
) -> None:
    body, headers = signed_request(secret)
    stale = {**headers, "webhook-timestamp": str(int(time.time()) - 301)}
    other_id = {**headers, "webhook-id": "msg_other"}
    assert [False, False, False, False] == [
        verify_delivery(secret, headers, body.replace(b"conv-42", b"conv-43")),
        verify_delivery("whsec_" + base64.b64encode(b"another key").decode(), headers, body),
        verify_delivery(secret, stale, body),
        verify_delivery(secret, other_id, body),
    ]


@pytest.mark.parametrize("secret", [WHSEC, WHSEC.removeprefix("whsec_"), "whsec_c2VjcmV0YQ", "my-secret", "Grüße", "x"])
def test_the_doc_snippet_derives_the_key_the_reference_package_derives(secret: str) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(doc_snippet(), str(DOC), "exec"), namespace)
    try:
        expected = reference_key(secret)
    except VerificationError:
        expected = secret.encode()
    assert expected == namespace["signing_key"](secret)
