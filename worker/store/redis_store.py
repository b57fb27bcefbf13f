"""The Redis store: one pipelined round trip per batch for reads, one for writes (fenced Lua).

On a single node one script call writes up to 1,000 states and their deadline entries together.
On a Redis Cluster a script may only declare keys of one hash slot, and an interaction's state key
(slot of its id) and its partition's deadline set (slot of the set's name) almost never share one,
so a cluster write is three ordered steps (the layout and why: `worker.store.keys`):
  1. deadline entries added (ZADD, one command per partition);
  2. the fenced state writes: one script call per master for the states it serves, each guarded by
     the marks hashes of the slots in it (`worker.store.per_master`); what a master could not take
     (a moved slot, a failover, Redis older than 7.0) one script call per hash slot, guarded by the
     marks hash of its slot, through the cluster client;
  3. deadline entries removed (ZREM) for the states step 2 stored (finalized windows).
Each step is one round trip (per node, in parallel).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from importlib import resources
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from worker.core import native
from worker.core.state import Tombstone
from worker.core.writes import StateWrite, Stored
from worker.errors import StateLostError, StoreError, StoreFullError, StoreUnavailableError
from worker.store import keys
from worker.store.cluster import TRANSIENT_ERRORS, RedisClient, by_slot, is_cluster
from worker.store.per_master import WRITES_PER_CALL, PerMaster
from worker.store.port import WriteResult
from worker.store.wire import decode_state, encoded_write, packed, read_reply

_LOST_REPLY = "ILOGLOST"
_STATE_FIELDS = [keys.FIELD_VERSION, keys.FIELD_DOCUMENT, keys.FIELD_KIND]


@contextmanager
def store_errors(action: str) -> Iterator[None]:
    """The store boundary: a driver error leaves it as the store's own, saying what failed: unreachable
    (`StoreUnavailableError`: wait and retry; on a cluster also "cluster down" and TRYAGAIN, which a
    restarting or failing-over master answers for a moment), full (`StoreFullError`: an OOM answer under
    `noeviction`; wait and retry too, nothing was written), state lost (`StateLostError`), anything else
    (`StoreError`)."""
    try:
        yield
    except TRANSIENT_ERRORS as exc:  # BusyLoadingError is a ConnectionError
        raise StoreUnavailableError(f"{action} failed: {exc}") from exc
    except redis.exceptions.OutOfMemoryError as exc:
        raise StoreFullError(f"{action} refused, Redis is full (maxmemory reached, noeviction): {exc}") from exc
    except redis.ResponseError as exc:
        text = str(exc)
        if text.startswith(_LOST_REPLY):
            raise StateLostError([int(text.split()[1])]) from exc
        raise StoreError(f"{action} failed: {exc}") from exc
    except redis.RedisError as exc:
        raise StoreError(f"{action} failed: {exc}") from exc


class RedisStore:
    """Interaction state in Redis; every batch is one round trip to read and one to write."""

    def __init__(self, client: RedisClient, prefix: str) -> None:
        self._client = client
        self._prefix = prefix
        self._cluster = is_cluster(client)
        self._script = resources.files("worker.store").joinpath("fenced_write.lua").read_text()
        # EVALSHA directly: redis-py's Script object would add a SCRIPT EXISTS round trip per batch.
        self._sha: str = client.register_script(self._script).sha
        self._per_master = PerMaster(client, prefix) if isinstance(client, RedisCluster) else None
        self._master_slots: dict[str, int] = {}  # master → the first slot it serves (`_one_slot_per_master`)

    @property
    def client(self) -> RedisClient:
        return self._client

    def load(self, interaction_ids: Iterable[str], *, held: bool = False) -> dict[str, Stored]:
        ids = list(dict.fromkeys(interaction_ids))
        if not ids:
            return {}
        state_keys = [keys.state_key(self._prefix, interaction_id) for interaction_id in ids]
        with store_errors(f"loading {len(ids)} interactions"):
            if not self._cluster:
                rows = self._read_rows(state_keys)
                left: Sequence[int] = ()
            elif self._per_master is not None:
                rows, left = self._per_master.read(state_keys, _STATE_FIELDS)
            else:
                rows, left = [None] * len(ids), range(len(ids))
            if left:  # what the masters could not answer as sent: through the cluster's pipeline
                pipe = self._client.pipeline(transaction=False)
                for index in left:
                    pipe.hmget(state_keys[index], _STATE_FIELDS)
                for index, row in zip(left, pipe.execute(), strict=True):
                    rows[index] = row
        return {
            interaction_id: Stored(int(version or 0), decode_state(document, kind, held=held))
            for interaction_id, (version, document, kind) in zip(ids, rows, strict=True)
        }

    def write(self, writes: Sequence[StateWrite], guard: Sequence[int] = ()) -> WriteResult:
        """Fenced writes; with `guard`, refused (StateLostError) when one of them is unmarked: as a whole
        on one node, per script call on a cluster (a slot whose marks are gone lost its shard's data: that
        master's call stores nothing, the other masters' calls go on)."""
        if not writes:
            return WriteResult()
        if not self._cluster:  # one node: sent and answered at once, packed as `send_write` packs
            answer = self.send_write(writes, guard)
            assert answer is not None
            return answer()
        with store_errors(f"writing {len(writes)} interactions"):
            fenced = self._write_by_slot(writes, guard)
        return _result(writes, fenced)

    def _read_rows(self, state_keys: Sequence[str]) -> list[Any]:
        """One node: the keys' HMGETs packed in one go (by the compiled core where it runs) and their replies read
        off one connection. redis-py's pipeline spent ~7 µs of Python per key on a batch's loads, most of them
        keys of new interactions that hold nothing."""
        assert isinstance(self._client, redis.Redis)
        pool = self._client.connection_pool
        connection = pool.get_connection()
        try:
            connection.send_packed_command(  # type: ignore[no-untyped-call]
                packed(connection, [["HMGET", key, *_STATE_FIELDS] for key in state_keys]))
            rows = [read_reply(connection) for _ in state_keys]
        except BaseException:
            connection.disconnect()  # type: ignore[no-untyped-call]  # replies may be left unread on it
            raise
        finally:
            pool.release(connection)
        for row in rows:
            if isinstance(row, Exception):
                raise row
        return rows

    def send_write(
        self, writes: Sequence[StateWrite], guard: Sequence[int] = (),
    ) -> Callable[[], WriteResult] | None:
        """`write` in two halves: the script calls are sent now, Redis's answer is read when the returned
        call is made (the same fencing, guard and errors as `write`). In between the caller works while
        Redis runs the scripts, and the answer waits in the socket: no thread. One node only; None on a
        cluster, whose write is ordered steps over several nodes."""
        if self._cluster or not writes:
            return None
        assert isinstance(self._client, redis.Redis)
        chunks = _chunks(writes)
        marks = keys.marks_key(self._prefix)

        def commands() -> list[list[Any]]:
            return [self._fenced_write_command(chunk, guard, marks, with_deadlines=True) for chunk in chunks]

        pool = self._client.connection_pool
        action = f"writing {len(writes)} interactions"
        try:
            with store_errors(action):
                connection = pool.get_connection()
                try:
                    compiled = self._packed_writes(chunks, guard, marks)
                    payload = [compiled] if compiled is not None else packed(connection, commands())
                    connection.send_packed_command(payload)  # type: ignore[no-untyped-call]
                except BaseException:
                    pool.release(connection)
                    raise
        except StoreError as exc:  # raised where the caller asks for the answer, as a failed write would be
            error = exc

            def refused() -> WriteResult:
                raise error

            return refused

        def answer() -> WriteResult:
            try:
                with store_errors(action):
                    replies = [read_reply(connection) for _ in chunks]
                    fenced = _fenced(chunks, self._run_scripts(commands, replies))
            finally:
                pool.release(connection)
            return _result(writes, fenced)

        return answer

    def _write_by_slot(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> dict[str, int]:
        """The three cluster steps (module docstring). A crash after step 1 leaves entries whose log
        has no such deadline (yet): the finalizer drops or reschedules them by the stored log, and the
        re-consumed batch adds them again. A crash after step 2 leaves entries of finalized logs:
        dropped as stale. A fenced-out write's added entry is judged by the stored log the same way."""
        self._deadline_entries("ZADD", [item for item in writes if item.deadline is not None])
        assert self._per_master is not None
        fenced, left = self._per_master.write(writes, guard)
        if left:
            fenced.update(self._write_per_slot(left, guard))
        self._deadline_entries("ZREM", [item for item in writes if item.unschedule_partition is not None
                                        and item.interaction_id not in fenced])
        return fenced

    def _write_per_slot(self, writes: Sequence[StateWrite], guard: Sequence[int]) -> dict[str, int]:
        """Step 2 one script call per hash slot (each guarded by its slot's marks) through the cluster client."""
        groups = by_slot(writes, lambda item: keys.state_key(self._prefix, item.interaction_id))
        chunks: list[Sequence[StateWrite]] = []
        slots: list[int] = []
        for slot, group in groups.items():
            for i in range(0, len(group), WRITES_PER_CALL):
                chunks.append(group[i:i + WRITES_PER_CALL])
                slots.append(slot)
        return self._write_chunks(chunks, guard, slots=slots)

    def _deadline_entries(self, command: str, writes: Sequence[StateWrite]) -> None:
        """One ZADD or ZREM per partition's deadline set, all in one pipeline."""
        members: dict[int, list[Any]] = {}
        for item in writes:
            _op, partition, score = _deadline_op(item)
            entry = (score, item.interaction_id) if command == "ZADD" else (item.interaction_id,)
            members.setdefault(partition, []).extend(entry)
        if not members:
            return
        pipe = self._client.pipeline(transaction=False)
        for partition, args in members.items():
            pipe.execute_command(command, keys.deadlines_key(self._prefix, partition), *args)
        pipe.execute()

    def _write_chunks(
        self, chunks: Sequence[Sequence[StateWrite]], guard: Sequence[int], *, slots: Sequence[int],
    ) -> dict[str, int]:
        """A cluster's script calls, one per chunk (each in one slot, whose marks guard it; deadlines are
        separate steps), all in one round trip per node; the ids fenced out → the version stored now."""
        commands = [self._fenced_write_command(chunk, guard, keys.slot_marks_key(self._prefix, slot),
                                               with_deadlines=False)
                    for chunk, slot in zip(chunks, slots, strict=True)]
        return _fenced(chunks, self._run_scripts(lambda: commands))

    def _run_scripts(self, commands: Callable[[], list[list[Any]]], replies: list[Any] | None = None) -> list[Any]:
        """Send the script calls (or take the `replies` to calls already sent); calls refused with NOSCRIPT
        (a restarted, flushed or newly promoted node) are sent again after loading the script: a refused
        call ran nothing. `commands` builds the calls (sent packed by the compiled core, they exist as
        lists only when one is sent again)."""
        if replies is None:
            replies = self._send(commands())
        missing = [i for i, reply in enumerate(replies) if isinstance(reply, redis.exceptions.NoScriptError)]
        if missing:
            self._client.script_load(self._script)
            calls = commands()
            for i, reply in zip(missing, self._send([calls[i] for i in missing]), strict=True):
                replies[i] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

    def _send(self, commands: list[list[Any]]) -> list[Any]:
        """One round trip (per node): a single call directly, several in one pipeline; errors returned."""
        if len(commands) == 1:
            try:
                return [self._client.execute_command(*commands[0])]  # type: ignore[no-untyped-call]
            except redis.exceptions.NoScriptError as exc:
                return [exc]
        pipe = self._client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        return list(pipe.execute(raise_on_error=False))

    def _packed_writes(self, chunks: Sequence[Sequence[StateWrite]], guard: Sequence[int], marks: str) -> bytes | None:
        """The chunks' script calls packed by the compiled core (`_fenced_write_command`'s calls, as redis-py
        packs them), or None: the Python packs them."""
        core = native.CORE
        if core is None:
            return None
        guarded = list(guard)
        parts = [core.pack_fenced_write(self._sha, self._prefix, chunk, guarded, marks, Tombstone) for chunk in chunks]
        return None if any(part is None for part in parts) else b"".join(part for part in parts if part is not None)

    def _fenced_write_command(
        self, writes: Sequence[StateWrite], guard: Sequence[int], marks: str, *, with_deadlines: bool,
    ) -> list[Any]:
        """One EVALSHA of the fenced-write script for these writes (`fenced_write.lua` has the layout).

        One call for many writes: packing and parsing a command per write cost the client as much as
        everything else it does for a write. Without deadlines (a cluster) it names state keys only."""
        prefix = self._prefix
        state_keys: list[str] = []
        args: list[Any] = [len(writes)]
        deadline_sets: dict[int, int] = {}  # partition → its KEYS index, after the state keys
        for item in writes:
            state_keys.append(keys.state_key(prefix, item.interaction_id))
            document, kind = encoded_write(item)
            op, partition, score = _deadline_op(item) if with_deadlines else ("", 0, 0)
            index = deadline_sets.setdefault(partition, len(writes) + len(deadline_sets) + 1) if op else 0
            args += (item.expected_version, item.state.version, document, kind, max(item.ttl_ms, 1),
                     item.interaction_id, op, index, score)
        set_keys = [keys.deadlines_key(prefix, partition) for partition in deadline_sets]
        guarded = sorted(set(guard))
        args += (len(guarded), *guarded)
        if guarded:
            set_keys.append(marks)
        return ["EVALSHA", self._sha, len(state_keys) + len(set_keys), *state_keys, *set_keys, *args]

    def marked(self, partitions: Sequence[int]) -> set[int]:
        """The partitions whose state this store holds (see `keys.marks_key`). A cluster: marked in the
        marks of one slot of every master (a master that lost its data lost those marks too)."""
        if not partitions:
            return set()
        fields = [str(p) for p in partitions]
        with store_errors("reading the state marks"):
            if not self._cluster:
                found: list[Any] = self._client.hmget(keys.marks_key(self._prefix), fields)
                return {p for p, value in zip(partitions, found, strict=True) if value is not None}
            pipe = self._client.pipeline(transaction=False)
            for slot in self._one_slot_per_master():
                pipe.hmget(keys.slot_marks_key(self._prefix, slot), fields)
            rows: list[list[Any]] = pipe.execute()
        return {p for i, p in enumerate(partitions) if all(row[i] is not None for row in rows)}

    def mark(self, partitions: Sequence[int]) -> None:
        """Say that this store holds these partitions' state (fresh, or restored); a cluster: in every slot."""
        if not partitions:
            return
        now_ms = str(int(time.time() * 1000))
        mapping: dict[Any, Any] = {str(p): now_ms for p in partitions}
        with store_errors("writing the state marks"):
            if not self._cluster:
                self._client.hset(keys.marks_key(self._prefix), mapping=mapping)
                return
            self._mark_every_slot(mapping)

    def _mark_every_slot(self, mapping: dict[Any, Any]) -> None:
        """16,384 HSETs: one plain pipeline per master over the slots it serves (the cluster pipeline
        routes each command in Python, ~30x slower); a slot that moved meanwhile goes through the
        cluster client, which follows MOVED."""
        assert isinstance(self._client, RedisCluster)
        by_node: dict[str, tuple[Any, list[int]]] = {}
        for slot in range(REDIS_CLUSTER_HASH_SLOTS):
            node = self._client.nodes_manager.get_node_from_slot(slot)
            by_node.setdefault(node.name, (node, []))[1].append(slot)
        for node, slots in by_node.values():
            pipe = self._client.get_redis_connection(node).pipeline(transaction=False)
            for slot in slots:
                pipe.hset(keys.slot_marks_key(self._prefix, slot), mapping=mapping)
            replies = pipe.execute(raise_on_error=False)
            for slot, reply in zip(slots, replies, strict=True):
                if isinstance(reply, Exception):
                    self._client.hset(keys.slot_marks_key(self._prefix, slot), mapping=mapping)

    def _one_slot_per_master(self) -> list[int]:
        """The first slot of every master in the client's slot map (refreshed on MOVED and failover). The
        16,384-slot scan runs again only when a remembered slot changed master or the masters changed."""
        assert isinstance(self._client, RedisCluster)
        slots_cache = self._client.nodes_manager.slots_cache
        masters = {node.name for node in self._client.get_primaries()}  # type: ignore[no-untyped-call]
        remembered = self._master_slots
        if masters == set(remembered) and all(
                (nodes := slots_cache.get(slot)) and nodes[0].name == name for name, slot in remembered.items()):
            return sorted(remembered.values())
        first: dict[str, int] = {}
        for slot, nodes in sorted(slots_cache.items()):
            if nodes:
                first.setdefault(nodes[0].name, slot)
        self._master_slots = first
        return sorted(first.values())

    def due(self, partition: int, until_ms: int, limit: int) -> list[tuple[str, int]]:
        with store_errors(f"reading the due windows of partition {partition}"):
            rows: list[tuple[bytes, float]] = self._client.zrangebyscore(  # type: ignore[assignment]
                keys.deadlines_key(self._prefix, partition), "-inf", until_ms, start=0, num=limit, withscores=True
            )
        return [(member.decode(), int(score)) for member, score in rows]

    def open_windows(self, partition: int) -> int:
        with store_errors(f"counting the open windows of partition {partition}"):
            return int(self._client.zcard(keys.deadlines_key(self._prefix, partition)))

    def due_many(self, until_ms: dict[int, int], limit: int) -> dict[int, list[tuple[str, int]]]:
        """`due` of several partitions (partition → until_ms) in one round trip."""
        pipe = self._client.pipeline(transaction=False)
        for partition, until in until_ms.items():
            pipe.zrangebyscore(keys.deadlines_key(self._prefix, partition), "-inf", until, start=0, num=limit,
                               withscores=True)
        with store_errors(f"reading the due windows of {len(until_ms)} partitions"):
            rows: list[list[tuple[bytes, float]]] = pipe.execute()
        return {partition: [(member.decode(), int(score)) for member, score in found]
                for partition, found in zip(until_ms, rows, strict=True)}

    def open_windows_many(self, partitions: Sequence[int]) -> dict[int, int]:
        pipe = self._client.pipeline(transaction=False)
        for partition in partitions:
            pipe.zcard(keys.deadlines_key(self._prefix, partition))
        with store_errors(f"counting the open windows of {len(partitions)} partitions"):
            counts = pipe.execute()
        return {partition: int(count) for partition, count in zip(partitions, counts, strict=True)}

    def unschedule(self, partition: int, interaction_ids: Sequence[str]) -> None:
        if interaction_ids:
            with store_errors(f"unscheduling {len(interaction_ids)} windows of partition {partition}"):
                self._client.zrem(keys.deadlines_key(self._prefix, partition), *interaction_ids)

    def close(self) -> None:
        self._client.close()


def _chunks(writes: Sequence[StateWrite]) -> list[Sequence[StateWrite]]:
    return [writes[i:i + WRITES_PER_CALL] for i in range(0, len(writes), WRITES_PER_CALL)]


def _fenced(chunks: Sequence[Sequence[StateWrite]], replies: list[Any]) -> dict[str, int]:
    """The ids the scripts fenced out → the version stored now (each reply: 1-based index, version, ...)."""
    return {chunk[int(reply[j]) - 1].interaction_id: int(reply[j + 1])
            for chunk, reply in zip(chunks, replies, strict=True) for j in range(0, len(reply), 2)}


def _result(writes: Sequence[StateWrite], fenced: dict[str, int]) -> WriteResult:
    expected = {item.interaction_id: item.expected_version for item in writes}
    return WriteResult(fenced_out=list(fenced), regressed={i: v for i, v in fenced.items() if v < expected[i]})


def _deadline_op(item: StateWrite) -> tuple[str, int, int]:
    """(op, partition, score) of a write's deadline entry: "a" schedule, "r" unschedule, "" none."""
    if item.deadline is not None:
        if item.unschedule_partition is not None:
            raise ValueError("a write either schedules or unschedules a deadline, not both")
        return "a", item.deadline[0], item.deadline[1]
    if item.unschedule_partition is not None:
        return "r", item.unschedule_partition, 0
    return "", 0, 0
