"""Choosing the Redis client: `ILOG_REDIS_CLUSTER=auto` asks the node; a cluster client spans every master."""

from __future__ import annotations

import redis
from redis.cluster import RedisCluster

from worker.runtime import bootstrap
from worker.runtime.settings import Settings


def _settings(env: dict[str, str], mode: str) -> Settings:
    return Settings(_env_file=None, redis_url=env["ILOG_REDIS_URL"], redis_cluster=mode)


def test_auto_asks_the_node_and_builds_a_cluster_client_only_for_a_cluster(
    stack_env: dict[str, str], redis_cluster_env: dict[str, str]
) -> None:
    single = _settings({"ILOG_REDIS_URL": stack_env["SINGLE_REDIS_URL"]}, "auto")
    cluster = _settings(redis_cluster_env, "auto")
    built = {name: bootstrap.redis_client(s) for name, s in (("single", single), ("cluster", cluster))}
    try:
        assert ("true", False, True) == (redis_cluster_env["ILOG_REDIS_CLUSTER"], bootstrap.redis_cluster_on(single),
                                         bootstrap.redis_cluster_on(cluster))
        assert (redis.Redis, RedisCluster) == (type(built["single"]), type(built["cluster"]))
        assert 3 == len(built["cluster"].get_primaries())  # type: ignore[union-attr]
    finally:
        for client in built.values():
            client.close()


def test_forcing_cluster_mode_off_talks_to_the_one_node_named(redis_cluster_env: dict[str, str]) -> None:
    client = bootstrap.redis_client(_settings(redis_cluster_env, "false"))
    try:
        assert type(client) is redis.Redis
        assert 1 == client.info("cluster")["cluster_enabled"]
    finally:
        client.close()
