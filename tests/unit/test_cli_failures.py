"""Every `ilog` command: a bad setting or an unreachable Kafka/Redis is one line on stderr and exit 2.

The services are loopback ports nothing listens on, so no stack is needed; the command runs as the
operator runs it (a subprocess), with the environment scrubbed of the caller's `ILOG_*` variables.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ILOG = Path(sys.executable).parent / "ilog"
SAMPLE = REPO / "tests" / "data" / "sample-events.jsonl"
# The commands that talk to Kafka, to Redis, and the offline ones (settings only).
# (the name a message starts with, the arguments)
KAFKA_COMMANDS = [
    ("ilog dlq list", ["dlq", "list"]), ("ilog dlq replay", ["dlq", "replay", "--yes"]),
    ("ilog replay", ["replay", "--from", "earliest"]), ("ilog topics create", ["topics", "create"]),
    ("ilog produce", ["produce", "--interactions", "1"]),
]
REDIS_COMMANDS = [("ilog inspect", ["inspect", "conv-1"])]
OFFLINE_COMMANDS = [("ilog fold", ["fold", str(SAMPLE)]), ("ilog validate", ["validate", str(SAMPLE)]),
                    ("ilog schema export", ["schema", "export", "out"])]
WORKER_COMMANDS = [("ilog worker fold", ["worker", "fold"]), ("ilog worker sync", ["worker", "sync"]),
                   ("ilog worker all", ["worker", "all"])]
A_TARGET = {"ILOG_WEBHOOK_URL": "http://127.0.0.1:9/hook", "ILOG_WEBHOOK_SECRET": "s"}  # a sync worker needs one
ALL_COMMANDS = KAFKA_COMMANDS + REDIS_COMMANDS + OFFLINE_COMMANDS + WORKER_COMMANDS


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def ilog(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    down = closed_port()
    clean.update({"ILOG_KAFKA_BOOTSTRAP": f"127.0.0.1:{down}", "ILOG_REDIS_URL": f"redis://127.0.0.1:{down}/0",
                  "ILOG_CONNECT_TIMEOUT_SECONDS": "1", "ILOG_HTTP_PORT": "0", **env})
    return subprocess.run([str(ILOG), *args], capture_output=True, text=True, check=False, cwd=cwd, env=clean,
                          timeout=60)


@pytest.mark.parametrize(("command", "args"), ALL_COMMANDS, ids=[c for c, _ in ALL_COMMANDS])
def test_a_bad_setting_is_one_line_naming_the_variable_and_exit_2(command: str, args: list[str],
                                                                  tmp_path: Path) -> None:
    done = ilog(args, tmp_path, ILOG_EDIT_WINDOW_SECONDS="abc")
    assert (2, "", [f"{command}: bad setting ILOG_EDIT_WINDOW_SECONDS='abc': Input should be "
                    "a valid number, unable to parse string as a number (fix the environment variable or .env; "
                    "docs: README 'Settings')"]) == (done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("command", "args"), KAFKA_COMMANDS, ids=[c for c, _ in KAFKA_COMMANDS])
def test_an_unreachable_kafka_is_one_line_and_exit_2(command: str, args: list[str], tmp_path: Path) -> None:
    done = ilog(args, tmp_path)
    lines = done.stderr.splitlines()
    assert (2, "", 1) == (done.returncode, done.stdout, len(lines)), done.stderr
    assert lines[0].startswith(f"{command}: cannot reach Kafka at 127.0.0.1:")
    assert lines[0].endswith("check ILOG_KAFKA_BOOTSTRAP (and any ILOG_KAFKA__ TLS/SASL options) and that the "
                             "brokers are up")


@pytest.mark.parametrize(("command", "args"), REDIS_COMMANDS, ids=[c for c, _ in REDIS_COMMANDS])
def test_an_unreachable_redis_is_one_line_and_exit_2(command: str, args: list[str], tmp_path: Path) -> None:
    done = ilog(args, tmp_path)
    lines = done.stderr.splitlines()
    assert (2, "", 1) == (done.returncode, done.stdout, len(lines)), done.stderr
    assert lines[0].startswith(f"{command}: cannot reach Redis at redis://127.0.0.1:")
    assert lines[0].endswith("; check ILOG_REDIS_URL and that Redis is up")


def test_a_redis_password_is_not_shown(tmp_path: Path) -> None:
    done = ilog(["inspect", "conv-1"], tmp_path, ILOG_REDIS_URL=f"redis://user:hunter2@127.0.0.1:{closed_port()}/0")
    assert 2 == done.returncode
    assert "hunter2" not in done.stderr
    assert "redis://user:***@127.0.0.1:" in done.stderr


def test_debug_adds_the_traceback(tmp_path: Path) -> None:
    done = ilog(["--debug", "inspect", "conv-1"], tmp_path, ILOG_EDIT_WINDOW_SECONDS="abc")
    assert 2 == done.returncode
    assert done.stderr.startswith("Traceback (most recent call last):")
    assert done.stderr.splitlines()[-1].startswith("ilog inspect: bad setting ILOG_EDIT_WINDOW_SECONDS='abc'")


def test_an_unknown_variable_is_warned_about_by_name_with_the_closest_setting(tmp_path: Path) -> None:
    done = ilog(["validate", str(SAMPLE)], tmp_path, ILOG_EDIT_WINDOW_SECOND="60", ILOG_NOTHING_LIKE_IT="1")
    assert [
        "ilog: warning: ILOG_EDIT_WINDOW_SECOND is not a setting and is ignored; did you mean "
        "ILOG_EDIT_WINDOW_SECONDS?",
        "ilog: warning: ILOG_NOTHING_LIKE_IT is not a setting and is ignored",
    ] == done.stderr.splitlines()[:2]


def test_version_names_the_package_version_and_the_build(tmp_path: Path) -> None:
    from worker.runtime.build import build_info

    done = ilog(["--version"], tmp_path)
    assert (0, f"{build_info().describe()}\n", "") == (done.returncode, done.stdout, done.stderr)
    assert done.stdout.startswith("ilog 0.1.0 (revision ")


def test_version_with_a_bad_setting_is_one_line_and_exit_2_like_every_command(tmp_path: Path) -> None:
    """CONTRACT.md: every command, `ilog --version` among them; it needs no service, so only settings count."""
    done = ilog(["--version"], tmp_path, ILOG_EDIT_WINDOW_SECONDS="abc")
    assert (2, "", ["ilog: bad setting ILOG_EDIT_WINDOW_SECONDS='abc': Input should be a valid number, unable to "
                    "parse string as a number (fix the environment variable or .env; docs: README 'Settings')"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("command", "args"), [("ilog", ["--version"]), *OFFLINE_COMMANDS],
                         ids=["ilog --version", *(c for c, _ in OFFLINE_COMMANDS)])
def test_a_dotenv_file_that_is_not_utf8_is_a_bad_setting(command: str, args: list[str], tmp_path: Path) -> None:
    """A `.env` is settings: one that cannot be decoded is a bad setting (exit 2), not an unexpected failure (exit 1,
    which `ilog validate` uses for rejected lines)."""
    (tmp_path / ".env").write_bytes(b"\xff\xfeILOG_EDIT_WINDOW_SECONDS=60\n")
    done = ilog(args, tmp_path)
    assert (2, "", [f"{command}: bad setting: the .env file is not UTF-8 text (invalid start byte at byte 0); fix or "
                    "remove it (docs: README 'Settings')"]) == (done.returncode, done.stdout, done.stderr.splitlines())


def test_a_schema_folder_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path) -> None:
    taken = tmp_path / "a-file"
    taken.write_text("")
    done = ilog(["schema", "export", str(taken)], tmp_path)
    assert (2, "", [f"ilog schema export: cannot write the schemas to {taken}: File exists"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("command", "args"), [*KAFKA_COMMANDS, *WORKER_COMMANDS],
                         ids=[c for c, _ in [*KAFKA_COMMANDS, *WORKER_COMMANDS]])
def test_an_unknown_kafka_client_option_is_a_bad_setting_not_an_unreachable_kafka(
    command: str, args: list[str], tmp_path: Path,
) -> None:
    """Its one line is all of stderr: a worker checks the options before it logs anything."""
    done = ilog(args, tmp_path, ILOG_KAFKA__NO_SUCH_OPTION="1", **A_TARGET)
    assert (2, "", [f'{command}: bad Kafka client option (No such configuration property: "no.such.option"); '
                    "check the ILOG_KAFKA__ settings"]) == (done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("command", "args"), WORKER_COMMANDS, ids=[c for c, _ in WORKER_COMMANDS])
def test_a_kafka_client_option_with_a_bad_value_stops_a_worker_with_one_line(
    command: str, args: list[str], tmp_path: Path,
) -> None:
    done = ilog(args, tmp_path, ILOG_KAFKA__FETCH_MIN_BYTES="abc", **A_TARGET)
    assert (2, "", [f'{command}: bad Kafka client option (Invalid value for configuration property '
                    '"fetch.min.bytes"); check the ILOG_KAFKA__ settings']) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize("variable", ["ILOG_EDIT_WINDOW_SECONDS", "ILOG_FINALIZE_GRACE_SECONDS"])
def test_a_negative_edit_window_or_grace_is_a_bad_setting(variable: str, tmp_path: Path) -> None:
    done = ilog(["fold", str(SAMPLE)], tmp_path, **{variable: "-1"})
    assert (2, "", [f"ilog fold: bad setting {variable}='-1': Input should be greater than or equal to 0 (fix the "
                    "environment variable or .env; docs: README 'Settings')"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("variable", "value"), [("ILOG_EDIT_WINDOW_SECONDS", "inf"),
                                               ("ILOG_EDIT_WINDOW_SECONDS", "1e30"),
                                               ("ILOG_MAX_CLOCK_SKEW_SECONDS", "inf")])
@pytest.mark.parametrize(("command", "args"), OFFLINE_COMMANDS, ids=[c for c, _ in OFFLINE_COMMANDS])
def test_an_endless_duration_is_a_bad_setting(command: str, args: list[str], variable: str, value: str,
                                              tmp_path: Path) -> None:
    done = ilog(args, tmp_path, **{variable: value})
    assert (2, "", [f"{command}: bad setting {variable}='{value}': Input should be a finite number of seconds, at most "
                    "315360000 (ten years) (fix the environment variable or .env; docs: README 'Settings')"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("command", "args"), WORKER_COMMANDS, ids=[c for c, _ in WORKER_COMMANDS])
def test_an_unknown_log_level_is_a_bad_setting(command: str, args: list[str], tmp_path: Path) -> None:
    done = ilog(args, tmp_path, ILOG_LOG_LEVEL="verbose")
    assert (2, "", [f"{command}: bad setting ILOG_LOG_LEVEL='verbose': Input should be one of DEBUG, INFO, WARNING, "
                    "ERROR, CRITICAL (any case) (fix the environment variable or .env; docs: README 'Settings')"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("variable", "value", "problem"), [
    ("ILOG_BATCH_SIZE", "0", "Input should be greater than or equal to 1"),
    ("ILOG_BATCH_SIZE", "2000000", "Input should be less than or equal to 1000000"),
    ("ILOG_FOLD_BATCH_SIZE", "0", "Input should be greater than or equal to 1"),
    ("ILOG_STATE_CACHE_ENTRIES", "0", "Input should be greater than or equal to 1"),
    ("ILOG_BATCH_TIMEOUT_SECONDS", "-1", "Input should be greater than or equal to 0"),
    ("ILOG_HTTP_PORT", "70000", "Input should be less than or equal to 65535"),
    ("ILOG_APPLIED_IDS_KEPT", "0", "Input should be greater than or equal to 1"),
    ("ILOG_RETENTION_SECONDS", "-1", "Input should be greater than or equal to 0"),
    ("ILOG_OPEN_LOG_TTL_SECONDS", "0", "Input should be greater than 0"),
    ("ILOG_DRAIN_TIMEOUT_SECONDS", "0", "Input should be greater than 0"),
    ("ILOG_SALESFORCE_BUDGET_PER_MINUTE", "0", "Input should be greater than or equal to 1"),
    ("ILOG_ZENDESK_BUDGET_PER_DAY", "0", "Input should be greater than or equal to 1"),
    ("ILOG_WEBHOOK_TIMEOUT_SECONDS", "0", "Input should be greater than 0"),
])
def test_a_setting_out_of_its_range_stops_the_worker_as_a_bad_setting(variable: str, value: str, problem: str,
                                                                       tmp_path: Path) -> None:
    done = ilog(["worker", "fold"], tmp_path, **{variable: value})
    assert (2, "", [f"ilog worker fold: bad setting {variable}='{value}': {problem} (fix the environment variable "
                    "or .env; docs: README 'Settings')"]) == (done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("value", "problem"), [
    ("", "no server given"),
    (" , ", "no server given"),
    ("kafka:notaport", "'kafka:notaport' has no port number"),
    ("kafka-0:9092,:9092", "':9092' has no host"),
    ("kafka:70000", "'kafka:70000' has no port number"),
])
@pytest.mark.parametrize(("command", "args"), [WORKER_COMMANDS[0], KAFKA_COMMANDS[0]],
                         ids=[WORKER_COMMANDS[0][0], KAFKA_COMMANDS[0][0]])
def test_a_kafka_bootstrap_that_names_no_broker_is_a_bad_setting_not_an_unreachable_kafka(
    command: str, args: list[str], value: str, problem: str, tmp_path: Path
) -> None:
    """The worker waits for an unreachable Kafka; a bootstrap it could never reach is a typo to report at once."""
    done = ilog(args, tmp_path, ILOG_KAFKA_BOOTSTRAP=value)
    assert (2, "", [f"{command}: bad setting ILOG_KAFKA_BOOTSTRAP={value!r}: Input should be host:port[,host:port…] "
                    f"({problem}) (fix the environment variable or .env; docs: README 'Settings')"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize(("variable", "value"), [
    ("ILOG_EVENTS_TOPIC", ""), ("ILOG_EVENTS_TOPIC", "events topic"), ("ILOG_UPSERTS_TOPIC", "up/serts"),
    ("ILOG_UPSERTS_TOPIC", ".."), ("ILOG_EVENTS_TOPIC", "e" * 230), ("ILOG_FOLD_GROUP", ""),
    ("ILOG_SYNC_GROUP", " "), ("ILOG_KEY_PREFIX", "ilog{x}"),
])
@pytest.mark.parametrize(("command", "args"), [("ilog dlq list", ["dlq", "list"]),
                                             ("ilog fold", ["fold", str(SAMPLE)])])
def test_a_topic_group_or_key_prefix_kafka_or_redis_cannot_take_is_a_bad_setting(
    command: str, args: list[str], variable: str, value: str, tmp_path: Path,
) -> None:
    """An empty or illegal topic name (Kafka: 1-249 of letters, digits, `.`, `_`, `-`, with room for the DLQ and
    replay suffixes), an empty group, or a key prefix with a hash-tag brace would otherwise be used as it is."""
    done = ilog(args, tmp_path, **{variable: value})
    lines = done.stderr.splitlines()
    assert (done.returncode, done.stdout, len(lines)) == (2, "", 1), done.stderr
    assert lines[0].startswith(f"{command}: bad setting {variable}")  # the value shown unless it may be secret


def test_a_rejects_file_that_cannot_be_written_is_one_line_and_exit_2_with_nothing_printed(tmp_path: Path) -> None:
    """The command line is wrong: `ilog fold` says so before it prints any log, so no output is taken for
    the result of a fold that failed."""
    clean = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    unwritable = tmp_path / "no-such-folder" / "rejects.jsonl"
    done = subprocess.run([sys.executable, "-m", "worker.ops.cli", "fold", str(SAMPLE), "--rejects", str(unwritable)],
                          capture_output=True, text=True, check=False, cwd=REPO, env=clean, timeout=60)
    assert (2, "", [f"ilog fold: cannot write {unwritable}: No such file or directory"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


def test_a_negative_dlq_list_limit_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """`--limit -1` is a wrong command line, not "every letter but the last one"."""
    clean = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    done = subprocess.run([sys.executable, "-m", "worker.ops.cli", "dlq", "list", "--limit", "-1"],
                          capture_output=True, text=True, check=False, cwd=REPO, env=clean, timeout=60)
    assert (2, "", ["ilog dlq list: --limit -1: give 0 or more letters to show"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


@pytest.mark.parametrize("partitions", ["0", "-2"])
def test_a_partition_count_below_one_is_one_line_and_exit_2(partitions: str, tmp_path: Path) -> None:
    """`ilog topics create --partitions 0` is a wrong command line: said so before Kafka is asked (it was an
    unexpected error, exit 1, or Kafka's refusal with a hint to check the bootstrap servers)."""
    clean = {name: value for name, value in os.environ.items() if not name.upper().startswith("ILOG_")}
    done = subprocess.run([sys.executable, "-m", "worker.ops.cli", "topics", "create", "--partitions", partitions],
                          capture_output=True, text=True, check=False, cwd=REPO, env=clean, timeout=60)
    assert (2, "", [f"ilog topics create: --partitions {partitions}: give 1 or more"]) == (
        done.returncode, done.stdout, done.stderr.splitlines())


def test_a_redirection_from_a_cluster_node_is_told_as_the_cluster_setting_it_is() -> None:
    """`ILOG_REDIS_CLUSTER=false` (or a single-node client) against a Redis Cluster node: the node answers MOVED
    for a key of another node's slot; the line says which setting fits, not the raw redirection."""
    from redis.exceptions import MovedError

    from worker.errors import StoreError
    from worker.ops.failures import describe_failure

    try:
        try:
            raise MovedError("9032 127.0.0.1:16947")
        except MovedError as moved:
            raise StoreError(f"loading 1 interactions failed: {moved}") from moved
    except StoreError as exc:
        failure = describe_failure("ilog inspect", exc)
    assert failure == ("ilog inspect: bad setting: Redis redirected a key to another node (MOVED 9032 "
                       "127.0.0.1:16947): ILOG_REDIS_URL names a node of a Redis Cluster, so set ILOG_REDIS_CLUSTER="
                       "true (or auto) (docs: README 'Settings')", 2)
