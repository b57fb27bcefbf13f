"""The webhook receiver, and the deploy/local/emulators script that runs all three as a process."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO
from tests.e2e.conftest import Emulators
from tests.emulators.server import Request
from tests.emulators.webhook import WebhookApp, receiver_id, sign, standard_headers
from tests.support import exited, parse_env_lines, wait_for

_ids = iter(range(1, 1_000_000))


def _post(emulators: Emulators, payload: Mapping[str, object], secret: str | None = None, *,
          message_id: str | None = None, timestamp_s: float | None = None,
          body: bytes | None = None) -> requests.Response:
    secret = secret or emulators.env["ILOG_WEBHOOK_SECRET"]
    body = body or json.dumps(payload).encode()
    headers = {"Content-Type": "application/json", "X-Signature": sign(secret, body),
               **standard_headers(secret, message_id or f"msg_{next(_ids)}", body, timestamp_s)}
    return requests.post(emulators.env["ILOG_WEBHOOK_URL"], data=body, timeout=5, headers=headers)


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
    assert [(d["status"], d["signature_valid"], d["legacy_signature_valid"], d["rejected"])
            for d in fresh_emulators.webhook.state()["deliveries"]] == [(401, False, False, "invalid signature")]


def test_a_delivery_older_or_newer_than_five_minutes_is_rejected(fresh_emulators: Emulators) -> None:
    stale = _post(fresh_emulators, {"interaction_id": "conv-s"}, timestamp_s=time.time() - 301)
    early = _post(fresh_emulators, {"interaction_id": "conv-s"}, timestamp_s=time.time() + 301)
    fresh = _post(fresh_emulators, {"interaction_id": "conv-s"}, timestamp_s=time.time() - 240)
    assert [401, 401, 200] == [stale.status_code, early.status_code, fresh.status_code]
    assert [("timestamp outside the tolerance", False), ("timestamp outside the tolerance", False), (None, True)] == [
        (d["rejected"], d["signature_valid"]) for d in fresh_emulators.webhook.state()["deliveries"]]


def test_a_body_signed_for_another_id_or_time_does_not_verify(fresh_emulators: Emulators) -> None:
    secret, body = fresh_emulators.env["ILOG_WEBHOOK_SECRET"], b'{"interaction_id": "conv-t"}'
    headers = standard_headers(secret, "msg_a", body)
    forged = {**headers, "webhook-id": "msg_b", "Content-Type": "application/json"}
    response = requests.post(fresh_emulators.env["ILOG_WEBHOOK_URL"], data=body, headers=forged, timeout=5)
    assert (401, {"error": "invalid signature"}) == (response.status_code, response.json())


def test_a_replayed_delivery_is_answered_as_before_and_not_processed_again(fresh_emulators: Emulators) -> None:
    payload = {"event": "interactionChanged", "log": {"interaction_id": "conv-r", "version": 1}}
    first = _post(fresh_emulators, payload, message_id="msg_r1")
    again = _post(fresh_emulators, payload, message_id="msg_r1")
    later = _post(fresh_emulators, payload, message_id="msg_r2")
    assert [{"id": receiver_id("conv-r")}, {"id": receiver_id("conv-r")}, {}] == [
        r.json() for r in (first, again, later)]
    assert [False, True, False] == [d["duplicate"] for d in fresh_emulators.webhook.state()["deliveries"]]


def test_a_whsec_secret_signs_with_its_base64_decoded_key_as_its_rest_alone_does() -> None:
    """The reference package reads `whsec_X` and `X` as one key; another key is refused."""
    app = WebhookApp("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    body = b'{"interaction_id": "conv-w"}'
    signed = standard_headers("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_w", body)
    plain = standard_headers("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_w", body)
    other = standard_headers("whsec_YW5vdGhlciBrZXk=", "msg_w", body)
    assert [None, None, "invalid signature"] == [
        app.rejection(Request("POST", "/", {}, headers, body)) for headers in (signed, plain, other)]


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


def test_script_lines_eval_in_a_shell_when_the_state_folder_has_a_space(tmp_path: Path) -> None:
    """`eval "$(deploy/local/emulators up)"` sets every setting whole, the CA bundle path with its space too."""
    script = str(REPO / "deploy" / "local" / "emulators")
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path / "stack dir")}
    shell = 'eval "$("$0" up)" && printf "%s\\n" "$ILOG_SALESFORCE_CA_BUNDLE" "$ILOG_WEBHOOK_URL"'
    try:
        evaluated = subprocess.run(["bash", "-c", shell, script], capture_output=True, text=True, env=env,
                                   timeout=60, check=False)
        assert evaluated.returncode == 0, evaluated.stderr
        ca_bundle, webhook_url = evaluated.stdout.splitlines()
        assert Path(ca_bundle) == tmp_path / "stack dir" / "emulators" / "ca.pem"
        assert Path(ca_bundle).is_file()
        assert webhook_url.startswith("http://127.0.0.1:")
        printed = subprocess.run([script, "env"], capture_output=True, text=True, env=env, timeout=60, check=True)
        assert parse_env_lines(printed.stdout)["ILOG_SALESFORCE_CA_BUNDLE"] == ca_bundle
    finally:
        subprocess.run([script, "down"], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_script_takes_a_relative_state_folder_from_the_working_directory(tmp_path: Path) -> None:
    script = str(REPO / "deploy" / "local" / "emulators")
    env = {**os.environ, "ILOG_STACK_DIR": "rel"}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, command], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60,
                              check=False)

    up = run("up")
    try:
        assert up.returncode == 0, up.stderr
        settings = parse_env_lines(up.stdout)
        assert Path(settings["ILOG_SALESFORCE_CA_BUNDLE"]) == tmp_path / "rel" / "emulators" / "ca.pem"
        assert requests.get(f"{settings['ILOG_ZENDESK_URL']}/__emulator/state", timeout=5).json()["tickets"] == []
        assert run("env").stdout == up.stdout
    finally:
        down = run("down")
    assert (down.returncode, run("env").returncode) == (0, 1)


def test_script_up_right_after_a_sigkilled_set_starts_a_new_one(tmp_path: Path) -> None:
    """The killed process is a zombie until init reaps it: `env` and `up` must not take it for running."""
    script = str(REPO / "deploy" / "local" / "emulators")
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path)}

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([script, command], capture_output=True, text=True, env=env, timeout=60, check=False)

    try:
        assert run("up").returncode == 0
        pid = int((tmp_path / "emulators" / "emulators.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: exited(pid), 10, 0.01)
        assert run("env").returncode == 1
        again = run("up")
        assert again.returncode == 0, again.stderr
        settings = parse_env_lines(again.stdout)
        assert requests.get(f"{settings['ILOG_ZENDESK_URL']}/__emulator/state", timeout=5).json()["tickets"] == []
    finally:
        run("down")


def test_two_script_ups_at_once_share_one_set(tmp_path: Path) -> None:
    script = str(REPO / "deploy" / "local" / "emulators")
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path)}
    ups = [subprocess.Popen([script, "up"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
           for _ in range(2)]
    try:
        printed = [up.communicate(timeout=60) for up in ups]
        assert [0, 0] == [up.returncode for up in ups], printed
        assert printed[0][0] == printed[1][0]
    finally:
        subprocess.run([script, "down"], capture_output=True, text=True, env=env, timeout=60, check=False)
    assert wait_for(lambda: not _serving(tmp_path), 10)


def _serving(state_dir: Path) -> list[int]:
    """Pids of emulator processes serving from `state_dir` (it is on their command line)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and str(state_dir).encode() in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_script_without_a_venv_runs_the_python3_on_path(tmp_path: Path) -> None:
    """A checkout whose project is installed in another virtualenv (activated: its python3 first on PATH)."""
    checkout = tmp_path / "checkout"
    (checkout / "deploy" / "local").mkdir(parents=True)
    shutil.copy2(REPO / "deploy" / "local" / "emulators", checkout / "deploy" / "local" / "emulators")
    (checkout / "tests").mkdir()
    shutil.copy2(REPO / "tests" / "__init__.py", checkout / "tests" / "__init__.py")
    shutil.copytree(REPO / "tests" / "emulators", checkout / "tests" / "emulators",
                    ignore=shutil.ignore_patterns("__pycache__"))
    activated = tmp_path / "venv-bin"
    activated.mkdir()
    (activated / "python3").write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    (activated / "python3").chmod(0o755)
    script = str(checkout / "deploy" / "local" / "emulators")
    env = {k: v for k, v in os.environ.items() if k != "PYTHON"}
    env |= {"ILOG_STACK_DIR": str(tmp_path / "stack"), "PATH": f"{activated}{os.pathsep}{env.get('PATH', '')}"}
    try:
        up = subprocess.run([script, "up"], capture_output=True, text=True, env=env, timeout=60, check=False)
        assert up.returncode == 0, up.stderr
        settings = parse_env_lines(up.stdout)
        assert requests.get(f"{settings['ILOG_ZENDESK_URL']}/__emulator/state", timeout=5).json()["tickets"] == []
    finally:
        subprocess.run([script, "down"], capture_output=True, text=True, env=env, timeout=60, check=False)
