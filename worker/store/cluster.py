"""Redis Cluster support shared by the stores: the client type and grouping keys by hash slot.

On a cluster every command that names several keys must name keys of one hash slot (CROSSSLOT
otherwise). The stores therefore group a batch's keys by slot and send one command per slot through
the cluster pipeline, which writes every node's commands before reading any reply: one round trip per
node, not per key. The fold stage's state writes go one script call per master instead
(`worker.store.per_master`), and per slot only what a master could not take.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any, TypeAlias, TypeVar

import redis
from redis.cluster import NodesManager, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, SlotNotCoveredError

RedisClient: TypeAlias = "redis.Redis | RedisCluster"

T = TypeVar("T")


def is_cluster(client: RedisClient) -> bool:
    return isinstance(client, RedisCluster)


def slot_of(key: str) -> int:
    """The hash slot of `key` (CRC16 of its `{…}` tag when it has one, as Redis Cluster computes it)."""
    return int(key_slot(key.encode()))


def by_slot(items: Iterable[T], key_of: Callable[[T], str]) -> dict[int, list[T]]:
    """Items grouped by the hash slot of their key, in first-seen order."""
    groups: dict[int, list[T]] = {}
    for item in items:
        groups.setdefault(slot_of(key_of(item)), []).append(item)
    return groups


# A failover, a restarting node, a slot map being refreshed: worth waiting out. The cluster
# pipeline retries these at once, without back-off, so it gives up before a replica took over.
# `SlotNotCoveredError` (a slot missing from the client's map) is no `RedisError`: see `REDIS_ERRORS`.
TRANSIENT_ERRORS = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ClusterDownError,
                    redis.exceptions.TryAgainError, SlotNotCoveredError)
REDIS_ERRORS = (redis.RedisError, SlotNotCoveredError)
"""What a Redis call can raise about Redis (rather than about the caller): `redis.RedisError`, and the one
cluster error that is not one."""

# The messages of redis-py's slot map refresh when no node answers, or none with a whole map.
_NO_NODE_ANSWERS = ("Redis Cluster cannot be connected", "All slots are not covered")


def no_node_answers(exc: BaseException) -> bool:
    """Whether a cluster client's error says that no node answered (or none with a whole slot map), as opposed
    to a refusal such as a node not in cluster mode."""
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError)):
        return True
    if not isinstance(exc, RedisClusterException) or isinstance(exc, SlotNotCoveredError):
        return False
    if str(exc).startswith(_NO_NODE_ANSWERS[0]):  # "cannot be connected": why, the last node's error says
        return exc.__cause__ is None or isinstance(exc.__cause__, (redis.ConnectionError, redis.TimeoutError))
    return str(exc).startswith(_NO_NODE_ANSWERS[1:])


def unreachable_as_connection_errors(nodes: NodesManager) -> None:
    """Make the cluster client's slot map refresh raise `redis.ConnectionError` when no node answers.

    redis-py refreshes the map inside its handler of a `ConnectionError` (a node went away); when no node
    answers at all — every node restarting, the cluster cut off — the refresh raises a plain
    `RedisClusterException`, which is no `RedisError`. That escaped every handler that waits Redis out,
    and a stage exited instead of waiting, on the outage it is built to ride. Raised as the
    `ConnectionError` it stands for, the client's own retries and back-off apply, and then the stores'.
    Other refusals of the refresh (a node not in cluster mode) stay what they are."""
    refresh = nodes.initialize

    def initialize(*args: Any, **kwargs: Any) -> None:
        try:
            refresh(*args, **kwargs)
        except RedisClusterException as exc:
            if not no_node_answers(exc):
                raise
            raise redis.ConnectionError(str(exc)) from exc

    nodes.initialize = initialize  # type: ignore[method-assign]


RIDE_OUT_S = 30.0
_FIRST_DELAY_S = 0.1
_MAX_DELAY_S = 1.0


def riding_out(call: Callable[[], T], *, ride_out_s: float = RIDE_OUT_S,
               sleep: Callable[[float], None] = time.sleep) -> T:
    """`call()`, again while Redis is briefly unreachable (0.1 s doubling to 1 s apart, for up to
    `ride_out_s`); then the last error. Only for calls that are safe to repeat."""
    give_up = time.monotonic() + ride_out_s
    delay_s = _FIRST_DELAY_S
    while True:
        try:
            return call()
        except TRANSIENT_ERRORS:
            if time.monotonic() + delay_s > give_up:
                raise
            sleep(delay_s)
            delay_s = min(delay_s * 2, _MAX_DELAY_S)
