"""Standard Webhooks signing (pure): the key of a secret, the deterministic id, signature and verification."""

from __future__ import annotations

import pytest

from adapters.webhook_signature import signature, signed_headers, signing_key, verify, webhook_id

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'


def test_signature_matches_the_reference_vector_of_the_standard_webhooks_libraries() -> None:
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert expected == signature(signing_key(SPEC_SECRET), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)


@pytest.mark.parametrize(
    ("secret", "key"),
    [
        ("whsec_c2VjcmV0", b"secret"),  # base64 of "secret"
        ("whsec_c2VjcmV0YQ", b"secreta"),  # unpadded: the reference package pads it
        ("c2VjcmV0", b"secret"),  # no prefix: the reference package decodes it all the same
        ("secret", b"\xb1\xe7+z"),  # any ASCII it can decode is base64 to it
        ("my-secret", b"\x9b+\x1er\xb7\xad"),  # characters outside the alphabet skipped
        ("Grüße", "Grüße".encode()),  # beyond ASCII: the package refuses it, so the UTF-8 bytes
        ("x", b"x"),  # a length no base64 has
        ("!!!!", b"!!!!"),  # nothing left to decode
    ],
)
def test_the_key_is_the_reference_packages_and_the_utf8_bytes_only_where_it_refuses_the_string(
    secret: str, key: bytes
) -> None:
    assert key == signing_key(secret)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_", "whsec_%%"])
def test_a_whsec_secret_that_is_not_base64_is_refused(secret: str) -> None:
    with pytest.raises(ValueError, match="whsec_"):
        signing_key(secret)


def test_the_webhook_id_is_the_same_for_one_version_and_differs_between_versions() -> None:
    assert webhook_id("conv-42", 7) == webhook_id("conv-42", 7)
    assert len({webhook_id("conv-42", 7), webhook_id("conv-42", 8), webhook_id("conv-43", 7)}) == 3
    assert webhook_id("conv-42", 7).startswith("msg_") and len(webhook_id("conv-42", 7)) == 36
    assert webhook_id("ünïcode id", 1).isascii()


@pytest.mark.parametrize(
    ("now_s", "valid"),
    [(SPEC_TIMESTAMP, True), (SPEC_TIMESTAMP + 300, True), (SPEC_TIMESTAMP - 300, True),
     (SPEC_TIMESTAMP + 301, False), (SPEC_TIMESTAMP - 301, False)],
)
def test_verification_has_a_five_minute_tolerance(now_s: float, valid: bool) -> None:
    key = signing_key(SPEC_SECRET)
    assert valid is verify(key, signed_headers(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY), SPEC_BODY, now_s)


def test_one_matching_signature_among_several_verifies() -> None:
    key = signing_key(SPEC_SECRET)
    headers = signed_headers(key, SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY)
    rotated = {**headers, "webhook-signature": "v1,b2xkIGtleQ== " + headers["webhook-signature"]}
    assert verify(key, rotated, SPEC_BODY, SPEC_TIMESTAMP)
    assert not verify(key, {**headers, "webhook-signature": "v1,b2xkIGtleQ=="}, SPEC_BODY, SPEC_TIMESTAMP)
    assert not verify(key, {**headers, "webhook-id": "msg_other"}, SPEC_BODY, SPEC_TIMESTAMP)


def test_the_emulators_secret_verifies_as_a_standard_webhooks_library_reads_it() -> None:
    """Such libraries base64-decode the secret after stripping `whsec_` (whatever it looks like)."""
    import base64
    import hashlib
    import hmac

    from tests.emulators.cluster import DEFAULT_WEBHOOK_SECRET

    body = b'{"event": "interactionChanged"}'
    headers = signed_headers(signing_key(DEFAULT_WEBHOOK_SECRET), "msg_1", SPEC_TIMESTAMP, body)
    library_key = base64.b64decode(DEFAULT_WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(library_key, f"msg_1.{SPEC_TIMESTAMP}.".encode() + body, hashlib.sha256).digest()
    assert "v1," + base64.b64encode(digest).decode() == headers["webhook-signature"]

