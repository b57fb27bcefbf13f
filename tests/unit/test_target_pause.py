"""Target-level failures: which errors pause a target, the pause schedule, and the runner's pause."""

from __future__ import annotations

import time
from typing import Any

import pytest
import requests
import structlog
from prometheus_client import REGISTRY
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError, ProtocolError
from zenpy.lib.exception import APIException, RecordNotFoundException

from adapters.base import (
    Failed,
    PermanentSyncError,
    Retry,
    RetryableSyncError,
    Synced,
    SyncError,
    SyncOutcome,
    TargetState,
    TargetUnavailableError,
    outcome_for_error,
)
from adapters.http_session import transport_error
from adapters.salesforce_auth import SalesforceCredentials, fetch_access_token
from adapters.webhook import TARGET_LEVEL_STATUSES
from adapters.zendesk_errors import translate_zenpy_error
from tests.fakes import ScriptedTarget, json_response
from tests.unit.test_sync_target import Harness, _work
from worker.sync.pause import PauseControl, TargetPause, pause_wait_s


class _TokenSession(requests.Session):
    def __init__(self, answer: requests.Response) -> None:
        super().__init__()
        self.answer = answer
        self.forms: list[dict[str, str]] = []

    def post(self, url: str | bytes, data: Any = None, json: Any = None, **kwargs: Any) -> requests.Response:
        self.forms.append(dict(data))
        return self.answer


def _login_error(status: int, body: Any) -> SyncError | None:
    credentials = SalesforceCredentials("https://login.example", "client", client_secret="s3cret")
    try:
        fetch_access_token(_TokenSession(json_response(status, body)), credentials)
    except SyncError as exc:
        return exc
    return None


def _kind(error: SyncError | None) -> tuple[str, str | None]:
    """(class name, code) of a classified error, for comparing whole tables."""
    if error is None:
        return "None", None
    return type(error).__name__, getattr(error, "code", None)


def _unreachable(reason: Exception) -> requests.ConnectionError:
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def test_which_errors_pause_the_target() -> None:
    table: dict[str, SyncError | None] = {
        "salesforce invalid_client": _login_error(
            400, {"error": "invalid_client", "error_description": "invalid client credentials"}),
        "salesforce invalid_grant": _login_error(400, {"error": "invalid_grant", "error_description": "expired"}),
        "salesforce token 503": _login_error(503, {}),
        "zendesk 401": translate_zenpy_error(
            APIException(response=json_response(401, {"error": "Couldn't authenticate you"}))),
        "zendesk 422": translate_zenpy_error(APIException(response=json_response(422, {"error": "RecordInvalid"}))),
        "zendesk 429": translate_zenpy_error(APIException(response=json_response(429, {}))),
        "zendesk deleted ticket": translate_zenpy_error(RecordNotFoundException(response=json_response(404, {}))),
        "dns": transport_error(_unreachable(NameResolutionError("crm.example", None, "no such host"))),  # type: ignore[arg-type]
        "refused": transport_error(_unreachable(NewConnectionError(None, "refused"))),  # type: ignore[arg-type]
        "tls": transport_error(requests.exceptions.SSLError("certificate verify failed")),
        "connect timeout": transport_error(requests.ConnectTimeout()),
        "read timeout": transport_error(requests.ReadTimeout()),
        "reset mid-request": transport_error(requests.ConnectionError(ProtocolError("Connection aborted."))),
    }
    assert {
        "salesforce invalid_client": ("TargetUnavailableError", "LOGIN_INVALID_CLIENT"),
        "salesforce invalid_grant": ("TargetUnavailableError", "LOGIN_INVALID_GRANT"),
        "salesforce token 503": ("RetryableSyncError", None),
        "zendesk 401": ("TargetUnavailableError", "HTTP_401"),
        "zendesk 422": ("PermanentSyncError", "RecordInvalid"),
        "zendesk 429": ("RetryableSyncError", None),
        "zendesk deleted ticket": ("PermanentSyncError", "RecordNotFound"),
        "dns": ("TargetUnavailableError", "DNS"),
        "refused": ("TargetUnavailableError", "CONNECT"),
        "tls": ("TargetUnavailableError", "TLS"),
        "connect timeout": ("RetryableSyncError", None),
        "read timeout": ("RetryableSyncError", None),
        "reset mid-request": ("RetryableSyncError", None),
    } == {name: _kind(error) for name, error in table.items()}
    assert isinstance(table["read timeout"], RetryableSyncError) and table["read timeout"].uncertain
    assert {401, 403, 404, 407, 410} == TARGET_LEVEL_STATUSES  # webhook: the receiver, not the record


def test_a_refused_login_says_so_without_the_secret() -> None:
    error = _login_error(400, {"error": "invalid_client", "error_description": "invalid client credentials"})
    assert "LOGIN_INVALID_CLIENT: login refused (HTTP 400): invalid client credentials" == str(error)
    assert "s3cret" not in str(error)


def test_the_secret_file_is_read_again_on_every_login(tmp_path: Any) -> None:
    secret_file = tmp_path / "secret"
    credentials = SalesforceCredentials("https://login.example", "client", client_secret_file=str(secret_file))
    session = _TokenSession(json_response(200, {"access_token": "token"}))
    secret_file.write_text("old\n")
    fetch_access_token(session, credentials)
    secret_file.write_text("rotated\n")
    fetch_access_token(session, credentials)
    assert ["old", "rotated"] == [form["client_secret"] for form in session.forms]
    secret_file.unlink()
    assert ("TargetUnavailableError", "SECRET_FILE") == _kind(_login_error_from(session, credentials))


def _login_error_from(session: requests.Session, credentials: SalesforceCredentials) -> SyncError | None:
    try:
        fetch_access_token(session, credentials)
    except SyncError as exc:
        return exc
    return None


def test_a_target_level_error_becomes_a_retry_that_names_the_code() -> None:
    assert Retry(None, "LOGIN_INVALID_CLIENT: refused", target_unavailable="LOGIN_INVALID_CLIENT") == \
        outcome_for_error(TargetUnavailableError("LOGIN_INVALID_CLIENT", "refused"))
    assert Failed("FIELD_INTEGRITY_EXCEPTION", "bad") == outcome_for_error(
        PermanentSyncError("FIELD_INTEGRITY_EXCEPTION", "bad"))


def test_the_pause_schedule_doubles_from_the_base_up_to_the_ceiling_with_equal_jitter() -> None:
    def schedule(jitter: float) -> list[float]:
        return [pause_wait_s(attempt, None, base_s=1.0, ceiling_s=60.0, jitter=jitter) for attempt in range(1, 10)]

    assert [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 30.0] == schedule(0.0)
    assert [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0] == schedule(1.0)
    assert 7.0 == pause_wait_s(3, 7.0, base_s=1.0, ceiling_s=60.0, jitter=0.0)  # a Retry-After is a floor


def test_a_pause_describes_itself_for_readiness_and_knows_its_limit() -> None:
    pause = TargetPause("LOGIN_INVALID_CLIENT", "login refused (HTTP 400)", since_s=100.0, since_wall_s=0.0,
                        attempts=3, next_try_s=130.0)
    assert ("target salesforce paused for 25 s: LOGIN_INVALID_CLIENT (login refused (HTTP 400)); next try in 5 s"
            == pause.describe("salesforce", 125.0))
    assert (False, True, False) == (pause.over(30.0, 125.0), pause.over(30.0, 130.0), pause.over(None, 1e9))


def _paused_gauge(target: str) -> float | None:
    return REGISTRY.get_sample_value("ilog_target_paused", {"target": target})


def test_a_refusing_target_pauses_keeps_its_records_and_resumes_on_the_first_answer() -> None:
    refused = Retry(None, "LOGIN_INVALID_CLIENT: login refused", target_unavailable="LOGIN_INVALID_CLIENT")
    answers: list[SyncOutcome] = [refused] * 4
    script = {"a": [*answers, Synced("T-a", 3)], "b": [*answers, Synced("T-b", 3)]}
    target = ScriptedTarget(script)
    harness = Harness(target, pause_base_s=0.05, pause_ceiling_s=0.1)
    gauge_while_paused: list[float | None] = []
    original = harness.runner.pauses.refused

    def spy(refusal: Retry, now_s: float, queued: int) -> float:
        next_try_s = original(refusal, now_s, queued)
        gauge_while_paused.append(_paused_gauge("crm"))
        return next_try_s

    harness.runner.pauses.refused = spy  # type: ignore[method-assign,assignment]
    with structlog.testing.capture_logs() as logs:
        assert harness.run(_work("a", 0), _work("b", 1))
    assert [] == harness.dead
    assert 5 == len(target.calls)
    assert {("a", "crm"): TargetState("T-a", 3), ("b", "crm"): TargetState("T-b", 3)} == harness.store.states
    assert [("up", 0, 0), ("up", 0, 1)] == sorted(harness.done)
    assert [1.0, 1.0, 1.0, 1.0] == gauge_while_paused
    assert 0.0 == _paused_gauge("crm")
    events = [(e["event"], e.get("code"), e.get("attempt")) for e in logs if "target" in e["event"]]
    assert [("target paused", "LOGIN_INVALID_CLIENT", n) for n in (1, 2, 3, 4)] + [
        ("target resumed", "LOGIN_INVALID_CLIENT", None)] == events  # one line per wait, none per record
    assert harness.runner.pause is None


def test_a_pause_longer_than_the_limit_dead_letters_the_waiting_records_with_the_reason() -> None:
    refused = Retry(None, "HTTP_401: Couldn't authenticate you", target_unavailable="HTTP_401")
    target = ScriptedTarget({"a": [refused] * 1000, "b": [refused] * 1000})
    harness = Harness(target, pause_base_s=0.05, pause_ceiling_s=0.05, max_pause_s=0.2)
    started_s = time.monotonic()
    assert harness.run(_work("a", 0), _work("b", 1))
    assert time.monotonic() - started_s >= 0.2
    assert ["a", "b"] == sorted(interaction for interaction, _, _ in harness.dead)
    [(_, name, letter)] = {(i, n, f) for i, n, f in harness.dead if i == "a"}
    assert ("crm", "HTTP_401") == (name, letter.code)
    assert letter.message.startswith("target crm paused for 0 s, longer than ILOG_CRM_MAX_PAUSE_SECONDS=0.2: HTTP_401")
    assert [("up", 0, 0), ("up", 0, 1)] == sorted(harness.done)


@pytest.mark.parametrize("status", [403, 404])
def test_an_answer_about_a_record_after_a_pause_resumes_the_target(status: int) -> None:
    refused = Retry(None, f"HTTP_{status}: API_DISABLED_FOR_ORG", target_unavailable=f"HTTP_{status}")
    target = ScriptedTarget({"a": [refused, Failed("STRING_TOO_LONG", "Subject")]})
    harness = Harness(target, pause_base_s=0.01, pause_ceiling_s=0.01)
    assert harness.run(_work("a", 0))
    assert [("a", "crm", Failed("STRING_TOO_LONG", "Subject"))] == harness.dead
    assert harness.runner.pause is None


def test_refusals_of_calls_that_were_under_way_together_count_as_one_wait() -> None:
    refused = Retry(None, "invalid_grant", uncertain=True, target_unavailable="invalid_grant")
    control = PauseControl("crm-concurrent", base_s=10.0, ceiling_s=300.0)
    now_s = time.monotonic()
    first = control.refused(refused, now_s, queued=3)
    assert control.pause is not None and 1 == control.pause.attempts
    # the other calls in flight beside it come back refused too, before the wait is over
    assert first == control.refused(refused, now_s + 0.01, queued=3)
    assert first == control.refused(refused, now_s + 0.02, queued=3)
    assert 1 == control.pause.attempts
    later = control.refused(refused, first + 0.01, queued=3)  # the probe after the wait: the next step
    assert 2 == control.pause.attempts and later > first


@pytest.mark.parametrize(
    ("retry_after", "expected_s"), [("7", 7.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0), ("", None)])
def test_a_zendesk_503_reads_retry_after_as_seconds_or_an_http_date(retry_after: str, expected_s: float | None) -> None:
    """RFC 9110 allows either form; an HTTP date must not make the adapter raise (it is a plain retry)."""
    response = json_response(503, {"error": "unavailable"})
    response.headers["Retry-After"] = retry_after
    error = translate_zenpy_error(APIException(response=response))
    assert isinstance(error, RetryableSyncError)
    assert expected_s == error.retry_after_s
