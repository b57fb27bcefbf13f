"""Logs that tell the truth: one JSON line per record, whoever logged it (structlog, the standard library,
librdkafka), tracebacks as fields, repeats of the same client error held back."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import structlog

from tests.support import wait_for
from worker.runtime.logs import RepeatThrottle, configure_logging
from worker.runtime.settings import Settings

ILOG = Path(sys.executable).parent / "ilog"
RUN_S = 4


def lines_of(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_a_worker_against_an_unreachable_broker_writes_only_json_lines(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    env.update({"ILOG_KAFKA_BOOTSTRAP": f"127.0.0.1:{port}", "ILOG_REDIS_URL": f"redis://127.0.0.1:{port}/0",
                "ILOG_HTTP_PORT": "0", "ILOG_LOG_FORMAT": "json", "ILOG_EDIT_WINDOW_SECOND": "5",
                # a single node: with `auto` the worker would wait for Redis to say what it is before its Kafka clients
                "ILOG_REDIS_CLUSTER": "false"})
    worker = subprocess.Popen([str(ILOG), "worker", "fold"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env=env, cwd=tmp_path)
    assert worker.stdout is not None
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(worker.stdout or []), daemon=True)
    reader.start()
    # until both librdkafka's own line and the client error arrived (a loaded machine starts slowly)
    wait_for(lambda: any('"librdkafka"' in line for line in seen) and any("kafka client error" in line
                                                                         for line in seen), timeout_s=60)
    time.sleep(RUN_S)  # let reconnects repeat: they must be held back
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=60)
    reader.join(timeout=10)
    output = "".join(seen)
    records = lines_of(output)  # raises on any line that is not JSON
    loggers = {record["logger"] for record in records}
    assert {"ilog.runner", "ilog.kafka", "librdkafka"} <= loggers
    assert any(r["event"] == "kafka client error" and r["code"] == "_TRANSPORT" for r in records)
    assert any(r["event"].startswith("FAIL [rdkafka#") for r in records if r["logger"] == "librdkafka")
    assert {"event": "unknown setting", "level": "warning", "logger": "ilog.runner",
            "detail": "ILOG_EDIT_WINDOW_SECOND is not a setting and is ignored; did you mean "
                      "ILOG_EDIT_WINDOW_SECONDS?"} in [{k: v for k, v in r.items() if k != "timestamp"}
                                                        for r in records]
    # the same connection failure, repeated on every reconnect, is held back
    transport = [r for r in records if r["event"] == "kafka client error" and r["code"] == "_TRANSPORT"]
    assert len(transport) <= 3


def test_standard_library_logging_goes_through_the_same_chain(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(_env_file=None, log_format="json", log_level="INFO"))
    logging.getLogger("some.library").warning("pool is full, discarding connection: %s", "redis:6379")
    [record] = lines_of(capsys.readouterr().err)
    assert {"event": "pool is full, discarding connection: redis:6379", "level": "warning",
            "logger": "some.library"} == {k: v for k, v in record.items() if k != "timestamp"}


def test_a_traceback_is_a_structured_field_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(_env_file=None, log_format="json", log_level="INFO"))
    log = structlog.get_logger("ilog.test")
    try:
        raise ValueError("bad value")
    except ValueError:
        log.exception("step failed", partition=3)
    try:
        raise KeyError("k")
    except KeyError:
        logging.getLogger("some.library").exception("library failed")
    ours, theirs = lines_of(capsys.readouterr().err)
    assert ("step failed", 3) == (ours["event"], ours["partition"])
    assert [("ValueError", "bad value")] == [(e["exc_type"], e["exc_value"]) for e in ours["exception"]]
    assert ours["exception"][0]["frames"][-1]["name"] == "test_a_traceback_is_a_structured_field_on_one_line"
    assert "locals" not in ours["exception"][0]["frames"][-1]  # they would carry note text
    assert [("KeyError", "'k'")] == [(e["exc_type"], e["exc_value"]) for e in theirs["exception"]]


def test_note_text_and_credentials_are_redacted(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging(Settings(_env_file=None, log_format="json", log_level="INFO"))
    structlog.get_logger("ilog.test").info("synced", notes="Customer asked for a refund.", token="s3cret")
    [record] = lines_of(capsys.readouterr().err)
    assert ("[redacted]", "[redacted]") == (record["notes"], record["token"])


def test_a_repeated_message_passes_once_per_window_and_counts_the_held_back_ones() -> None:
    throttle = RepeatThrottle(window_s=3600)
    seen = [throttle.admit(f"Connect to 127.0.0.1:9 failed (after {n}ms)") for n in range(4)]
    assert [0, None, None, None] == seen
    assert 0 == throttle.admit("another message")
    passing = RepeatThrottle(window_s=0)
    assert [0, 0] == [passing.admit("x"), passing.admit("x")]
