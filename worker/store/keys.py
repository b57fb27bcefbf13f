"""Every Redis key the worker touches, in one place.

| key                                  | type   | TTL                                   | written by          |
|--------------------------------------|--------|---------------------------------------|---------------------|
| `<prefix>:{<interaction_id>}`        | hash   | open: `open_log_ttl`; disconnected:    | fold stage (v,d,k); |
|   v = log version, d = document,     |        | deadline + retention (refreshed on    | finalizer (v,d,k);  |
|   k = kind (l = log, t = tombstone), |        | every write)                          | sync stage (s:*)    |
|   s:<target> = synced state (JSON)   |        |                                       |                     |
| `<prefix>:deadlines:<partition>`     | zset   | none (members removed on finalize)    | fold stage, finalizer|
|   member = interaction id, score = edit deadline in ms since the epoch      |          |                     |
| `<prefix>:budget:<target>:<window>`  | string | the window's length                   | sync stage          |
| `<prefix>:{marks}`                   | hash   | none                                  | fold stage          |
|   field = partition, value = ms since the epoch when the partition's state was marked complete |   |

The `{…}` hash tag keeps all of an interaction's fields on one Redis Cluster shard.

The marks hash says "this store holds the state of partition p": a partition is marked when a
fold consumer first owns it with no committed offset (nothing to hold yet), or when it has
restored the partition from the state changelog topic. Every guarded fenced write checks its
partitions' marks in the same script call; a missing mark with committed offsets means the store
lost its state (restarted empty, FLUSHALL, failover to an empty replica), never "nothing there".
Its own hash tag `{marks}` puts it in one slot. Redis Cluster: one shard can restart empty alone,
so a cluster store must keep one marks hash per shard (a hash tag that maps to a slot of that shard)
and check each script call against the marks of the shard it runs on.
"""

from __future__ import annotations

FIELD_VERSION = "v"
FIELD_DOCUMENT = "d"
FIELD_KIND = "k"
KIND_LOG = "l"
KIND_TOMBSTONE = "t"
SYNC_FIELD_PREFIX = "s:"


def state_key(prefix: str, interaction_id: str) -> str:
    return f"{prefix}:{{{interaction_id}}}"


def deadlines_key(prefix: str, partition: int) -> str:
    return f"{prefix}:deadlines:{partition}"


def sync_field(target: str) -> str:
    return f"{SYNC_FIELD_PREFIX}{target}"


def budget_key(prefix: str, target: str, window: str) -> str:
    return f"{prefix}:budget:{target}:{window}"


MARKS_TAG = "marks"


def marks_key(prefix: str, tag: str = MARKS_TAG) -> str:
    return f"{prefix}:{{{tag}}}"
