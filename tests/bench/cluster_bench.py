"""Fold stage on a Redis Cluster vs one Redis node: events/s and Redis CPU per event, and the scale-out.

Same events (one 12-partition topic), each run in a consumer group and key prefix of its own:
one fold process against the stack's single redis-server, one against the 6-node cluster (3 masters,
3 replicas; `deploy/local/stack up --redis-cluster`), and 3 fold processes of one group against the
cluster. Redis CPU is the `used_cpu_sys + used_cpu_user` delta of `INFO cpu` over the run, summed
over the nodes (masters alone, and with the replicas' replication work), divided by the events.
"""

from __future__ import annotations

import os
import subprocess
from typing import Any

from redis.cluster import RedisCluster

from tests.bench.run import register
from tests.bench.stack import STACK, bench_settings, cleanup, produce_histories, stack_env
from tests.bench.stage_bench import RATE_PER_S, _run_fold_processes, _run_fold_stage
from tests.support import parse_env_lines
from worker.runtime import bootstrap
from worker.runtime.settings import Settings

PARTITIONS = 12
PROCESSES = 3
CLUSTER_STACK_DIR = STACK.parents[2] / ".stack-cluster"


def cluster_env() -> dict[str, str]:
    """The cluster of `deploy/local/stack up --redis-cluster --no-kafka` in `.stack-cluster` (left running)."""
    env = {**os.environ, "ILOG_STACK_DIR": str(CLUSTER_STACK_DIR)}
    running = subprocess.run([str(STACK), "env"], capture_output=True, text=True, check=False, env=env)
    result = running if running.returncode == 0 else subprocess.run(
        [str(STACK), "up", "--redis-cluster", "--no-kafka"], capture_output=True, text=True, check=True, env=env)
    return parse_env_lines(result.stdout)


def redis_cpu_s(settings: Settings) -> dict[str, float]:
    """CPU seconds (sys + user) each Redis node has used, by role: {"masters": s, "replicas": s}."""
    client = bootstrap.redis_client(settings)
    try:
        nodes: list[tuple[str, Any]] = [("masters", client)]
        if isinstance(client, RedisCluster):
            nodes = [("masters" if node.server_type == "primary" else "replicas", client.get_redis_connection(node))
                     for node in client.get_nodes()]  # type: ignore[no-untyped-call]
        used = {"masters": 0.0, "replicas": 0.0}
        for role, node_client in nodes:
            info = node_client.info("cpu")
            used[role] += float(info["used_cpu_sys"]) + float(info["used_cpu_user"])
        return used
    finally:
        client.close()


def _measured(settings: Settings, run: Any) -> dict[str, float]:
    before = redis_cpu_s(settings)
    seconds, events = run()
    after = redis_cpu_s(settings)
    masters_us = (after["masters"] - before["masters"]) * 1e6 / max(events, 1)
    replicas_us = (after["replicas"] - before["replicas"]) * 1e6 / max(events, 1)
    return {"events_per_s": round(events / seconds), "events": events,
            "redis_cpu_us_per_event": round(masters_us, 1),
            "redis_cpu_us_per_event_with_replicas": round(masters_us + replicas_us, 1)}


def fold_on_redis_cluster(quick: bool) -> dict[str, Any]:
    interactions = 2_000 if quick else 10_000
    single = bench_settings(stack_env(), "single", partitions=PARTITIONS)
    kafka_only = {"ILOG_KAFKA_BOOTSTRAP": stack_env()["ILOG_KAFKA_BOOTSTRAP"]}
    on_cluster = {**kafka_only, **cluster_env()}
    one = single.model_copy(update={"redis_url": on_cluster["ILOG_REDIS_URL"], "redis_cluster": "true",
                                    "key_prefix": f"{single.key_prefix}-c1", "fold_group": f"{single.fold_group}-c1"})
    three = one.model_copy(update={"key_prefix": f"{single.key_prefix}-c3", "fold_group": f"{single.fold_group}-c3"})
    try:
        produced = produce_histories(single, interactions, seed=23, rate_per_s=RATE_PER_S)
        single_node = _measured(single, lambda: _run_fold_stage(single, on_batch=None))
        cluster_one = _measured(one, lambda: _run_fold_stage(one, on_batch=None))
        cluster_three = _measured(three, lambda: _run_fold_processes(three, PROCESSES))
    finally:
        for settings in (single, one, three):
            cleanup(settings)
    return {
        "name": "fold_on_redis_cluster",
        "parameters": {"interactions": interactions, "events": produced, "partitions": PARTITIONS,
                       "fold_batch_size": single.fold_batch_size, "cluster": "3 masters + 3 replicas on loopback",
                       "mode": "burst, event-time clock", "cpus": os.cpu_count()},
        "measured": {"single_node": single_node, "cluster_1_process": cluster_one,
                     f"cluster_{PROCESSES}_processes": cluster_three},
        "target": {"cluster_vs_single_events_per_s": 0.5},
        "meets_target": cluster_one["events_per_s"] >= 0.5 * single_node["events_per_s"],
    }


register("fold_on_redis_cluster", fold_on_redis_cluster)
