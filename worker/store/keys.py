"""Every Redis key the worker touches, in one place.

| key                                  | type   | TTL                                   | written by          |
|--------------------------------------|--------|---------------------------------------|---------------------|
| `<prefix>:{<interaction_id>}`        | hash   | open: `open_log_ttl`; disconnected:    | fold stage (v,d,k); |
|   v = log version, d = document,     |        | deadline + retention (refreshed on    | finalizer (v,d,k);  |
|   k = kind (l = log, t = tombstone), |        | every write)                          | sync stage (s:*)    |
|   r = 1: put back after a loss       |        |                                       | (r: fold restores)  |
|   s:<target> = synced state (JSON)   |        |                                       |                     |
| `<prefix>:deadlines:<partition>`     | zset   | none (members removed on finalize)    | fold stage, finalizer|
|   member = interaction id, score = edit deadline in ms since the epoch      |          |                     |
| `<prefix>:budget:{<target>}:<window>`| string | the window's length                   | sync stage          |
| `<prefix>:{sync-epoch}`              | string | none                                  | sync stage          |
|   value = `<ms>:<run_id>`: since when this store holds sync state, under which server run    |                     |
| `<prefix>:{replay-lock}:<group>`     | string | 30 s, kept while the replay runs      | `ilog replay`       |
| `<prefix>:{marks}` (one node)        | hash   | none                                  | fold stage          |
| `<prefix>:{marks-<n>}` (cluster: one per hash slot)                         |          |                     |
|   field = partition, value = ms since the epoch when the partition's state was marked complete |   |

The marks hash says "this store holds the state of partition p": a partition is marked when a
fold consumer first owns it with no committed offset (nothing to hold yet), or when it has
restored the partition from the state changelog topic. Every guarded fenced write checks its
partitions' marks in the same script call; a missing mark with committed offsets means the store
lost its state (restarted empty, FLUSHALL, failover to an empty replica), never "nothing there".

The sync epoch says "this store has held every sync state written since <ms>": the sync stage
reads it with `INFO server` in every batch read (the same pipeline as the states) and starts a new
one when it is missing (restarted empty, flushed) or names another server run (restarted from a
snapshot, failed over); on a cluster it is created with SET NX and checked for presence only. A missing sync
state is trusted as "never synced" only for interactions that began after the epoch, and only
in a hash the fold stage wrote itself (no field `r`; `worker.sync.epoch`). One key in the slot of its
own tag: one read per batch, not per slot. On a cluster a shard can lose its data while the epoch's
shard keeps it: the evidence for that is per interaction, in its own hash and slot: the hash is gone
(no `v`: unknown) or the fold stage put it back from the changelog with `r` = 1 (unknown too).

Field `r` of an interaction's hash: set by the fenced write of a state the fold stage puts back
after the store lost it (restored from the state changelog, or written back after a failover lost
the last writes), never cleared by a later write (it goes when the key expires). It says "this hash
lost what else it held (the sync state)", so its missing sync states are looked up first.

Redis Cluster layout (`ILOG_REDIS_CLUSTER`): a command or script may only touch keys of one hash
slot, so the keys one atomic step touches share a hash tag.
- An interaction's state is one hash tagged `{<interaction_id>}`: the fenced write, the sync state
  and `ilog inspect` touch that one key, states spread evenly over every slot and node, and a
  reader needs nothing but the id (not the Kafka partition, which changes if partitions are added).
- A partition's deadline set is one key, in the slot of its own name. A state and its deadline
  entry are therefore not written by one script on a cluster; the store orders the steps instead
  (`worker.store.redis_store`): entries added before the state write, removed after it. A crash
  between the steps leaves an extra entry, never a missing one, and the finalizer judges every
  entry by the stored log (drops it when the log has no open window, reschedules it to the log's
  deadline). Rejected alternative: tagging states and the deadline set by partition
  (`{p3}`) makes each partition one slot (a hot partition is a hot node, scale-out stops at the
  partition count) and every reader would need the partition of an interaction.
- The marks are kept per slot: one shard can lose its data alone, so each script call checks
  the marks hash of every slot it writes in (`marks-<n>`, the first `n` whose tag hashes to that slot), and a
  lost shard's marks go with its states. Marking writes every slot's hash (16,384 small hashes).
- The budget's minute and day counters of a target share the tag `{<target>}` (one script).
A batch's writes are grouped by master (one script call per master, up to 1,000 states each, with
the marks of every slot in it; `worker.store.per_master`), sent to every master before any reply is
read: one round trip per batch, not per interaction or slot.
"""

from __future__ import annotations

from binascii import crc_hqx
from functools import cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS

FIELD_VERSION = "v"
FIELD_DOCUMENT = "d"
FIELD_KIND = "k"
FIELD_RESTORED = "r"
KIND_LOG = "l"
KIND_TOMBSTONE = "t"
SYNC_FIELD_PREFIX = "s:"
MARKS_TAG = "marks"
SYNC_EPOCH_TAG = "sync-epoch"
REPLAY_LOCK_TAG = "replay-lock"


def state_key(prefix: str, interaction_id: str) -> str:
    return f"{prefix}:{{{interaction_id}}}"


def deadlines_key(prefix: str, partition: int) -> str:
    return f"{prefix}:deadlines:{partition}"


def sync_field(target: str) -> str:
    return f"{SYNC_FIELD_PREFIX}{target}"


def budget_key(prefix: str, target: str, window: str) -> str:
    """Both windows of a target in one slot (the take script reads and bumps them together)."""
    return f"{prefix}:budget:{{{target}}}:{window}"


def sync_epoch_key(prefix: str) -> str:
    return f"{prefix}:{{{SYNC_EPOCH_TAG}}}"


def replay_lock_key(prefix: str, group: str) -> str:
    """Held by the `ilog replay` running with `group` (a token, expiring unless kept): one at a time."""
    return f"{prefix}:{{{REPLAY_LOCK_TAG}}}:{group}"


def marks_key(prefix: str, tag: str = MARKS_TAG) -> str:
    return f"{prefix}:{{{tag}}}"


def slot_marks_key(prefix: str, slot: int) -> str:
    """The marks hash of one hash slot (Redis Cluster)."""
    return marks_key(prefix, _slot_marks_tags()[slot])


@cache
def _slot_marks_tags() -> tuple[str, ...]:
    """For every slot, the first tag `marks-<n>` that hashes to it (computed once, CRC16 as Redis does)."""
    tags: list[str | None] = [None] * REDIS_CLUSTER_HASH_SLOTS
    missing, n = REDIS_CLUSTER_HASH_SLOTS, 0
    while missing:
        slot = crc_hqx(b"%s-%d" % (MARKS_TAG.encode(), n), 0) % REDIS_CLUSTER_HASH_SLOTS
        if tags[slot] is None:
            tags[slot] = f"{MARKS_TAG}-{n}"
            missing -= 1
        n += 1
    return tuple(tag for tag in tags if tag is not None)
