"""The webhook receiver, and the deploy/local/emulators script that runs all three as a process."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, parse_env_lines
from tests.e2e.conftest import Emulators
from tests.emulators.webhook import receiver_id, sign


def _post(emulators: Emulators, payload: dict[str, object], secret: str | None = None) -> requests.Response:
    body = json.dumps(payload).encode()
    signature = sign(secret or emulators.env["ILOG_WEBHOOK_SECRET"], body)
    return requests.post(emulators.env["ILOG_WEBHOOK_URL"], data=body, timeout=5,
                         headers={"Content-Type": "application/json", "X-Signature": signature})


def test_first_delivery_gets_a_stable_receiver_id_later_ones_do_not(fresh_emulators: Emulators) -> None:
    answers = [_post(fresh_emulators, {"event": e, "log": {"interaction_id": "conv-1", "version": v}}).json()
               for v, e in enumerate(["interactionChanged", "interactionDisconnected"], start=1)]
    assert answers == [{"id": receiver_id("conv-1")}, {}]
    deliveries = fresh_emulators.webhook.state()["deliveries"]
    assert [(d["body"]["event"], d["signature_valid"], d["interaction_id"]) for d in deliveries] == [
        ("interactionChanged", True, "conv-1"), ("interactionDisconnected", True, "conv-1")]


def test_wrong_signature_is_401_and_recorded(fresh_emulators: Emulators) -> None:
    response = _post(fresh_emulators, {"interaction_id": "conv-2"}, secret="other")
    assert response.status_code == 401
    assert [(d["status"], d["signature_valid"]) for d in fresh_emulators.webhook.state()["deliveries"]] == [
        (401, False)]


def test_drop_after_apply_keeps_the_delivery(fresh_emulators: Emulators) -> None:
    fresh_emulators.webhook.inject("drop_after_apply")
    with pytest.raises(requests.ConnectionError):
        _post(fresh_emulators, {"interaction_id": "conv-3"})
    assert [d["interaction_id"] for d in fresh_emulators.webhook.state()["deliveries"]] == ["conv-3"]


def test_script_up_is_idempotent_env_matches_and_down_stops_it(tmp_path: Path) -> None:
    script = str(REPO / "deploy" / "local" / "emulators")
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path)}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, command], capture_output=True, text=True, env=env, timeout=60, check=False)

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr
        settings = parse_env_lines(up.stdout)
        assert run("up").stdout == up.stdout == run("env").stdout
        state = requests.get(f"{settings['ILOG_SALESFORCE_INSTANCE_URL']}/__emulator/state",
                             verify=settings["ILOG_SALESFORCE_CA_BUNDLE"], timeout=5).json()
        assert state["tasks"] == []
        assert settings["ZENPY_FORCE_NETLOC"] == settings["ILOG_ZENDESK_URL"].removeprefix("http://")
    finally:
        down = run("down")
    assert (down.returncode, run("env").returncode) == (0, 1)
