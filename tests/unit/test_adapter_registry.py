"""A target is on when its URL is set; a target that is on but misconfigured fails at start."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from adapters.base import BudgetLimits, TargetTraits
from worker.runtime.settings import Settings
from worker.runtime.targets import TargetConfigError, build_targets

SALESFORCE = {
    "salesforce_instance_url": "https://acme.my.salesforce.com",
    "salesforce_client_id": "client",
    "salesforce_client_secret": SecretStr("secret"),
}
ZENDESK = {
    "zendesk_url": "https://acme.zendesk.com",
    "zendesk_email": "a@acme.example",
    "zendesk_token": SecretStr("t"),
}
WEBHOOK = {"webhook_url": "https://hooks.acme.example/ilog", "webhook_secret": SecretStr("k")}


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)


@pytest.mark.parametrize(
    ("values", "names"),
    [
        ({}, []),
        (SALESFORCE, ["salesforce"]),
        ({**ZENDESK, **WEBHOOK}, ["zendesk", "webhook"]),
        ({**SALESFORCE, **ZENDESK, **WEBHOOK}, ["salesforce", "zendesk", "webhook"]),
    ],
)
def test_targets_are_on_when_their_url_is_set(values: dict[str, Any], names: list[str]) -> None:
    targets = build_targets(settings(**values))
    try:
        assert names == [target.name for target in targets]
    finally:
        for target in targets:
            target.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({**SALESFORCE, "salesforce_client_secret": None}, r"CLIENT_SECRET\(_FILE\) or the JWT bearer settings"),
        ({**SALESFORCE, "salesforce_client_secret_file": "/run/secret"}, "CLIENT_SECRET_FILE, not both"),
        ({**ZENDESK, "zendesk_token_file": "/run/token"}, "ILOG_ZENDESK_TOKEN_FILE, not both"),
        ({**SALESFORCE, "salesforce_client_id": None}, "ILOG_SALESFORCE_CLIENT_ID is required"),
        ({**ZENDESK, "zendesk_token": None}, "ILOG_ZENDESK_TOKEN is required"),
        ({**ZENDESK, "zendesk_mode": "field"}, "needs ILOG_ZENDESK_LOG_FIELD_ID"),
        ({**WEBHOOK, "webhook_secret": None}, "ILOG_WEBHOOK_SECRET is required"),
        ({**WEBHOOK, "webhook_url": "notaurl"}, "ILOG_WEBHOOK_URL='notaurl' is not an http"),
        ({**WEBHOOK, "webhook_url": "ftp://hooks.acme.example/ilog"}, "ILOG_WEBHOOK_URL='ftp://"),
        ({**WEBHOOK, "webhook_url": "http://[::1/ilog"}, "ILOG_WEBHOOK_URL=.http://\\[::1/ilog. is not"),
        ({**ZENDESK, "zendesk_url": "acme.zendesk.com"}, "ILOG_ZENDESK_URL='acme.zendesk.com' is not an http"),
        ({**SALESFORCE, "salesforce_instance_url": "https://"}, "ILOG_SALESFORCE_INSTANCE_URL='https://' is not"),
        ({**SALESFORCE, "salesforce_login_url": "login.salesforce.com"}, "ILOG_SALESFORCE_LOGIN_URL="),
        ({**SALESFORCE, "salesforce_ca_bundle": "/nonexistent/ca.pem"}, "ILOG_SALESFORCE_CA_BUNDLE=.*no such file"),
        ({**WEBHOOK, "webhook_ca_bundle": "/nonexistent/ca.pem"}, "ILOG_WEBHOOK_CA_BUNDLE=.*no such file"),
    ],
)
def test_a_target_that_is_on_needs_its_settings(values: dict[str, Any], message: str) -> None:
    with pytest.raises(TargetConfigError, match=message):
        build_targets(settings(**values))


def test_enabled_target_names_follow_the_urls() -> None:
    from worker.runtime.targets import enabled_target_names

    assert [] == enabled_target_names(settings())
    assert ["salesforce", "webhook"] == enabled_target_names(settings(**SALESFORCE, **WEBHOOK))


def test_settings_reach_each_target_as_the_traits_it_declares() -> None:
    targets = build_targets(settings(
        **SALESFORCE, **ZENDESK, **WEBHOOK, salesforce_budget_per_minute=7, salesforce_budget_per_day=70,
        zendesk_budget_per_minute=8, zendesk_budget_per_day=80, zendesk_linger_seconds=2.5,
        zendesk_job_timeout_seconds=40.0, salesforce_concurrent_calls=3,
    ))
    try:
        assert {
            "salesforce": TargetTraits(budget=BudgetLimits(7, 70), concurrent_calls=3, side_call_items=200,
                                       final_linger_s=1.0, linger_items=200),
            "zendesk": TargetTraits(budget=BudgetLimits(8, 80), linger_s=2.5, linger_items=100, settle_s=40.0),
            "webhook": TargetTraits(),
        } == {target.name: target.traits for target in targets}
    finally:
        for target in targets:
            target.close()


def test_a_whsec_webhook_secret_that_is_not_base64_fails_at_start() -> None:
    with pytest.raises(TargetConfigError, match="ILOG_WEBHOOK_SECRET"):
        build_targets(settings(webhook_url="https://hooks.acme.example/ilog", webhook_secret=SecretStr("whsec_%%")))
