"""Build the enabled targets from Settings: a target is on when its URL is set (CONTRACT.md).

The one module of `worker/` that names targets: each receives its settings as values here (budget
limits, linger, timeouts) and declares what the sync engine needs through `Target.traits`.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import SecretStr

from adapters.base import BudgetLimits, Target
from adapters.http_post import Poster
from adapters.http_session import RecordingSession
from adapters.salesforce import SalesforceTarget
from adapters.salesforce_auth import SalesforceCredentials
from adapters.webhook import WebhookTarget
from adapters.webhook_signature import signing_key
from adapters.zendesk import ZendeskOptions, ZendeskTarget
from worker.errors import ConfigError
from worker.runtime.settings import Settings

TARGET_NAMES = (SalesforceTarget.name, ZendeskTarget.name, WebhookTarget.name)
"""Every target this build knows, enabled or not (what `ilog inspect` looks up)."""


class TargetConfigError(ConfigError):
    """A target is on (its URL is set) but a setting it needs is missing."""


def _secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


def _require(value: str | None, setting: str) -> str:
    if not value:
        raise TargetConfigError(f"ILOG_{setting.upper()} is required")
    return value


def _url(value: str | None, setting: str) -> str:
    """A target's URL: required, and http(s) with a host (`notaurl` would only fail at the first sync)."""
    url = _require(value, setting)
    try:
        parts = urlsplit(url)
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unbalanced `[`
        usable = False
    if not usable:
        raise TargetConfigError(f"ILOG_{setting.upper()}={url!r} is not an http(s) URL with a host")
    return url


def _ca_bundle(path: str | None, setting: str) -> str | None:
    """A private CA file, when set, must be readable now rather than fail every request later."""
    if path is not None and not Path(path).is_file():
        raise TargetConfigError(f"ILOG_{setting.upper()}={path!r}: no such file")
    return path


def _api_version(value: str) -> str:
    """`62.0`, also written `v62.0` as in the API's URLs; anything else would only 404 (a paused target)."""
    version = value.strip().removeprefix("v").removeprefix("V")
    if re.fullmatch(r"\d+\.\d", version) is None:
        raise TargetConfigError(f"ILOG_SALESFORCE_API_VERSION={value!r} is not a REST API version such as 62.0")
    return version


def _one_of(value: str | None, file: str | None, setting: str) -> None:
    if value and file:
        raise TargetConfigError(f"set ILOG_{setting.upper()} or ILOG_{setting.upper()}_FILE, not both")


def build_salesforce(settings: Settings) -> SalesforceTarget:
    secret_file = settings.salesforce_client_secret_file
    credentials = SalesforceCredentials(
        login_url=_url(settings.salesforce_login_url, "salesforce_login_url"),
        client_id=_require(settings.salesforce_client_id, "salesforce_client_id"),
        client_secret=_secret(settings.salesforce_client_secret),
        username=settings.salesforce_username,
        private_key_file=settings.salesforce_private_key_file,
        client_secret_file=secret_file,
    )
    _one_of(credentials.client_secret, secret_file, "salesforce_client_secret")
    has_secret = credentials.client_secret is not None or bool(secret_file)
    if not has_secret and not (credentials.username and credentials.private_key_file):
        raise TargetConfigError("Salesforce needs ILOG_SALESFORCE_CLIENT_SECRET(_FILE) or the JWT bearer settings")
    return SalesforceTarget(
        instance_url=_url(settings.salesforce_instance_url, "salesforce_instance_url"),
        credentials=credentials,
        session=RecordingSession(_ca_bundle(settings.salesforce_ca_bundle, "salesforce_ca_bundle"),
                                 settings.salesforce_timeout_seconds),
        api_version=_api_version(settings.salesforce_api_version),
        attribute_fields=settings.salesforce_attribute_fields,
        budget_pause_s=settings.salesforce_budget_pause_seconds,
        budget=BudgetLimits(settings.salesforce_budget_per_minute, settings.salesforce_budget_per_day),
        concurrent_calls=settings.salesforce_concurrent_calls,
    )


def build_zendesk(settings: Settings) -> ZendeskTarget:
    if settings.zendesk_mode == "field" and settings.zendesk_log_field_id is None:
        raise TargetConfigError("ILOG_ZENDESK_MODE=field needs ILOG_ZENDESK_LOG_FIELD_ID")
    options = ZendeskOptions(
        mode=settings.zendesk_mode,
        log_field_id=settings.zendesk_log_field_id,
        attribute_fields=dict(settings.zendesk_attribute_fields),
        missing_ticket=settings.zendesk_missing_ticket,
        job_poll_s=settings.zendesk_job_poll_seconds,
        job_timeout_s=settings.zendesk_job_timeout_seconds,
        linger_s=settings.zendesk_linger_seconds,
        budget=BudgetLimits(settings.zendesk_budget_per_minute, settings.zendesk_budget_per_day),
    )
    token_file = settings.zendesk_token_file
    _one_of(_secret(settings.zendesk_token), token_file, "zendesk_token")
    # With a token file the token is read before every batch; zenpy only needs a placeholder to start.
    token = "from-file" if token_file else _require(_secret(settings.zendesk_token), "zendesk_token")
    return ZendeskTarget(
        url=_url(settings.zendesk_url, "zendesk_url"),
        email=_require(settings.zendesk_email, "zendesk_email"),
        token=token,
        session=RecordingSession(_ca_bundle(settings.zendesk_ca_bundle, "zendesk_ca_bundle"),
                                 settings.zendesk_timeout_seconds, raise_on_429=True),
        options=options,
        token_file=token_file,
    )


def build_webhook(settings: Settings) -> WebhookTarget:
    secret = _require(_secret(settings.webhook_secret), "webhook_secret")
    try:
        signing_key(secret)
    except ValueError as exc:
        raise TargetConfigError(f"ILOG_WEBHOOK_SECRET: {exc}") from exc
    url = _url(settings.webhook_url, "webhook_url")
    return WebhookTarget(
        url=url,
        secret=secret,
        session=Poster(url, _ca_bundle(settings.webhook_ca_bundle, "webhook_ca_bundle"),
                       settings.webhook_timeout_seconds, maxsize=settings.webhook_concurrency),
        concurrency=settings.webhook_concurrency,
    )


NO_TARGET_MESSAGE = (
    "no sync target configured: set ILOG_SALESFORCE_INSTANCE_URL, ILOG_ZENDESK_URL or ILOG_WEBHOOK_URL"
)


def enabled_target_names(settings: Settings) -> list[str]:
    """The targets that are on (their URL is set), in the order `build_targets` builds them."""
    urls = (("salesforce", settings.salesforce_instance_url), ("zendesk", settings.zendesk_url),
            ("webhook", settings.webhook_url))
    return [name for name, url in urls if url]


def build_targets(settings: Settings) -> list[Target]:
    """The targets whose URL is set, in a fixed order; nothing connects until the first sync."""
    targets: list[Target] = []
    if settings.salesforce_instance_url:
        targets.append(build_salesforce(settings))
    if settings.zendesk_url:
        targets.append(build_zendesk(settings))
    if settings.webhook_url:
        targets.append(build_webhook(settings))
    return targets
