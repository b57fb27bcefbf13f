"""`ilog fold FILE`: the sample file folds to the expected logs and rejections."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "sample-events.jsonl"
ILOG = Path(sys.executable).parent / "ilog"


def ilog_fold(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ILOG), "fold", *args], capture_output=True, text=True, check=False, cwd=REPO,
                          timeout=60)


@pytest.fixture(scope="module")
def folded(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, dict[str, Any]], list[dict[str, Any]]]:
    rejects = tmp_path_factory.mktemp("fold") / "rejects.jsonl"
    done = ilog_fold(str(SAMPLE), "--rejects", str(rejects))
    assert done.returncode == 0, done.stderr
    logs = [json.loads(line) for line in done.stdout.splitlines()]
    assert [log["interaction_id"] for log in logs] == sorted(log["interaction_id"] for log in logs)
    return {log["interaction_id"]: log for log in logs}, [
        json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]


def ref(record_type: str, record_id: str, system: str = "salesforce") -> dict[str, str]:
    return {"system": system, "type": record_type, "id": record_id}


def test_voice_call_with_holds_navigation_and_edits(folded: tuple[dict[str, Any], list[Any]]) -> None:
    assert folded[0]["conv-voice-1"] == {
        "interaction_id": "conv-voice-1", "version": 13, "trigger": "opened", "state": "disconnected",
        "media": "voice", "direction": "inbound", "queue": None, "agent_id": "agent-7",
        "customer": {"address": "+4930123456", "name": "Ada Example"},
        "subject": "Inbound call from Ada Example", "notes": "Customer asked for a refund. Approved.",
        "name": ref("Contact", "003A0000000002"), "related_to": ref("Case", "500A0000000001"),
        "name_candidates": [ref("Contact", "003A0000000002")],
        "related_candidates": [ref("Case", "500A0000000001"), ref("Opportunity", "006A0000000001")],
        "connected_at": "2026-11-27T10:00:00Z", "disconnected_at": "2026-11-27T10:05:00Z",
        "edit_deadline": "2026-11-27T10:07:00Z", "finalized": False,
        "duration_seconds": 300, "hold_seconds": 40, "hold_count": 2, "talk_seconds": 260,
        "wrapup_code": None, "wrapup_note": None, "attributes": {}, "ignored_reconnects": 0,
    }


def test_chat_without_sequence_with_a_reconnect(folded: tuple[dict[str, Any], list[Any]]) -> None:
    chat = folded[0]["conv-chat-1"]
    assert {key: chat[key] for key in ("version", "trigger", "subject", "connected_at", "disconnected_at",
                                       "duration_seconds", "ignored_reconnects", "wrapup_code", "attributes")} == {
        "version": 6, "trigger": "updated", "subject": "Order status question",
        "connected_at": "2026-11-27T11:00:00Z", "disconnected_at": "2026-11-27T11:10:00Z",
        "duration_seconds": 600, "ignored_reconnects": 1, "wrapup_code": "Answered",
        "attributes": {"order": "A-17", "tier": "gold"},
    }


def test_email_arriving_out_of_order(folded: tuple[dict[str, Any], list[Any]]) -> None:
    email = folded[0]["conv-email-1"]
    assert {key: email[key] for key in ("version", "subject", "notes", "related_to", "related_candidates",
                                        "duration_seconds")} == {
        "version": 4, "subject": "Inbound email from ada@example.com", "notes": "Replied with the return label.",
        "related_to": ref("ticket", "123", "zendesk"), "related_candidates": [ref("ticket", "123", "zendesk")],
        "duration_seconds": 1200,
    }


def test_queue_call_copies_the_note_to_the_wrapup_note(folded: tuple[dict[str, Any], list[Any]]) -> None:
    queue = folded[0]["conv-queue-1"]
    assert {key: queue[key] for key in ("version", "queue", "name", "notes", "wrapup_code", "wrapup_note",
                                        "hold_seconds", "hold_count", "talk_seconds", "attributes")} == {
        "version": 7, "queue": "Support", "name": ref("Lead", "00QA0000000001"),
        "notes": "Wants a callback tomorrow.", "wrapup_code": "Callback", "wrapup_note": "Wants a callback tomorrow.",
        "hold_seconds": 45, "hold_count": 1, "talk_seconds": 315, "attributes": {"tier": "silver"},
    }


def test_rejections_carry_id_subject_reason_message_and_line(folded: tuple[dict[str, Any], list[Any]]) -> None:
    assert folded[1] == [
        {"id": "v-14", "subject": "conv-voice-1", "reason": "late_edit", "line": 18,
         "message": "log.updated: time 2026-11-27T10:08:00Z is after the edit deadline 2026-11-27T10:07:00Z "
                    "(disconnected at 2026-11-27T10:05:00Z)"},
        {"id": None, "subject": None, "reason": "invalid", "line": 22,
         "message": "not JSON: Expecting ',' delimiter at char 65"},
        {"id": "e-05", "subject": "conv-email-1", "reason": "invalid", "line": 27,
         "message": "data.media: Input should be 'voice', 'callback', 'chat', 'email' or 'message'"},
        {"id": "q-08", "subject": "conv-queue-1", "reason": "unknown_type", "line": 35,
         "message": "type: unknown event type 'interaction.survey' (known: interaction.attributes, "
                    "interaction.connected, interaction.disconnected, interaction.held, interaction.resumed, "
                    "interaction.wrapup, log.opened, log.updated, record.viewed)"},
    ]


def test_unreadable_file_exits_2_with_one_line(tmp_path: Path) -> None:
    done = ilog_fold(str(tmp_path / "missing.jsonl"))
    assert (done.returncode, done.stdout, len(done.stderr.strip().splitlines())) == (2, "", 1)
    assert "cannot read" in done.stderr


def test_without_rejects_file_the_count_goes_to_stderr() -> None:
    done = ilog_fold(str(SAMPLE))
    assert done.returncode == 0
    assert done.stderr.strip() == "ilog fold: 4 event(s) rejected (see --rejects FILE)"
    assert len(done.stdout.splitlines()) == 4


def test_a_file_with_a_byte_order_mark_and_crlf_line_ends_folds_every_line(tmp_path: Path) -> None:
    events = [{"specversion": "1.0", "id": f"w-{n}", "source": "/test", "type": "log.opened", "subject": "conv-w",
               "time": f"2026-11-27T10:00:0{n}Z", "data": {}} for n in (1, 2)]
    written = tmp_path / "windows.jsonl"
    written.write_bytes(b"\xef\xbb\xbf" + b"".join(json.dumps(event).encode() + b"\r\n" for event in events))
    rejects = tmp_path / "rejects.jsonl"
    done = ilog_fold(str(written), "--rejects", str(rejects))
    assert (0, "", 2) == (done.returncode, rejects.read_text(), json.loads(done.stdout)["version"])
    validated = subprocess.run([str(ILOG), "validate", str(written)], capture_output=True, text=True, check=False,
                               timeout=60)
    assert (0, "") == (validated.returncode, validated.stdout)


def test_an_event_taking_the_log_over_the_snapshot_bound_is_rejected_too_large_as_the_worker_rejects_it(
        tmp_path: Path) -> None:
    """`ILOG_MAX_SNAPSHOT_BYTES` holds offline too: the event is `too_large`, the log stays as it was."""
    def event(n: int, kind: str, data: dict[str, Any]) -> dict[str, Any]:
        return {"specversion": "1.0", "id": f"s-{n}", "source": "/test", "type": kind, "subject": "conv-s",
                "time": f"2026-11-27T10:00:0{n}Z", "data": data}
    events = [event(1, "interaction.connected", {"media": "chat", "direction": "inbound", "queue": None,
                                                 "agent_id": "a-1", "customer": {"address": "x@y", "name": "X"}}),
              event(2, "log.updated", {"notes": "short"}),
              event(3, "log.updated", {"notes": "x" * 1500})]
    written = tmp_path / "big.jsonl"
    written.write_text("".join(json.dumps(e) + "\n" for e in events))
    rejects = tmp_path / "rejects.jsonl"
    done = subprocess.run([str(ILOG), "fold", str(written), "--rejects", str(rejects)], capture_output=True,
                          text=True, check=False, cwd=tmp_path, timeout=60,
                          env={**{k: v for k, v in os.environ.items() if not k.startswith("ILOG_")},
                               "ILOG_MAX_SNAPSHOT_BYTES": "2048"})
    assert done.returncode == 0, done.stderr
    log = json.loads(done.stdout)
    [refused] = [json.loads(line) for line in rejects.read_text().splitlines()]
    assert (log["notes"], log["version"]) == ("short", 2)
    assert (refused["id"], refused["reason"], refused["line"]) == ("s-3", "too_large", 3)
    assert refused["message"].startswith("snapshot: the log would be ")
    assert refused["message"].endswith("over the bound of 1984 bytes (ILOG_MAX_SNAPSHOT_BYTES=2048 less 64 bytes "
                                       "of room)")
