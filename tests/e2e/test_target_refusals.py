"""Which answers of the real services pause a target, through the real clients against the emulators.

Target-level (the target pauses, nothing is dead-lettered): a refused login, a 401, a 403 or 404 that
the API root repeats, a name that does not resolve. Record-level (dead-lettered): a 403 on one call
while the API root answers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import certifi
import pytest
from pydantic import SecretStr

from adapters.base import Failed, Retry, Synced, SyncItem, SyncOutcome
from tests.e2e import test_adapter_salesforce as sf
from tests.e2e import test_adapter_zendesk as zd
from tests.e2e.conftest import Emulators
from worker.runtime.targets import TargetConfigError, build_salesforce, build_webhook, build_zendesk


def _paused(outcome: SyncOutcome) -> tuple[str, str | None]:
    """(kind, target-level code) of an outcome."""
    code = outcome.target_unavailable if isinstance(outcome, Retry) else None
    return type(outcome).__name__, code


def _salesforce_once(emulators: Emulators, **overrides: Any) -> SyncOutcome:
    target = build_salesforce(sf.settings_for(emulators, salesforce_timeout_seconds=3.0, **overrides))
    try:
        [outcome] = target.sync([SyncItem(sf.snapshot())])
    finally:
        target.close()
    return outcome


def test_salesforce_refused_login_and_api_disabled_pause_a_single_forbidden_call_does_not(
    fresh_emulators: Emulators,
) -> None:
    salesforce = fresh_emulators.salesforce
    salesforce.inject("invalid_client", for_s=60, path="/services/oauth2/token")
    refused_login = _salesforce_once(fresh_emulators)
    salesforce.clear_faults()
    salesforce.inject("api_disabled", for_s=60, path="/services/data/")
    api_disabled = _salesforce_once(fresh_emulators)
    salesforce.clear_faults()
    salesforce.inject("api_disabled", count=1, path="composite")  # the API root still answers: the record
    one_forbidden = _salesforce_once(fresh_emulators)
    unknown_host = _salesforce_once(fresh_emulators, salesforce_instance_url="https://no-such-org.invalid")
    assert {
        "refused login": ("Retry", "LOGIN_INVALID_CLIENT"),
        "API disabled on every call": ("Retry", "API_DISABLED_FOR_ORG"),
        "one call forbidden": ("Failed", None),
        "unknown host": ("Retry", "DNS"),
    } == {
        "refused login": _paused(refused_login),
        "API disabled on every call": _paused(api_disabled),
        "one call forbidden": _paused(one_forbidden),
        "unknown host": _paused(unknown_host),
    }
    assert isinstance(one_forbidden, Failed) and "API_DISABLED_FOR_ORG" == one_forbidden.code
    assert [] == salesforce.state()["tasks"]


def test_salesforce_logs_in_with_the_secret_file_as_it_is_now(fresh_emulators: Emulators, tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("not-the-secret\n")
    overrides = {"salesforce_client_secret": None, "salesforce_client_secret_file": str(secret_file)}
    target = build_salesforce(sf.settings_for(fresh_emulators, **overrides))
    try:
        [refused] = target.sync([SyncItem(sf.snapshot())])
        secret_file.write_text(fresh_emulators.env["ILOG_SALESFORCE_CLIENT_SECRET"])
        [synced] = target.sync([SyncItem(sf.snapshot())])
    finally:
        target.close()
    assert ("Retry", "LOGIN_INVALID_CLIENT") == _paused(refused)
    assert isinstance(synced, Synced)


def test_zendesk_401_and_403_everywhere_pause_and_the_token_file_is_read_again(
    fresh_emulators: Emulators, tmp_path: Path
) -> None:
    [ticket_id] = zd.seed_tickets(fresh_emulators, 1)
    item = SyncItem(zd.final_log(related_to=zd.on_ticket(ticket_id)))
    token_file = tmp_path / "token"
    token_file.write_text("not-the-token\n")
    target = build_zendesk(zd.settings_for(fresh_emulators, zendesk_token=None, zendesk_token_file=str(token_file)))
    try:
        [unauthorized] = target.sync([item])
        token_file.write_text(fresh_emulators.env["ILOG_ZENDESK_TOKEN"])
        fresh_emulators.zendesk.inject("api_disabled", for_s=60)
        [forbidden] = target.sync([item])
        fresh_emulators.zendesk.clear_faults()
        [synced] = target.sync([item])
    finally:
        target.close()
    assert [("Retry", "HTTP_401"), ("Retry", "HTTP_403"), ("Synced", None)] == [
        _paused(unauthorized), _paused(forbidden), _paused(synced)]
    assert 1 == len(zd.worker_comments(zd.ticket(fresh_emulators, ticket_id)))


def test_webhook_receiver_that_cannot_be_resolved_pauses(fresh_emulators: Emulators) -> None:
    target = build_webhook(sf.settings_for(fresh_emulators, webhook_url="https://no-such-receiver.invalid/hook",
                                           webhook_secret=SecretStr("s")))
    try:
        [outcome] = target.sync([SyncItem(sf.snapshot())])
    finally:
        target.close()
    assert ("Retry", "DNS") == _paused(outcome)


def test_salesforce_at_a_wrong_address_or_behind_an_untrusted_certificate_pauses(
    fresh_emulators: Emulators, tmp_path: Path,
) -> None:
    """A login URL with no token endpoint there, a certificate the CA bundle does not trust: nothing about a
    record, so nothing is dead-lettered."""
    base = fresh_emulators.env["ILOG_SALESFORCE_INSTANCE_URL"].rstrip("/")
    other_ca = tmp_path / "other-ca.pem"
    other_ca.write_text(Path(certifi.where()).read_text())
    outcomes = {
        "no token endpoint": _salesforce_once(fresh_emulators, salesforce_login_url=f"{base}/no-such-login"),
        "untrusted certificate": _salesforce_once(fresh_emulators, salesforce_ca_bundle=str(other_ca)),
    }
    assert {name: "Retry" for name in outcomes} == {name: type(o).__name__ for name, o in outcomes.items()}, outcomes
    assert all(_paused(outcome)[1] for outcome in outcomes.values()), outcomes
    assert [] == fresh_emulators.salesforce.state()["tasks"]


def test_salesforce_api_version_written_as_in_its_urls_works_too_and_a_malformed_one_stops_the_start(
    fresh_emulators: Emulators,
) -> None:
    """`v62.0` (as the version appears in `/services/data/v62.0/`) is the same version as `62.0`; `latest`
    is a bad setting (exit 2 at start), not a target paused for good on 404s."""
    assert "Synced" == _paused(_salesforce_once(fresh_emulators, salesforce_api_version="v62.0"))[0]
    with pytest.raises(TargetConfigError, match="ILOG_SALESFORCE_API_VERSION"):
        build_salesforce(sf.settings_for(fresh_emulators, salesforce_api_version="latest"))
