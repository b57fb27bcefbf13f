"""`ilog validate FILE…`: every rejected line with its number, field and reason; exit 1 when any is rejected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "tests" / "data" / "sample-events.jsonl"
ILOG = Path(sys.executable).parent / "ilog"
VALID = {"specversion": "1.0", "id": "evt-1", "source": "/platform/conversations", "type": "interaction.held",
         "subject": "conv-1", "time": "2026-11-27T10:00:00Z", "data": {}}


def ilog_validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ILOG), "validate", *args], capture_output=True, text=True, check=False, cwd=REPO,
                          timeout=60)


def test_the_sample_file_reports_each_rejected_line_with_number_field_and_reason() -> None:
    done = ilog_validate(str(SAMPLE))
    name = str(SAMPLE)
    assert (1, [
        f"{name}:22: invalid (event): not JSON: Expecting ',' delimiter at char 65",
        f"{name}:27: invalid (data.media): data.media: Input should be 'voice', 'callback', 'chat', 'email' or "
        "'message'",
        f"{name}:35: unknown_type (type): type: unknown event type 'interaction.survey' (known: "
        "interaction.attributes, interaction.connected, interaction.disconnected, interaction.held, "
        "interaction.resumed, interaction.wrapup, log.opened, log.updated, record.viewed)",
    ], "ilog validate: 3 of 35 event(s) rejected in 1 file(s)\n") == (
        done.returncode, done.stdout.splitlines(), done.stderr)


def test_json_output_is_one_object_per_rejected_line() -> None:
    done = ilog_validate("--json", str(SAMPLE))
    assert 1 == done.returncode
    assert {"file": str(SAMPLE), "line": 27, "field": "data.media", "id": "e-05", "subject": "conv-email-1",
            "reason": "invalid",
            "message": "data.media: Input should be 'voice', 'callback', 'chat', 'email' or 'message'"} == json.loads(
        done.stdout.splitlines()[1])
    assert [22, 27, 35] == [json.loads(line)["line"] for line in done.stdout.splitlines()]


def test_valid_files_exit_0_and_print_no_rejection(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(VALID) + "\n\n")
    second.write_text(json.dumps({**VALID, "id": "evt-2"}) + "\n")
    done = ilog_validate(str(first), str(second))
    assert (0, "", "ilog validate: 0 of 2 event(s) rejected in 2 file(s)\n") == (
        done.returncode, done.stdout, done.stderr)


def test_a_rejection_in_the_second_file_names_that_file_and_line(tmp_path: Path) -> None:
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_text(json.dumps(VALID) + "\n")
    second.write_text(json.dumps(VALID) + "\n" + json.dumps({**VALID, "subject": 42}) + "\n")
    done = ilog_validate(str(first), str(second))
    assert (1, [f"{second}:2: invalid (subject): subject: Input should be a valid string"]) == (
        done.returncode, done.stdout.splitlines())


def test_an_unreadable_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = ilog_validate(str(tmp_path / "missing.jsonl"))
    assert (2, "", [f"ilog validate: cannot read {tmp_path / 'missing.jsonl'}: No such file or directory"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


def test_an_event_timed_past_the_allowed_skew_is_future_time_as_the_worker_would_answer(tmp_path: Path) -> None:
    file = tmp_path / "future.jsonl"
    file.write_text(json.dumps(VALID) + "\n" + json.dumps({**VALID, "id": "evt-2", "time": "2099-01-01T00:00:00Z"})
                    + "\n")
    done = ilog_validate(str(file))
    [line] = done.stdout.splitlines()
    assert (1, f"{file}:2: future_time (time): time: 2099-01-01T00:00:00Z is") == (
        done.returncode, line[:len(f"{file}:2: future_time (time): time: 2099-01-01T00:00:00Z is")])


def test_an_attribute_breaking_a_bound_names_the_attributes_field(tmp_path: Path) -> None:
    def attributes(values: dict[str, str]) -> str:
        return json.dumps({**VALID, "type": "interaction.attributes", "data": {"attributes": values}})

    events = tmp_path / "attributes.jsonl"
    events.write_text("\n".join([attributes({"k" * 101: "v"}), attributes({"tier level": "v" * 1001}),
                                 attributes({"k" * 100: "v" * 1000}), attributes({"crm:tier": "v" * 1001}),
                                 attributes({"crm:" + "k" * 97: "v"})]) + "\n")
    done = ilog_validate("--json", str(events))
    assert (1, [(1, "data.attributes", "too_large"), (2, "data.attributes.tier level", "too_large"),
                (4, "data.attributes.crm:tier", "too_large"), (5, "data.attributes", "too_large")]) == (
        done.returncode, [(found["line"], found["field"], found["reason"])
                          for found in map(json.loads, done.stdout.splitlines())])


def test_a_type_that_is_not_a_string_names_the_type_field(tmp_path: Path) -> None:
    events = tmp_path / "types.jsonl"
    events.write_text("\n".join(json.dumps({**VALID, "type": tag}) for tag in (None, 5, ["interaction.held"])) + "\n")
    done = ilog_validate("--json", str(events))
    assert (1, [(line, "type", "invalid") for line in (1, 2, 3)]) == (
        done.returncode, [(found["line"], found["field"], found["reason"])
                          for found in map(json.loads, done.stdout.splitlines())])
