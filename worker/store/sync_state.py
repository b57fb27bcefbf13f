"""Per-target sync state in Redis: field `s:<target>` of the interaction hash (see `worker.store.keys`).

One pipelined round trip reads every (interaction, target) state of a batch; one writes them back.
The write is a small Lua script so it can (a) refuse to move `synced_version` backwards — a
replica that lost its partitions must not undo a newer replica's progress — and (b) give the key
a TTL when it has none: after the fold's state expired, a late sync must not leave a key forever.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import redis

from adapters.base import TargetState
from worker.errors import StoreError
from worker.store import keys
from worker.store.cluster import REDIS_ERRORS, RedisClient, is_cluster, riding_out

# KEYS[1]  <prefix>:{<interaction_id>}  hash; field ARGV[1] = s:<target> (JSON TargetState)
# ARGV[1]  field, ARGV[2] JSON state, ARGV[3] its synced_version, ARGV[4] TTL in s when the key has none
# Returns 1 when written, 0 when the stored synced_version was newer.
_SAVE_SCRIPT = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored then
  local ok, decoded = pcall(cjson.decode, stored)
  if ok and type(decoded) == 'table' and tonumber(decoded['synced_version'] or 0) > tonumber(ARGV[3]) then
    return 0
  end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if redis.call('TTL', KEYS[1]) == -1 then
  redis.call('EXPIRE', KEYS[1], ARGV[4])
end
return 1
"""


@dataclass(frozen=True)
class BatchRead:
    """One target's states for a batch, in one round trip, with what says whether an absence is trustworthy.

    `held_without_state`: the ids with no state for the target whose hash still holds the fold's
    log (`v`) as the fold wrote it, never put back after a loss (no `r`: a restored hash lost its sync
    state with the rest, whatever the epoch on another shard says); `epoch_ms`: when the store's sync
    epoch started (created now when it was missing).
    """

    states: dict[str, TargetState]
    held_without_state: frozenset[str]
    epoch_ms: int | None


@dataclass(frozen=True)
class StateUpdate:
    interaction_id: str
    target: str
    state: TargetState


def encode_target_state(state: TargetState) -> bytes:
    return orjson.dumps(
        {"remote_id": state.remote_id, "synced_version": state.synced_version, "uncertain": state.uncertain}
    )


def decode_target_state(raw: bytes | str | None) -> TargetState:
    """Unreadable or missing → the empty state (the adapters then look the record up when needed)."""
    if raw is None:
        return TargetState()
    try:
        data: Any = orjson.loads(raw)
        return TargetState(
            remote_id=None if data.get("remote_id") is None else str(data["remote_id"]),
            synced_version=int(data.get("synced_version", 0)),
            uncertain=bool(data.get("uncertain", False)),
        )
    except (ValueError, TypeError, AttributeError):
        return TargetState(uncertain=True)


class SyncStateStore(Protocol):
    def load(self, interaction_ids: Iterable[str], targets: Sequence[str]) -> dict[tuple[str, str], TargetState]:
        ...

    def save(self, updates: Sequence[StateUpdate]) -> None: ...

    def read_batch(self, interaction_ids: Iterable[str], target: str, now_ms: int) -> BatchRead:
        """The target's states, the ids whose absent state sits in a held hash, the sync epoch."""
        ...

    def start_epoch(self, now_ms: int) -> int | None:
        """Create the sync epoch at `now_ms` unless one exists; the epoch's start."""
        ...


def format_epoch(start_ms: int, run_id: str | None) -> str:
    return str(start_ms) if run_id is None else f"{start_ms}:{run_id}"


def parse_epoch(raw: bytes | str | None, run_id: str | None) -> int | None:
    """The epoch's start in ms; None when missing, unreadable, or begun under another server run
    (`run_id` None: the run is not checked)."""
    if raw is None:
        return None
    text = raw.decode() if isinstance(raw, bytes) else raw
    start, _, stored_run = text.partition(":")
    if run_id is not None and stored_run != run_id:
        return None
    try:
        return int(start)
    except ValueError:
        return None


class RedisSyncStateStore:
    def __init__(self, client: RedisClient, prefix: str, ttl_s: float) -> None:
        self._client = client
        self._prefix = prefix
        self._ttl_s = max(1, int(ttl_s))
        self._save = client.register_script(_SAVE_SCRIPT)
        self._cluster = is_cluster(client)

    def load(self, interaction_ids: Iterable[str], targets: Sequence[str]) -> dict[tuple[str, str], TargetState]:
        ids = list(dict.fromkeys(interaction_ids))
        if not ids or not targets:
            return {}
        fields = [keys.sync_field(target) for target in targets]

        def read() -> list[list[bytes | None]]:
            pipe = self._client.pipeline(transaction=False)
            for interaction_id in ids:
                pipe.hmget(keys.state_key(self._prefix, interaction_id), fields)
            return list(pipe.execute())

        try:
            rows = riding_out(read)
        except REDIS_ERRORS as exc:
            raise StoreError(f"loading sync state of {len(ids)} interactions failed: {exc}") from exc
        return {
            (interaction_id, target): decode_target_state(raw)
            for interaction_id, row in zip(ids, rows, strict=True)
            for target, raw in zip(targets, row, strict=True)
        }

    def read_batch(self, interaction_ids: Iterable[str], target: str, now_ms: int) -> BatchRead:
        ids = list(dict.fromkeys(interaction_ids))
        fields = [keys.sync_field(target), keys.FIELD_VERSION, keys.FIELD_RESTORED]

        def read() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for interaction_id in ids:
                pipe.hmget(keys.state_key(self._prefix, interaction_id), fields)
            self._epoch_commands(pipe, now_ms)
            return list(pipe.execute())

        try:
            answers = riding_out(read)
            epoch_ms = self._epoch_of(answers[len(ids):], now_ms)
        except REDIS_ERRORS as exc:
            raise StoreError(f"loading sync state of {len(ids)} interactions failed: {exc}") from exc
        rows: list[list[bytes | None]] = answers[: len(ids)]
        return BatchRead(
            states={i: decode_target_state(row[0]) for i, row in zip(ids, rows, strict=True)},
            held_without_state=frozenset(i for i, row in zip(ids, rows, strict=True)
                                         if row[0] is None and row[1] is not None and row[2] is None),
            epoch_ms=epoch_ms,
        )

    def start_epoch(self, now_ms: int) -> int | None:
        def start() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            self._epoch_commands(pipe, now_ms)
            return list(pipe.execute())

        try:
            return self._epoch_of(riding_out(start), now_ms)
        except REDIS_ERRORS as exc:
            raise StoreError(f"starting the sync epoch failed: {exc}") from exc

    def _epoch_commands(self, pipe: Any, now_ms: int) -> None:
        """One node: GET the epoch and the server's run id (a restart or a failover changes it).
        A cluster: SET NX + GET (INFO names one node of many; a lost shard is a residual risk)."""
        epoch_key = keys.sync_epoch_key(self._prefix)
        if self._cluster:
            pipe.set(epoch_key, now_ms, nx=True)
        else:
            pipe.info("server")
        pipe.get(epoch_key)

    def _epoch_of(self, answers: list[Any], now_ms: int) -> int | None:
        """The epoch's start; a new epoch begins now when the key is missing or names another run
        of the server (restarted from a snapshot, failed over: its last writes may be lost)."""
        if self._cluster:
            return parse_epoch(answers[-1], None)
        server, raw = answers
        run_id = str(server.get("run_id", "")) or None
        epoch_ms = parse_epoch(raw, run_id)
        if epoch_ms is None:
            riding_out(lambda: self._client.set(keys.sync_epoch_key(self._prefix), format_epoch(now_ms, run_id)))
            epoch_ms = now_ms
        return epoch_ms

    def save(self, updates: Sequence[StateUpdate]) -> None:
        if not updates:
            return
        try:
            try:
                riding_out(lambda: self._save_by_sha(updates))
            except redis.exceptions.NoScriptError:  # a restarted, flushed or promoted node: load it, once
                self._client.script_load(_SAVE_SCRIPT)
                riding_out(lambda: self._save_by_sha(updates))
        except REDIS_ERRORS as exc:
            raise StoreError(f"saving sync state of {len(updates)} items failed: {exc}") from exc

    def _save_by_sha(self, updates: Sequence[StateUpdate]) -> None:
        """EVALSHA straight away: a pipeline with a registered script would ask SCRIPT EXISTS first,
        one more round trip per save. Without the script loaded no command runs (all NOSCRIPT)."""
        pipe = self._client.pipeline(transaction=False)
        for update in updates:
            # execute_command, not evalsha: a cluster pipeline refuses the method (one key: one slot)
            pipe.execute_command("EVALSHA", self._save.sha, 1, keys.state_key(self._prefix, update.interaction_id),
                                 keys.sync_field(update.target), encode_target_state(update.state),
                                 update.state.synced_version, self._ttl_s)
        pipe.execute()


class MemorySyncStateStore:
    """In-memory twin for fast tests; same never-backwards rule, no TTLs. It holds no fold logs:
    `held` lists the ids whose log a test says the store holds (absences the epoch may vouch for)."""

    def __init__(self, epoch_ms: int | None = None, held: Iterable[str] = ()) -> None:
        self.states: dict[tuple[str, str], TargetState] = {}
        self.epoch_ms = epoch_ms
        self.held = set(held)

    def read_batch(self, interaction_ids: Iterable[str], target: str, now_ms: int) -> BatchRead:
        ids = list(dict.fromkeys(interaction_ids))
        self.start_epoch(now_ms)
        return BatchRead(
            states={i: self.states.get((i, target), TargetState()) for i in ids},
            held_without_state=frozenset(i for i in ids if i in self.held and (i, target) not in self.states),
            epoch_ms=self.epoch_ms,
        )

    def start_epoch(self, now_ms: int) -> int | None:
        if self.epoch_ms is None:
            self.epoch_ms = now_ms
        return self.epoch_ms

    def load(self, interaction_ids: Iterable[str], targets: Sequence[str]) -> dict[tuple[str, str], TargetState]:
        return {
            (interaction_id, target): self.states.get((interaction_id, target), TargetState())
            for interaction_id in dict.fromkeys(interaction_ids)
            for target in targets
        }

    def save(self, updates: Sequence[StateUpdate]) -> None:
        for update in updates:
            key = (update.interaction_id, update.target)
            stored = self.states.get(key)
            if stored is None or stored.synced_version <= update.state.synced_version:
                self.states[key] = update.state
