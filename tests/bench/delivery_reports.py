"""What a delivery report per produced message costs the producing thread, on the local stack.

    python -m tests.bench.delivery_reports [--messages 200000] [--rounds 3]

Produces the same messages (600 bytes, two headers, 20,000 keys, through a stage's `DeliveryTracker`,
a flush every 20,000 as a batch's commit does) to a topic of its own, alternating a producer that reports
every delivery with one that reports failures only (`delivery.report.only.error`, what
`worker.kafka.clients.producer_config` sets). Prints the process's and the producing thread's CPU µs per
message for each round. A report for A/B runs, not a test.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from tests.bench.stack import stack_env
from worker.kafka.clients import DeliveryTracker

_VALUE = b"x" * 600
_FLUSH_EVERY = 20_000


def _round(bootstrap: str, topic: str, messages: int, *, only_error: bool) -> dict[str, float]:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True, "acks": "all",
                         "linger.ms": 5, "compression.type": "lz4", "delivery.report.only.error": only_error})
    tracker = DeliveryTracker()
    process_started_s, thread_started_s = time.process_time(), time.thread_time()
    for n in range(messages):
        tracker.produce(producer, topic, f"k{n % 20_000}", _VALUE, [("trigger", b"updated"), ("version", b"%d" % n)])
        if n % 1_000 == 999:
            producer.poll(0)
        if n % _FLUSH_EVERY == _FLUSH_EVERY - 1:
            tracker.flush(producer, 60)
    tracker.flush(producer, 60)
    return {"process_cpu_us_per_message": round((time.process_time() - process_started_s) / messages * 1e6, 2),
            "thread_cpu_us_per_message": round((time.thread_time() - thread_started_s) / messages * 1e6, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.delivery_reports",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    bootstrap = stack_env()["ILOG_KAFKA_BOOTSTRAP"]
    topic = f"bench-delivery-reports-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, 6, 1)]).values():
        future.result(timeout=30)
    try:
        for _ in range(args.rounds):
            for only_error in (False, True):
                figures = _round(bootstrap, topic, args.messages, only_error=only_error)
                print(json.dumps({"delivery_report_only_error": only_error, **figures}))
    finally:
        for future in admin.delete_topics([topic], request_timeout=30).values():
            future.result(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
