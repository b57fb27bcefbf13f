"""The fold stage against its limits and a Python peer: four readers of one topic, in one run.

    (a) bare     a confluent-kafka consumer that `json.loads` every message: what reading costs
    (b) floor    the I/O floor: consume + one fenced Lua write per batch + produce one snapshot per
                 changed interaction + store offsets, no decode and no fold (the message bytes are
                 the "state" and the "snapshot"): what the stage's commit steps cost on their own
    (b') floor_decoded  the floor, with each message read by the stage's own decoder (`decode_messages`:
                 CloudEvent parse, the contract's checks, a `Record`) and two messages produced per
                 changed interaction (the stage's snapshot and changelog entry), still no fold: what
                 any stage that reads and writes Kafka through confluent-kafka's Python calls costs
    (c) peer     a quix-streams application (RocksDB state, orjson, a simplified dict fold, one
                 snapshot per event), installed by this benchmark into a throwaway virtualenv; run
                 twice: without changelog topics (`peer`, the ratio the target is judged on) and with
                 them (`peer_changelog`, quix-streams' default: its state recoverable from Kafka, as the
                 stage's is from its changelog), reported beside it
    (d) stage    this project's fold stage (`FoldStage`, burst mode), as `fold_stage_throughput` runs it

Each reader has a consumer group (and Redis key prefix) of its own, so each reads the whole topic.
Rates are events / wall-clock seconds from the first message (or batch) to the last; `cpu_s` is the
reading process's CPU time (`time.process_time`, every thread: librdkafka's too) over its run, and
`events_per_cpu_s` the rate per CPU second, steadier than wall clock on a shared machine. The
machine's 1-minute load average is taken before and after each reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from schemas.events import Rejection
from tests.bench.run import register
from tests.bench.stack import bench_settings, cleanup, produce_histories, stack_env
from tests.bench.stage_bench import RATE_PER_S, _bare_consume, _run_fold_stage
from worker.kafka.clients import consumer_config, decode_messages, producer_config
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

TARGET_EVENTS_PER_S = 30_000
TARGET_FLOOR_RATIO = 0.6
TARGET_PEER_RATIO = 2.0
DEADLINE_S = 900.0
PEER_REQUIREMENTS = ("quixstreams", "orjson")
LUA = Path(__file__).resolve().parents[2] / "worker" / "store" / "fenced_write.lua"


def fold_vs_floor_and_peer(quick: bool) -> dict[str, Any]:
    """Events/s (wall and per CPU second) of the four readers and the stage's ratios to the floor and peer."""
    interactions = 2_000 if quick else 20_000
    settings = bench_settings(stack_env(), "peer")
    readers: dict[str, dict[str, Any]] = {}
    try:
        produced = produce_histories(settings, interactions, seed=7, rate_per_s=RATE_PER_S)
        readers["bare"] = _measured(lambda: _bare_consume(settings, produced))
        readers["floor"] = _measured(lambda: _io_floor(settings, produced))
        readers["floor_decoded"] = _measured(lambda: _io_floor(settings, produced, decoded=True))
        readers.update(_peers(settings, produced))
        readers["stage"] = _measured(lambda: _run_fold_stage(settings, on_batch=None))
    finally:
        cleanup(settings)
    return _result(settings, interactions, produced, readers)


def _result(settings: Settings, interactions: int, produced: int,
            readers: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stage, floor, peer = readers["stage"], readers["floor"], readers["peer"]
    measured: dict[str, Any] = {}
    for name, figures in readers.items():
        measured.update({f"{name}_{key}": value for key, value in figures.items()})
    floor_ratio = _ratio(stage.get("events_per_s"), floor.get("events_per_s"))
    peer_ratio = _ratio(stage.get("events_per_s"), peer.get("events_per_s"))
    measured.update(stage_to_floor=floor_ratio, stage_to_peer=peer_ratio,
                    stage_to_peer_changelog=_ratio(stage.get("events_per_s"),
                                                   readers.get("peer_changelog", {}).get("events_per_s")),
                    stage_to_floor_cpu=_ratio(stage.get("events_per_cpu_s"), floor.get("events_per_cpu_s")),
                    stage_to_peer_cpu=_ratio(stage.get("events_per_cpu_s"), peer.get("events_per_cpu_s")),
                    # the most a stage reading and producing through confluent-kafka's Python calls could reach
                    floor_decoded_to_floor=_ratio(readers.get("floor_decoded", {}).get("events_per_s"),
                                                  floor.get("events_per_s")),
                    floor_decoded_to_peer=_ratio(readers.get("floor_decoded", {}).get("events_per_s"),
                                                 peer.get("events_per_s")))
    return {
        "name": "fold_vs_floor_and_peer",
        "parameters": {"interactions": interactions, "events": produced, "partitions": settings.partitions,
                       "fold_batch_size": settings.fold_batch_size, "peer": "quixstreams, RocksDB state without "
                       "changelog topics, orjson, dict fold, one snapshot per event",
                       "peer_changelog": "the same with quixstreams' changelog topics (its default)"},
        "measured": measured,
        "target": {"stage_events_per_s": TARGET_EVENTS_PER_S, "stage_to_floor": TARGET_FLOOR_RATIO,
                   "stage_to_peer": TARGET_PEER_RATIO},
        "meets_target": (stage.get("events_per_s", 0) >= TARGET_EVENTS_PER_S
                         and (floor_ratio or 0) >= TARGET_FLOOR_RATIO and (peer_ratio or 0) >= TARGET_PEER_RATIO),
    }


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return round(numerator / denominator, 3) if numerator and denominator else None


def _measured(run: Callable[[], tuple[float, int]]) -> dict[str, Any]:
    """Run one in-process reader; its rate by wall clock (first message to last) and by CPU time."""
    load_before = os.getloadavg()[0]
    cpu_started_s = time.process_time()
    wall_s, events = run()
    cpu_s = time.process_time() - cpu_started_s
    return _figures(events, wall_s, cpu_s, load_before)


def _figures(events: int, wall_s: float, cpu_s: float, load_before: float) -> dict[str, Any]:
    return {"events": events, "events_per_s": round(events / wall_s) if wall_s > 0 else None,
            "seconds": round(wall_s, 2), "cpu_s": round(cpu_s, 2),
            "events_per_cpu_s": round(events / cpu_s) if cpu_s > 0 else None,
            "load_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)]}


# --- (b) the I/O floor ------------------------------------------------------------------------------


def _io_floor(settings: Settings, expected: int, *, decoded: bool = False) -> tuple[float, int]:
    """The stage's I/O per batch without its work: latest bytes per key → one fenced script call,
    one produce per key, flush, store offsets. Versions are counted here (what a load would return).
    With `decoded`, every message is read through the stage's decoder and each key gets two messages."""
    suffix = "-floor-decoded" if decoded else "-floor"
    consumer = Consumer(consumer_config(settings, f"{settings.fold_group}{suffix}"))
    producer = Producer(producer_config(settings))
    client = bootstrap.redis_client(settings)
    write = client.register_script(LUA.read_text())
    versions: dict[bytes, int] = {}
    ttl_ms = int(settings.open_log_ttl_seconds * 1000)
    prefix = f"{settings.key_prefix}:{suffix[1:]}"  # under the run's prefix: `cleanup` deletes these keys too
    consumer.subscribe([settings.events_topic])
    count, first_s, last_s = 0, 0.0, 0.0
    deadline_s = time.monotonic() + DEADLINE_S
    try:
        while count < expected and time.monotonic() < deadline_s:
            messages = [m for m in consumer.consume(settings.fold_batch_size, settings.batch_timeout_seconds)
                        if m.error() is None]
            if not messages:
                continue
            if count == 0:
                first_s = time.perf_counter()
            if decoded:
                records, _others = decode_messages(messages)
                latest = {record.item.subject.encode(): record.value or b"" for record in records
                          if not isinstance(record.item, Rejection)}
            else:
                latest = {message.key() or b"": message.value() or b"" for message in messages}
            write(keys=[b"%s:{%s}" % (prefix.encode(), key) for key in latest],
                  args=_fenced_args(latest, versions, ttl_ms))
            for key, value in latest.items():
                _produce(producer, settings.upserts_topic, key, value)
                if decoded:  # the changelog entry beside the snapshot
                    _produce(producer, settings.upserts_topic, key, value)
            producer.flush(60)
            consumer.store_offsets(offsets=_next_offsets(messages))
            count += len(messages)
            last_s = time.perf_counter()
        return last_s - first_s, count
    finally:
        consumer.close()
        client.close()


def _fenced_args(latest: dict[bytes, bytes], versions: dict[bytes, int], ttl_ms: int) -> list[Any]:
    args: list[Any] = [len(latest)]
    for key, value in latest.items():
        version = versions.get(key, 0)
        versions[key] = version + 1
        args += [version, version + 1, value, "l", ttl_ms, key, "", 0, 0]
    args.append(0)  # no guarded partitions
    return args


def _produce(producer: Producer, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            producer.poll(0.05)


def _next_offsets(messages: list[Message]) -> list[TopicPartition]:
    last: dict[tuple[str, int], int] = {}
    for message in messages:
        last[(message.topic() or "", message.partition() or 0)] = (message.offset() or 0) + 1
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in last.items()]


# --- (c) the quix-streams peer ------------------------------------------------------------------------

PEER_APP = r'''
import json, sys, threading, time
import orjson
from quixstreams import Application

config = json.loads(sys.argv[1])
expected = config["expected"]
app = Application(broker_address=config["brokers"], consumer_group=config["group"],
                  auto_offset_reset="earliest", state_dir=config["state_dir"],
                  use_changelog_topics=config["changelog"], loglevel="WARNING")
events = app.topic(config["events"], key_deserializer="bytes", value_deserializer="bytes")
upserts = app.topic(config["upserts"], key_serializer="bytes", value_serializer="bytes")
progress = {"count": 0, "first": 0.0, "last": 0.0, "cpu": 0.0}


def fold(value, state):
    event = orjson.loads(value)
    log = state.get("log") or {"facts": {}, "seen": [], "count": 0, "open": True}
    sequence = event.get("sequence")
    if sequence in log["seen"]:
        return orjson.dumps(log)
    log["seen"].append(sequence)
    log["count"] += 1
    data = event.get("data") or {}
    if isinstance(data, dict):
        log["facts"].update({k: v for k, v in data.items() if not isinstance(v, (dict, list))})
    log["last_type"] = event.get("type")
    log["last_time"] = event.get("time")
    if str(event.get("type", "")).endswith("disconnected"):
        log["open"] = False
    state.set("log", log)
    return orjson.dumps({"id": event.get("subject"), **log})


def counted(value):
    if progress["count"] == 0:
        progress["first"] = time.perf_counter()
        progress["cpu"] = time.process_time()
    progress["count"] += 1
    progress["last"] = time.perf_counter()
    if progress["count"] >= expected:
        app.stop()
    return value


def give_up():
    app.stop()


timer = threading.Timer(config["deadline_s"], give_up)
timer.daemon = True
timer.start()
cpu_started = time.process_time()
sdf = app.dataframe(events)
sdf = sdf.apply(fold, stateful=True)
sdf = sdf.to_topic(upserts)
sdf = sdf.apply(counted)
try:
    app.run()
except TypeError:
    app.run(sdf)
cpu = time.process_time() - cpu_started
import quixstreams
print(json.dumps({"events": progress["count"], "seconds": progress["last"] - progress["first"],
                  "cpu_s": cpu, "version": quixstreams.__version__}))
'''


def _peers(settings: Settings, expected: int) -> dict[str, dict[str, Any]]:
    """Install quix-streams into a throwaway virtualenv and run the peer there, without and with its changelog
    topics; a refusal is a figure."""
    with tempfile.TemporaryDirectory(prefix="ilog-peer-") as folder:
        venv = Path(folder) / "venv"
        python = venv / "bin" / "python"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
        installed = subprocess.run([str(python), "-m", "pip", "install", "-q", *PEER_REQUIREMENTS],
                                   capture_output=True, text=True, check=False)
        if installed.returncode != 0:
            refused = {"unavailable": "pip install quixstreams failed: " + installed.stderr.strip()[-400:]}
            return {"peer": refused, "peer_changelog": refused}
        script = Path(folder) / "peer.py"
        script.write_text(PEER_APP)
        return {"peer": _peer(settings, expected, python, script, changelog=False),
                "peer_changelog": _peer(settings, expected, python, script, changelog=True)}


def _peer(settings: Settings, expected: int, python: Path, script: Path, *, changelog: bool) -> dict[str, Any]:
    """One run of the peer in a consumer group and state folder of its own (its changelog topics, named after
    the group, are deleted afterwards)."""
    group = f"{settings.fold_group}-peer{'-changelog' if changelog else ''}"
    config = {"brokers": settings.kafka_config()["bootstrap.servers"], "group": group,
              "events": settings.events_topic, "upserts": settings.upserts_topic, "expected": expected,
              "state_dir": str(script.parent / f"state-{group}"), "deadline_s": DEADLINE_S, "changelog": changelog}
    load_before = os.getloadavg()[0]
    deleted: list[str] = []
    try:
        run = subprocess.run([str(python), str(script), json.dumps(config)], capture_output=True, text=True,
                             check=False, cwd=script.parent)
    finally:
        if changelog:
            deleted = _delete_topics_of(settings, group)
    if run.returncode != 0 or not run.stdout.strip():
        return {"unavailable": "the peer failed: " + run.stderr.strip()[-400:]}
    report = json.loads(run.stdout.strip().splitlines()[-1])
    figures = _figures(report["events"], report["seconds"], report["cpu_s"], load_before)
    return {**figures, "version": report["version"], **({"changelog_topics": deleted} if changelog else {})}


def _delete_topics_of(settings: Settings, group: str) -> list[str]:
    """Delete the topics quix-streams created for `group` (changelog topics carry the consumer group in their
    name); their names."""
    admin = AdminClient(settings.kafka_config())
    names = sorted(name for name in admin.list_topics(timeout=10).topics if group in name)
    for future in admin.delete_topics(names).values() if names else ():
        future.result(timeout=30)
    return names




register("fold_vs_floor_and_peer", fold_vs_floor_and_peer)
