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

The `{…}` hash tag keeps all of an interaction's fields on one Redis Cluster shard.
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
