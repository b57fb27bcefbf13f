"""The local stack is real: a broker that keeps committed offsets, a Redis that keeps data."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import redis
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource  # type: ignore[attr-defined]

from tests.conftest import STACK
from tests.support import exited, parse_env_lines, wait_for
from worker.kafka.topics import create_topics, topic_configs
from worker.runtime.settings import Settings


def test_thousand_keyed_messages_round_trip_with_committed_offsets(settings: Settings) -> None:
    producer = Producer(settings.kafka_config(**{"enable.idempotence": True, "acks": "all"}))
    sent = {f"key-{i % 100}:{i}" for i in range(1000)}
    for i in range(1000):
        producer.produce(settings.events_topic, key=f"key-{i % 100}", value=f"key-{i % 100}:{i}")
    assert producer.flush(30) == 0

    group = settings.fold_group
    consumer = Consumer(
        settings.kafka_config(**{"group.id": group, "auto.offset.reset": "earliest", "enable.auto.commit": False})
    )
    consumer.subscribe([settings.events_topic])
    received: dict[str, str] = {}
    for _ in range(200):
        for message in consumer.consume(500, timeout=0.5):
            assert message.error() is None
            received[(message.value() or b"").decode()] = (message.key() or b"").decode()
        if len(received) == len(sent):
            break
    consumer.commit(asynchronous=False)
    assignment = consumer.assignment()
    committed = consumer.committed(assignment, timeout=10)
    consumer.close()

    assert sent == set(received)
    assert all(value.startswith(key + ":") for value, key in received.items())
    assert sum(tp.offset for tp in committed) == 1000

    # A new consumer in the same group resumes from the committed offsets: nothing left to read.
    again = Consumer(settings.kafka_config(**{"group.id": group, "enable.auto.commit": False}))
    positions = again.committed(
        [TopicPartition(settings.events_topic, p) for p in range(settings.partitions)], timeout=10
    )
    again.close()
    assert sum(tp.offset for tp in positions) == 1000


def test_redis_round_trips_hashes_and_sorted_sets(redis_client: redis.Redis, settings: Settings) -> None:
    key = f"{settings.key_prefix}:{{conv-1}}"
    redis_client.hset(key, mapping={"version": 3, "doc": b"\x00\x01payload"})
    redis_client.zadd(f"{settings.key_prefix}:deadlines:0", {"conv-1": 1_700_000_000_000})
    assert {b"version": b"3", b"doc": b"\x00\x01payload"} == redis_client.hgetall(key)
    assert [(b"conv-1", 1_700_000_000_000.0)] == redis_client.zrangebyscore(
        f"{settings.key_prefix}:deadlines:0", 0, "+inf", withscores=True
    )


def test_topic_bootstrap_is_idempotent_and_applies_the_topic_configs(settings: Settings) -> None:
    changed = settings.model_copy(update={"events_retention_seconds": 30 * 86_400.0})
    assert {"exists, configs applied"} == set(create_topics(changed).values())
    wanted = topic_configs(changed)
    admin = AdminClient(settings.kafka_config())

    def current() -> dict[str, dict[str, str]]:
        resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted]
        described = {resource.name: future.result(timeout=30)
                     for resource, future in admin.describe_configs(resources).items()}
        return {name: {key: described[name][key].value for key in keys} for name, keys in wanted.items()}

    def applied() -> bool:
        try:
            return wanted == current()
        except KafkaException:  # a topic created a moment ago may not be described yet
            return False

    wait_for(applied, timeout_s=10)  # brokers apply an alteration shortly after
    assert wanted == current()
    assert "2592000000" == wanted[settings.events_topic]["retention.ms"]
    assert "compact,delete" == wanted[settings.upserts_topic]["cleanup.policy"]


def test_stack_up_twice_reuses_the_running_broker(stack_env: dict[str, str]) -> None:
    again = subprocess.run([str(STACK), "up"], capture_output=True, text=True, check=True)
    printed = parse_env_lines(again.stdout)
    # the tests' env adds the stack's own Redis node under SINGLE_REDIS_URL (and a cluster's lines)
    assert (stack_env["ILOG_KAFKA_BOOTSTRAP"], stack_env["SINGLE_REDIS_URL"]) == (
        printed["ILOG_KAFKA_BOOTSTRAP"], printed["ILOG_REDIS_URL"])
    assert "already running" in again.stderr


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stack_down_stops_exactly_what_up_started_and_removes_its_data(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    """A second, separate stack (own state folder, shared jar cache) goes up and comes down clean."""
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path / "stack")}
    up = subprocess.run([str(STACK), "up"], capture_output=True, text=True, env=env, check=True)
    assert {"ILOG_KAFKA_BOOTSTRAP", "ILOG_REDIS_URL"} == set(parse_env_lines(up.stdout))
    assert parse_env_lines(up.stdout) != stack_env
    pids = [int((tmp_path / "stack" / f"{name}.pid").read_text()) for name in ("kafka", "redis")]
    assert all(_alive(pid) for pid in pids)
    subprocess.run([str(STACK), "down"], capture_output=True, text=True, env=env, check=True)
    assert not any(_alive(pid) for pid in pids)
    assert not (tmp_path / "stack" / "kafka-data").exists()
    # The session's own stack is untouched.
    client = redis.Redis.from_url(stack_env["ILOG_REDIS_URL"])
    assert client.ping()
    client.close()


def test_a_relative_state_folder_is_taken_from_the_working_directory(tmp_path: Path) -> None:
    """`ILOG_STACK_DIR=rel deploy/local/stack up` from another folder: Redis starts, its state lands in ./rel."""
    env = {**os.environ, "ILOG_STACK_DIR": "rel stack"}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK), *args], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=120, check=False)

    up = run("up", "--no-kafka")
    try:
        assert up.returncode == 0, up.stderr
        assert (tmp_path / "rel stack" / "redis.pid").is_file()
        assert run("env").stdout == up.stdout
        client = redis.Redis.from_url(parse_env_lines(up.stdout)["ILOG_REDIS_URL"])
        assert client.ping()
        client.close()
    finally:
        down = run("down")
    assert (down.returncode, run("env").returncode) == (0, 1)


def test_up_right_after_a_sigkilled_redis_starts_a_new_one(tmp_path: Path) -> None:
    """The killed redis-server is a zombie until init reaps it: `env` and `up` must not take it for running."""
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path / "stack")}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(STACK), *args], capture_output=True, text=True, env=env, timeout=120, check=False)

    try:
        first = run("up", "--no-kafka")
        assert first.returncode == 0, first.stderr
        pid = int((tmp_path / "stack" / "redis.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        assert wait_for(lambda: exited(pid), 10, 0.01)
        assert run("env").returncode == 1
        again = run("up", "--no-kafka")
        assert again.returncode == 0, again.stderr
        assert "already running" not in again.stderr
        client = redis.Redis.from_url(parse_env_lines(again.stdout)["ILOG_REDIS_URL"], socket_timeout=5)
        assert client.ping()
        client.close()
    finally:
        run("down")


def _processes_under(folder: Path) -> list[int]:
    """Pids of the processes whose working directory is in `folder` (redis-server runs in its data folder)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(folder):
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def test_two_ups_at_once_share_one_stack_and_down_leaves_nothing_running(tmp_path: Path) -> None:
    """Two test runs (or workers) calling `up` on one folder at the same moment: one Redis, the same lines."""
    env = {**os.environ, "ILOG_STACK_DIR": str(tmp_path / "stack")}
    ups = [subprocess.Popen([str(STACK), "up", "--no-kafka"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env) for _ in range(2)]
    try:
        printed = [up.communicate(timeout=120) for up in ups]
        assert [0, 0] == [up.returncode for up in ups], printed
        assert printed[0][0] == printed[1][0]
        assert 1 == len(_processes_under(tmp_path / "stack"))
    finally:
        subprocess.run([str(STACK), "down"], capture_output=True, text=True, env=env, timeout=120, check=False)
    assert wait_for(lambda: not _processes_under(tmp_path / "stack"), 10)


def test_stacks_started_at_once_on_a_fresh_cache_resolve_the_broker_once(tmp_path: Path) -> None:
    """Side-by-side stacks share ILOG_CACHE_DIR: the first resolves the jars, the others wait and reuse them."""
    runs = [subprocess.Popen([str(STACK), "jars"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, "ILOG_STACK_DIR": str(tmp_path / f"stack{n}"),
                                  "ILOG_CACHE_DIR": str(tmp_path / "cache")}) for n in range(3)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [0, 0, 0] == [run.returncode for run in runs], [err[-2000:] for _, err in outputs]
    assert 1 == sum(err.count("resolving Apache Kafka") for _, err in outputs)
    libs = next((tmp_path / "cache").glob("kafka-*/libs"))
    assert (libs / ".complete").is_file() and any(libs.glob("kafka_*.jar"))
