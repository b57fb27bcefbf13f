"""The clients' session reads proxy and CA settings from the environment once per origin."""

from __future__ import annotations

import pytest

from adapters.http_session import RecordingSession


def test_proxies_come_from_the_environment_per_origin_and_honour_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    session = RecordingSession(None, 5.0)

    assert session.proxies_for("https://hooks.example/a")["https"] == "http://proxy.example:3128"
    assert session.proxies_for("https://internal.example/x") == {}


def test_proxies_are_read_once_per_origin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://first.example:3128")
    session = RecordingSession(None, 5.0)
    first = session.proxies_for("https://hooks.example/a")
    monkeypatch.setenv("HTTPS_PROXY", "http://second.example:3128")

    assert session.proxies_for("https://hooks.example/b") == first
    assert session.proxies_for("https://other.example/")["https"] == "http://second.example:3128"


def test_the_ca_bundle_setting_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/env/bundle.pem")
    assert RecordingSession(None, 5.0)._env_verify == "/env/bundle.pem"
    session = RecordingSession("/configured/ca.pem", 5.0)
    assert session.trust_env is False
    assert session.ca_bundle == "/configured/ca.pem"
