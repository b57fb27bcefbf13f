"""What a consumer's fetch settings cost the broker: librdkafka's defaults against `BUSY_TOPIC_FETCH`.

    python -m tests.bench.fetch_tuning [--seconds 15] [--rate 5000]

One topic (6 partitions) is produced at `--rate` messages a second of 400 bytes by a child process;
one consumer per setting reads it for `--seconds` after a warm-up. Reported per setting: the broker's
CPU per second (`/proc/<pid>/stat` of the stack's broker: producing included, so compare settings, not
absolute values), the fetch requests the consumer sent per second (librdkafka's statistics, broker
`tx`), and the delay from the producer's call to the consumer's hands (message CreateTime; p50/p99).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import time
import uuid
from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.bench.stack import stack_env
from worker.kafka.clients import BUSY_TOPIC_FETCH

SETTINGS: dict[str, dict[str, Any]] = {
    "librdkafka_defaults": {"fetch.wait.max.ms": 500, "fetch.min.bytes": 1},
    "busy_topic_fetch": dict(BUSY_TOPIC_FETCH),
}


def _produce(bootstrap: str, topic: str, rate: int, stop_at: float) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    payload = b"x" * 400
    tick_s, per_tick = 0.01, max(1, rate // 100)
    next_s = time.monotonic()
    while time.time() < stop_at:
        for i in range(per_tick):
            producer.produce(topic, key=str(i), value=payload)
        producer.poll(0)
        next_s += tick_s
        time.sleep(max(0.0, next_s - time.monotonic()))
    producer.flush(30)


def _broker_pid() -> int:
    stack_dir = os.environ.get("ILOG_STACK_DIR", "")
    found = subprocess.run(["pgrep", "-f", "kafka.Kafka"], capture_output=True, text=True, check=False).stdout
    for pid in found.split():
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if not stack_dir or stack_dir.encode() in cmdline.read():
                return int(pid)
    raise RuntimeError("the stack's broker is not running")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(bootstrap: str, name: str, seconds: float, rate: int) -> dict[str, Any]:
    topic = f"bench-fetch-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 6, 1)])[topic].result(30)
    requests: dict[str, int] = {}

    def on_stats(raw: str) -> None:
        brokers = json.loads(raw)["brokers"].values()
        requests["tx"] = sum(broker["tx"] for broker in brokers if broker["nodeid"] >= 0)

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "auto.offset.reset": "latest",
                         "statistics.interval.ms": 500, "stats_cb": on_stats, **SETTINGS[name]})
    consumer.subscribe([topic])
    warm_up_s = 5.0
    child = multiprocessing.get_context("spawn").Process(
        target=_produce, args=(bootstrap, topic, rate, time.time() + warm_up_s + seconds + 1))
    child.start()
    try:
        deadline = time.time() + warm_up_s
        while time.time() < deadline:
            consumer.consume(1000, 0.1)
        broker = _broker_pid()
        cpu_before, tx_before, started = _cpu_s(broker), requests.get("tx", 0), time.time()
        delays_ms: list[float] = []
        count = 0
        while time.time() - started < seconds:
            for message in consumer.consume(1000, 0.1):
                if message.error() is None:
                    count += 1
                    delays_ms.append(time.time() * 1000 - message.timestamp()[1])
        elapsed = time.time() - started
        cpu = _cpu_s(broker) - cpu_before
        time.sleep(0.6)  # one more statistics callback
        consumer.poll(0)
        fetches = requests.get("tx", 0) - tx_before
    finally:
        child.join(30)
        consumer.close()
        admin.delete_topics([topic])
    delays_ms.sort()
    return {
        "setting": name, "config": SETTINGS[name], "messages_per_s": round(count / elapsed),
        "broker_cpu_per_s": round(cpu / elapsed, 3), "consumer_requests_per_s": round(fetches / elapsed),
        "delay_ms_p50": round(delays_ms[len(delays_ms) // 2], 1) if delays_ms else None,
        "delay_ms_p99": round(delays_ms[int(len(delays_ms) * 0.99)], 1) if delays_ms else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.fetch_tuning", description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=2, help="each setting this many times, alternating")
    args = parser.parse_args(argv)
    bootstrap = stack_env()["ILOG_KAFKA_BOOTSTRAP"]
    for _ in range(args.rounds):
        for name in SETTINGS:
            print(json.dumps(measure(bootstrap, name, args.seconds, args.rate)), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
