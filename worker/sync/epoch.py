"""When a missing sync state may be trusted as "never synced" (DESIGN.md: a missing sync state means
"unknown", never "not created" — unless the store provably held everything ever written for it).

The sync epoch is a Redis key (`worker.store.keys.sync_epoch_key`) holding, in ms since the Unix
epoch, when the store started holding sync state, and the Redis server run it began under:
created when the sync stage starts and whenever a batch read finds it missing (Redis restarted
empty, flushed) or begun under another server run (restarted from a snapshot, failed over: the
last writes may be lost); see `worker.store.sync_state.RedisSyncStateStore.read_batch`. The absence of
an interaction's state for a target is trusted ("not created") only when all of these hold:

- the epoch started at least `margin_ms` before the interaction's first event (`connected_at`;
  none → unknown): every sync write for it happened in this epoch, so this store saw it;
- the interaction is younger than the sync state's TTL minus `margin_ms`: expiry cannot have
  removed its state yet;
- the interaction's hash still holds the fold's log (field `v`): the key was not deleted or
  expired on its own while the epoch stayed (a whole-key loss the epoch cannot see);
- and that log was never put back after a loss (no field `r`): on a Redis Cluster one shard can
  restart empty while the epoch, on another shard, stays; the fold stage restores the shard's logs
  from the changelog, marked `r`, and their sync state is gone with the rest.

Anything else is unknown and the adapter looks the record up first (replays of old ranges, a
Redis that lost its data, the first `margin_ms` of a new epoch). Residual risk: docs/design.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from schemas.snapshot import LogSnapshot


@dataclass(frozen=True)
class AbsenceRule:
    """`margin_ms` covers clock skew between event sources and the worker; `state_ttl_ms` is the
    shortest time a sync state lives after the interaction's first event (retention, open-log TTL)."""

    margin_ms: int
    state_ttl_ms: int


@dataclass(frozen=True)
class Evidence:
    """What one batch read tells about one interaction's missing state for one target."""

    epoch_ms: int | None  # when the store's sync epoch started; None: unknown
    first_event_ms: int | None  # the interaction's first event (connected_at); None: unknown
    now_ms: int
    log_held: bool  # the interaction's hash still holds the fold's log


def state_known_absent(evidence: Evidence, rule: AbsenceRule) -> bool:
    """True only when the store provably held everything ever written for the interaction."""
    if evidence.epoch_ms is None or evidence.first_event_ms is None or not evidence.log_held:
        return False
    if evidence.epoch_ms > evidence.first_event_ms - rule.margin_ms:
        return False  # the epoch began too late: an earlier epoch's writes may be lost
    return evidence.now_ms - evidence.first_event_ms < rule.state_ttl_ms - rule.margin_ms


def first_event_ms(snapshot: LogSnapshot) -> int | None:
    """The interaction's first event time: `connected_at` (a log without one is unknown)."""
    return _ms(snapshot.connected_at)


def _ms(moment: datetime | None) -> int | None:
    return None if moment is None else int(moment.timestamp() * 1000)
